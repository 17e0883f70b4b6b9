//! Helpers shared by the in-process cluster tests: loopback addresses,
//! nodes with test timeouts, commands, and waiting for conditions.

// Each test crate uses a different subset.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{SocketAddr, TcpListener},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use rivulet_quorum::{
    metadata::{ClusterMetadata, Endpoint, MetadataCommand},
    new_raft_node, QuorumConfig, QuorumNode,
};
use uuid::Uuid;

/// How long any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub fn free_addr() -> SocketAddr {
    // Bound then released: the node binds it again right away. Ports are
    // fixed per node because they are part of the Raft membership.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The voter map of nodes `1..` at `addrs`.
pub fn voter_map(addrs: &[SocketAddr]) -> BTreeMap<u64, String> {
    (1..)
        .zip(addrs)
        .map(|(id, a)| (id, a.to_string()))
        .collect()
}

/// A node with test timeouts that snapshots often and keeps little log,
/// so that a lagging node needs a snapshot.
pub async fn start(id: u64, addr: SocketAddr, dir: &Path) -> QuorumNode {
    start_with(id, addr, dir, |config| {
        config.snapshot_every = 5;
        config.keep_after_snapshot = 2;
    })
    .await
}

/// A node with test timeouts, adjusted by `tweak`.
pub async fn start_with(
    id: u64,
    addr: SocketAddr,
    dir: &Path,
    tweak: impl FnOnce(&mut QuorumConfig),
) -> QuorumNode {
    let mut config = QuorumConfig::new(id, addr, dir.join(format!("node-{id}"))).for_tests();
    // Fresh directories formatted to found the quorum, one stable
    // directory id per node (a restart on the same directory keeps it).
    config.founder = true;
    config.directory_id = Uuid::from_u128(u128::from(id));
    tweak(&mut config);
    new_raft_node(config).await.expect("start node")
}

/// Starts voters `1..=addrs.len()` and bootstraps them together.
pub async fn start_voters(addrs: &[SocketAddr], dir: &Path) -> Vec<Arc<QuorumNode>> {
    start_voters_with(addrs, dir, |_, _| {}).await
}

/// Like [`start_voters`], each node's config adjusted by `tweak(id, ..)`.
pub async fn start_voters_with(
    addrs: &[SocketAddr],
    dir: &Path,
    tweak: impl Fn(u64, &mut QuorumConfig),
) -> Vec<Arc<QuorumNode>> {
    let mut nodes = Vec::new();
    for (id, addr) in (1..).zip(addrs) {
        let node = start_with(id, *addr, dir, |c| tweak(id, c)).await;
        nodes.push(Arc::new(node));
    }
    let voters = voter_map(addrs);
    let bootstraps: Vec<_> = nodes
        .iter()
        .map(|n| {
            let (n, voters) = (n.clone(), voters.clone());
            tokio::spawn(async move { n.initialize(&voters).await })
        })
        .collect();
    for b in bootstraps {
        b.await.expect("task").expect("bootstrap");
    }
    nodes
}

pub fn endpoints(port: u16) -> BTreeMap<String, Endpoint> {
    BTreeMap::from([(
        "PLAINTEXT".into(),
        Endpoint {
            host: "127.0.0.1".into(),
            port,
        },
    )])
}

pub fn register(id: i32) -> MetadataCommand {
    MetadataCommand::RegisterBroker {
        broker_id: id,
        incarnation_id: Uuid::new_v4(),
        rack: None,
        endpoints: endpoints(9092),
        directory_id: None,
    }
}

/// Registers a broker and unfences it with a heartbeat (a new
/// registration's broker epoch is its offset).
pub async fn register_live(node: &QuorumNode, id: i32) {
    let broker_epoch = node.propose(register(id)).await.unwrap();
    node.propose(MetadataCommand::BrokerHeartbeat {
        broker_id: id,
        broker_epoch,
    })
    .await
    .unwrap();
}

pub fn create_topic(name: &str, assignments: Vec<Vec<i32>>) -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: name.into(),
        topic_id: Uuid::new_v4(),
        assignments,
        configs: BTreeMap::new(),
    }
}

/// Waits until exactly one node leads (not `not`) and all know it.
pub async fn wait_for_leader(nodes: &[&QuorumNode], not: Option<u64>) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let leaders: BTreeSet<_> = nodes
            .iter()
            .filter(|n| n.is_leader())
            .map(|n| n.id())
            .collect();
        if let Some(&leader) = leaders.iter().next().filter(|&&l| Some(l) != not) {
            if nodes.iter().all(|n| n.leader_id() == Some(leader)) {
                return leader;
            }
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn image_at(node: &QuorumNode, offset: u64) -> Arc<ClusterMetadata> {
    node.wait_for_offset(offset, PATIENCE)
        .await
        .expect("node caught up")
}

/// Waits until `node`'s image satisfies `condition`; returns that image.
pub async fn image_where(
    node: &QuorumNode,
    what: &str,
    condition: impl Fn(&ClusterMetadata) -> bool,
) -> Arc<ClusterMetadata> {
    let mut rx = node.metadata();
    let found = tokio::time::timeout(PATIENCE, rx.wait_for(|m| condition(m))).await;
    match found {
        Ok(Ok(image)) => image.clone(),
        _ => panic!("node {}: never saw {what}", node.id()),
    }
}
