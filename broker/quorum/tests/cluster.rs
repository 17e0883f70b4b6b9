//! In-process quorums over real loopback gRPC: bootstrap, proposals from
//! any node, leader failover, catch-up of a restarted node (through a
//! snapshot, since the leader purges its log), loss of quorum, and a
//! single-voter cluster that recovers from its own disk.

mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{create_topic, free_addr, image_at, register_live, start, voter_map, wait_for_leader};
use rivulet_quorum::{QuorumError, QuorumNode, QuorumRole};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_fail_over_catch_up_and_lose_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let voters = voter_map(&addrs);
    let mut nodes = Vec::new();
    for (id, addr) in (1..=3).zip(&addrs) {
        nodes.push(Some(start(id, *addr, dir.path()).await));
    }
    {
        let [a, b, c] = [0, 1, 2].map(|i| nodes[i].as_ref().unwrap());
        let (ra, rb, rc) = tokio::join!(
            a.initialize(&voters),
            b.initialize(&voters),
            c.initialize(&voters)
        );
        ra.unwrap();
        rb.unwrap();
        rc.unwrap();
        // Initializing again is a no-op.
        a.initialize(&voters).await.unwrap();
    }
    let all: Vec<&QuorumNode> = nodes.iter().map(|n| n.as_ref().unwrap()).collect();
    let leader = wait_for_leader(&all, None).await;
    let follower = all.iter().find(|n| n.id() != leader).unwrap();

    // Proposals through a follower are forwarded to the leader.
    for id in 1..=3 {
        register_live(follower, id).await;
    }
    let offset = follower
        .propose(create_topic("orders", vec![vec![1, 2, 3]]))
        .await
        .unwrap();
    for n in &all {
        let image = image_at(n, offset).await;
        assert_eq!(
            image.topics["orders"].partitions[&0].replicas,
            vec![1, 2, 3],
            "node {}",
            n.id()
        );
    }
    // A rejection comes back as such, with its offset.
    let dup = follower
        .propose(create_topic("orders", vec![vec![1]]))
        .await;
    assert!(matches!(dup, Err(QuorumError::Rejected { .. })), "{dup:?}");
    let metrics = all.iter().find(|n| n.id() == leader).unwrap().metrics();
    assert_eq!(
        (metrics.role, metrics.voters.clone()),
        (QuorumRole::Leader, vec![1, 2, 3])
    );
    assert!(
        metrics.commit_index >= offset && metrics.last_applied >= offset,
        "{metrics:?}"
    );

    // Kill the leader: the other two elect a new one and still commit.
    let old = nodes[leader as usize - 1].take().unwrap();
    old.shutdown().await;
    drop(old);
    let survivors: Vec<&QuorumNode> = nodes.iter().flatten().collect();
    let new_leader = wait_for_leader(&survivors, Some(leader)).await;
    assert_ne!(new_leader, leader);
    let mut last = 0;
    for i in 0..12 {
        last = survivors[i % 2]
            .propose(create_topic(&format!("t{i}"), vec![vec![1, 2, 3]]))
            .await
            .unwrap();
    }

    // Restart it on its data dir: it rejoins and catches up (the leader
    // purged the entries it missed, so this goes through InstallSnapshot).
    let restarted = start(leader, addrs[leader as usize - 1], dir.path()).await;
    let image = image_at(&restarted, last).await;
    assert!(image.topics.contains_key("orders") && image.topics.contains_key("t11"));
    assert!(
        restarted.raft().metrics().borrow().snapshot.is_some(),
        "caught up from a snapshot"
    );
    nodes[leader as usize - 1] = Some(restarted);

    // Two of three down: a proposal fails, within the configured bound.
    let current: Vec<&QuorumNode> = nodes.iter().flatten().collect();
    let current_leader = wait_for_leader(&current, None).await;
    let keep = current
        .iter()
        .find(|n| n.id() != current_leader)
        .unwrap()
        .id();
    for n in nodes.iter().flatten().filter(|n| n.id() != keep) {
        n.shutdown().await;
    }
    let lonely = nodes[keep as usize - 1].as_ref().unwrap();
    let started = Instant::now();
    let result = lonely.propose(create_topic("never", vec![vec![1]])).await;
    assert!(
        matches!(result, Err(QuorumError::ProposeTimeout(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded: {:?}",
        started.elapsed()
    );
    lonely.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_voter_commits_and_recovers_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let voters = BTreeMap::from([(7, addr.to_string())]);
    let node = start(7, addr, dir.path()).await;
    node.initialize(&voters).await.unwrap();
    assert!(node.is_leader());
    assert_eq!(node.leader_id(), Some(7));
    register_live(&node, 7).await;
    let mut last = 0;
    for i in 0..8 {
        last = node
            .propose(create_topic(&format!("t{i}"), vec![vec![7]]))
            .await
            .unwrap();
    }
    let before = node.metadata().borrow().clone();
    assert_eq!(before.offset, last);
    assert_eq!(before.topics.len(), 8);
    node.shutdown().await;
    drop(node);

    // Restart: snapshot plus the log after it rebuild the same image.
    let node = start(7, addr, dir.path()).await;
    node.initialize(&voters).await.unwrap();
    let after = image_at(&node, last).await;
    assert_eq!(after.topics, before.topics);
    assert_eq!(after.brokers, before.brokers);
    let next = node
        .propose(create_topic("after-restart", vec![vec![7]]))
        .await
        .unwrap();
    assert!(next > last);
    node.shutdown().await;
}
