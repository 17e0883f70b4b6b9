//! Brokers that are not voters follow the metadata log as learners: they
//! join while the voters are still bootstrapping, see what voters commit,
//! propose through the leader, and catch up after a restart.

mod common;

use common::{
    create_topic, free_addr, image_at, register_live, start, start_with, voter_map, wait_for_leader,
};
use rivulet_quorum::{QuorumError, QuorumNode, QuorumRole};

/// The log id of the membership `node` has applied (its identity shows
/// whether a join wrote a new membership entry).
fn membership_log_index(node: &QuorumNode) -> Option<u64> {
    node.raft()
        .metrics()
        .borrow()
        .membership_config
        .log_id()
        .map(|id| id.index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_joins_follows_proposes_and_catches_up_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<_> = (0..3).map(|_| free_addr()).collect();
    let voters = voter_map(&addrs);
    let learner_addr = free_addr();
    let mut nodes = Vec::new();
    for (id, addr) in (1..).zip(&addrs) {
        nodes.push(start(id, *addr, dir.path()).await);
    }
    let learner = start(4, learner_addr, dir.path()).await;
    // The learner asks to join while the voters are still bootstrapping.
    let (r1, r2, r3, joined) = tokio::join!(
        nodes[0].initialize(&voters),
        nodes[1].initialize(&voters),
        nodes[2].initialize(&voters),
        learner.join_as_learner(&voters),
    );
    for r in [r1, r2, r3, joined] {
        r.unwrap();
    }
    let all: Vec<&QuorumNode> = nodes.iter().chain([&learner]).collect();
    let leader = wait_for_leader(&all, None).await;
    let metrics = learner.metrics();
    assert_eq!(
        (
            metrics.role,
            metrics.voters.clone(),
            metrics.learners.clone()
        ),
        (QuorumRole::Learner, vec![1, 2, 3], vec![4])
    );
    assert_eq!(metrics.active_controller_count, 0);
    assert!(!learner.is_leader());

    // Topics created through a voter reach the learner.
    let voter = &nodes[0];
    for id in 1..=4 {
        register_live(voter, id).await;
    }
    let offset = voter
        .propose(create_topic("orders", vec![vec![1, 4]]))
        .await
        .unwrap();
    let image = image_at(&learner, offset).await;
    assert_eq!(image.topics["orders"].partitions[&0].replicas, vec![1, 4]);
    assert_eq!(learner.metrics().live_brokers, 4);

    // The learner's proposals are forwarded to the leader.
    let offset = learner
        .propose(create_topic("from-learner", vec![vec![4]]))
        .await
        .unwrap();
    for n in &all {
        assert!(image_at(n, offset)
            .await
            .topics
            .contains_key("from-learner"));
    }
    let dup = learner.propose(create_topic("orders", vec![vec![1]])).await;
    assert!(matches!(dup, Err(QuorumError::Rejected { .. })), "{dup:?}");

    // Joining again changes nothing: no new membership entry.
    let membership = membership_log_index(&nodes[leader as usize - 1]);
    learner.join_as_learner(&voters).await.unwrap();
    assert_eq!(
        membership_log_index(&nodes[leader as usize - 1]),
        membership
    );

    // Down while the voters move on (far enough that the leader purges its
    // log: the learner gets a snapshot), then back on its data dir.
    learner.shutdown().await;
    drop(learner);
    let mut last = 0;
    for i in 0..12 {
        last = nodes[i % 3]
            .propose(create_topic(&format!("t{i}"), vec![vec![1, 2]]))
            .await
            .unwrap();
    }
    // The leader resumes replicating to it without being asked.
    let learner = start(4, learner_addr, dir.path()).await;
    let image = image_at(&learner, last).await;
    assert!(image.topics.contains_key("t11") && image.topics.contains_key("from-learner"));
    assert!(
        learner.raft().metrics().borrow().snapshot.is_some(),
        "caught up through a snapshot"
    );
    // What a restarting broker does anyway: a no-op that waits for the
    // image to reach the leader's commit index.
    let last = voter
        .propose(create_topic("after-restart", vec![vec![1]]))
        .await
        .unwrap();
    learner.join_as_learner(&voters).await.unwrap();
    assert!(learner.metadata().borrow().offset >= last);
    assert_eq!(
        membership_log_index(&nodes[leader as usize - 1]),
        membership
    );
    for n in nodes.iter().chain([&learner]) {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_on_a_new_address_is_updated_and_a_lonely_join_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let voters = voter_map(&[addr]);
    let voter = start(1, addr, dir.path()).await;
    voter.initialize(&voters).await.unwrap();
    // Port 0: the learner advertises the port it got.
    let ephemeral = "127.0.0.1:0".parse().unwrap();
    let learner = start(2, ephemeral, dir.path()).await;
    assert_eq!(learner.advertised_addr(), learner.local_addr().to_string());
    learner.join_as_learner(&voters).await.unwrap();
    learner.shutdown().await;
    drop(learner);

    // Restarted on another port: joining updates its address, and the
    // leader replicates to the new one.
    let learner = start(2, ephemeral, dir.path()).await;
    learner.join_as_learner(&voters).await.unwrap();
    let member = voter
        .raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&2)
        .cloned()
        .unwrap();
    assert_eq!(member.addr, learner.advertised_addr());
    register_live(&voter, 1).await;
    let offset = learner
        .propose(create_topic("moved", vec![vec![1]]))
        .await
        .unwrap();
    image_at(&learner, offset).await;

    // Nobody to join: bounded by the bootstrap timeout.
    voter.shutdown().await;
    let orphan = start_with(3, free_addr(), dir.path(), |c| {
        c.bootstrap_timeout = std::time::Duration::from_millis(800);
    })
    .await;
    let lonely = orphan.join_as_learner(&voters).await;
    assert!(
        matches!(lonely, Err(QuorumError::JoinTimeout { .. })),
        "{lonely:?}"
    );
    learner.shutdown().await;
    orphan.shutdown().await;
}
