//! Network partitions of one voter out of three, with the transport's
//! isolation switch (its quorum traffic is dropped both ways):
//! - an isolated follower does not raise its term (PreVote), so when it
//!   comes back the leader and term of the majority stay as they were;
//! - an isolated leader stops vouching for itself as the active controller
//!   within the leader lease and its broker loses its lease within the
//!   session timeout, while the majority elects a new leader and fences
//!   the cut-off broker; healed, it follows the new leader, which keeps
//!   its term, and regains its lease.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{create_topic, endpoints, free_addr, image_at, wait_for_leader, PATIENCE};
use rivulet_quorum::{network::Isolation, BrokerInfo, ControllerConfig, QuorumNode};

const HEARTBEAT: Duration = Duration::from_millis(200);
const SESSION: Duration = Duration::from_secs(2);

/// Three voters bootstrapped together, each with its own isolation switch.
async fn isolatable_voters(dir: &std::path::Path) -> (Vec<Arc<QuorumNode>>, Vec<Isolation>) {
    let addrs: Vec<_> = (0..3).map(|_| free_addr()).collect();
    let switches: Vec<Isolation> = (0..3).map(|_| Isolation::default()).collect();
    let nodes = common::start_voters_with(&addrs, dir, |id, c| {
        c.isolation = switches[id as usize - 1].clone();
    })
    .await;
    (nodes, switches)
}

fn term(node: &QuorumNode) -> u64 {
    node.metrics().term
}

/// Waits until `check` holds, or fails naming `what`.
async fn eventually(what: &str, check: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < PATIENCE, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_follower_comes_back_without_deposing_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, switches) = isolatable_voters(dir.path()).await;
    let all: Vec<&QuorumNode> = nodes.iter().map(|n| &**n).collect();
    let leader = wait_for_leader(&all, None).await;
    let before = term(&nodes[leader as usize - 1]);
    let cut = nodes.iter().position(|n| n.id() != leader).unwrap();
    for id in 1..=3 {
        common::register_live(&nodes[leader as usize - 1], id).await;
    }

    // Cut off for many election timeouts (250..500 ms in tests, after a
    // 500 ms lease): openraft alone would have campaigned several times.
    switches[cut].isolate();
    let leader_node = &nodes[leader as usize - 1];
    let mut last = 0;
    for i in 0..10 {
        last = leader_node
            .propose(create_topic(&format!("during-{i}"), vec![vec![1, 2, 3]]))
            .await
            .expect("the majority commits");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        term(&nodes[cut]),
        before,
        "the isolated node raised its term"
    );
    assert_eq!(
        nodes[cut].vouched_leader(),
        None,
        "it cannot vouch for a leader it does not hear"
    );

    switches[cut].heal();
    image_at(&nodes[cut], last).await;
    // Give a disruption every chance to happen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in &nodes {
        assert_eq!(n.leader_id(), Some(leader), "node {}", n.id());
        assert_eq!(term(n), before, "node {}", n.id());
        assert_eq!(n.vouched_leader(), Some(leader), "node {}", n.id());
    }
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_lets_go_and_rejoins_as_a_follower() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, switches) = isolatable_voters(dir.path()).await;
    let config = ControllerConfig {
        session_timeout: SESSION,
        check_interval: Duration::from_millis(100),
        auto_leader_rebalance: false,
        ..ControllerConfig::default()
    };
    let mut lifecycles = Vec::new();
    for n in &nodes {
        n.spawn_controller(config.clone());
        let info = BrokerInfo {
            broker_id: i32::try_from(n.id()).unwrap(),
            rack: None,
            endpoints: endpoints(9000 + n.id() as u16),
        };
        lifecycles.push(n.spawn_broker_lifecycle(info, HEARTBEAT));
    }
    for l in &lifecycles {
        l.wait_unfenced(PATIENCE).await.unwrap();
    }
    let leases: Vec<_> = lifecycles.iter().map(|l| l.lease(SESSION)).collect();
    eventually("every broker holds its lease", || {
        leases.iter().all(|l| l.held())
    })
    .await;
    let all: Vec<&QuorumNode> = nodes.iter().map(|n| &**n).collect();
    let old = wait_for_leader(&all, None).await;
    let old_node = &nodes[old as usize - 1];
    assert_eq!(old_node.vouched_leader(), Some(old));
    let old_term = term(old_node);

    let cut_at = Instant::now();
    switches[old as usize - 1].isolate();
    // It stops naming itself controller within about the leader lease
    // (500 ms here), though Raft still has it leading.
    let unvouched = eventually("the isolated leader stops vouching for itself", || {
        old_node.vouched_leader().is_none()
    })
    .await;
    assert!(unvouched < Duration::from_millis(1500), "{unvouched:?}");
    assert!(
        old_node.is_leader(),
        "openraft keeps an isolated leader leading"
    );
    // Its broker lets go of its lease within the session timeout, and not
    // much before: a heartbeat was accepted at most a heartbeat before.
    let lease = &leases[old as usize - 1];
    eventually("the isolated broker loses its lease", || !lease.held()).await;
    let lost = cut_at.elapsed();
    assert!(
        lost <= SESSION + Duration::from_millis(100),
        "lease held too long: {lost:?}"
    );
    assert!(
        lost + HEARTBEAT + Duration::from_millis(300) >= SESSION,
        "lease lost early: {lost:?}"
    );

    // The majority elects another leader and fences the cut-off broker.
    let rest: Vec<&QuorumNode> = nodes
        .iter()
        .filter(|n| n.id() != old)
        .map(|n| &**n)
        .collect();
    let new = wait_for_leader(&rest, Some(old)).await;
    let new_node = &nodes[new as usize - 1];
    let new_term = term(new_node);
    assert!(new_term > old_term);
    let old_broker = i32::try_from(old).unwrap();
    common::image_where(new_node, "the isolated broker fenced", |m| {
        m.brokers[&old_broker].fenced
    })
    .await;
    assert!(rest.iter().all(|n| n.vouched_leader() == Some(new)));
    assert!(leases
        .iter()
        .enumerate()
        .all(|(i, l)| l.held() == (i != old as usize - 1)));

    // Healed: it follows the new leader, which keeps its term; its broker
    // is unfenced and regains the lease with an image that shows it.
    switches[old as usize - 1].heal();
    eventually("the old leader follows the new one", || {
        old_node.leader_id() == Some(new) && !old_node.is_leader()
    })
    .await;
    eventually("the old leader's broker regains its lease", || lease.held()).await;
    let image = old_node.metadata().borrow().clone();
    assert!(!image.brokers[&old_broker].fenced);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for n in &nodes {
        assert_eq!(n.leader_id(), Some(new), "node {}", n.id());
        assert_eq!(term(n), new_term, "node {}", n.id());
    }
    drop(lifecycles);
    for n in &nodes {
        n.shutdown().await;
    }
}
