//! The voter set (KIP-853) at the quorum level: a voter that lost its
//! log does not vote until it has caught up and the leader has recorded
//! its new directory; learners become voters and voters learners; nodes of
//! another cluster are refused.

mod common;

use std::time::Duration;

use common::{
    create_topic, free_addr, image_at, register_live, start_voters, start_with, voter_map,
    wait_for_leader,
};
use rivulet_quorum::{network::VotersRefused, QuorumError, QuorumNode};
use uuid::Uuid;

/// The directory id the membership records for `id`, as `node` sees it.
fn recorded_directory(node: &QuorumNode, id: u64) -> Option<Uuid> {
    node.raft()
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&id)
        .and_then(|n| n.directory_id)
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_with_a_new_directory_votes_only_once_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<_> = (0..3).map(|_| free_addr()).collect();
    let voters = voter_map(&addrs);
    let nodes = start_voters(&addrs, dir.path()).await;
    let all: Vec<&QuorumNode> = nodes.iter().map(|n| n.as_ref()).collect();
    let leader = wait_for_leader(&all, None).await;
    // Each claims its entry when it joins (the founder listed the others
    // by address only).
    for n in &nodes {
        n.join_as_learner(&voters).await.unwrap();
    }
    let leader_node = &nodes[leader as usize - 1];
    register_live(leader_node, 1).await;
    let offset = leader_node
        .propose(create_topic("before", vec![vec![1]]))
        .await
        .unwrap();
    for n in &nodes {
        image_at(n, offset).await;
        for id in 1..=3 {
            assert_eq!(
                recorded_directory(n, id),
                Some(Uuid::from_u128(u128::from(id)))
            );
        }
    }

    // A follower loses its disk and comes back with a new directory.
    let victim = (1..=3).find(|&id| id != leader).unwrap();
    let victim_node = &nodes[victim as usize - 1];
    victim_node.shutdown().await;
    let victim_dir = dir.path().join(format!("node-{victim}"));
    std::fs::remove_dir_all(&victim_dir).unwrap();
    let new_dir = Uuid::new_v4();
    let reborn = start_with(victim, addrs[victim as usize - 1], dir.path(), |c| {
        c.founder = false;
        c.directory_id = new_dir;
    })
    .await;
    assert!(
        !reborn.is_admitted(),
        "an empty, non-founder log must not vote"
    );
    reborn.join_as_learner(&voters).await.unwrap();
    eventually("the new directory recorded", || {
        recorded_directory(leader_node, victim) == Some(new_dir)
    })
    .await;
    eventually("the reborn voter votes again", || reborn.is_admitted()).await;
    // It holds everything committed before the wipe.
    assert!(image_at(&reborn, offset)
        .await
        .topics
        .contains_key("before"));
    reborn.shutdown().await;
    for n in &nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learners_become_voters_and_voters_learners() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = vec![free_addr()];
    let voters = voter_map(&addrs);
    let nodes = start_voters(&addrs, dir.path()).await;
    let voter = &nodes[0];
    let learner_addr = free_addr();
    let learner = start_with(2, learner_addr, dir.path(), |c| c.founder = false).await;
    learner.join_as_learner(&voters).await.unwrap();

    let state = voter.describe_quorum().await.unwrap();
    assert_eq!(state.leader_id, 1);
    assert_eq!(
        state.voters.iter().map(|m| m.node_id).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(
        state
            .observers
            .iter()
            .map(|m| m.node_id)
            .collect::<Vec<_>>(),
        vec![2]
    );

    // A directory that is not the learner's is refused; its own is taken.
    let wrong = learner.add_voter(2, Some(Uuid::new_v4())).await;
    assert!(
        matches!(
            wrong,
            Err(QuorumError::Voters(VotersRefused::DirectoryMismatch { .. }))
        ),
        "{wrong:?}"
    );
    learner
        .add_voter(2, Some(Uuid::from_u128(2)))
        .await
        .expect("add voter 2 (asked through the learner itself)");
    let state = learner.describe_quorum().await.unwrap();
    assert_eq!(
        state.voters.iter().map(|m| m.node_id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(state.observers.is_empty());

    // An unknown node cannot be added; the last voter cannot be removed.
    let unknown = voter.add_voter(9, None).await;
    assert!(
        matches!(
            unknown,
            Err(QuorumError::Voters(VotersRefused::UnknownNode(9)))
        ),
        "{unknown:?}"
    );
    voter
        .remove_voter(1, None)
        .await
        .expect("remove the leader itself");
    let all = [voter.as_ref(), &learner];
    let new_leader = wait_for_leader(&all, Some(1)).await;
    assert_eq!(
        new_leader, 2,
        "the leader handed over to the remaining voter"
    );
    let last = learner.remove_voter(2, None).await;
    assert!(
        matches!(last, Err(QuorumError::Voters(VotersRefused::LastVoter(2)))),
        "{last:?}"
    );
    // The demoted node still follows the log.
    register_live(&learner, 1).await;
    let offset = learner
        .propose(create_topic("after", vec![vec![1]]))
        .await
        .unwrap();
    assert!(image_at(voter, offset).await.topics.contains_key("after"));
    learner.shutdown().await;
    voter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_cannot_join() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = vec![free_addr()];
    let voters = voter_map(&addrs);
    let nodes = start_with(1, addrs[0], dir.path(), |c| c.cluster_id = "first".into()).await;
    nodes.initialize(&voters).await.unwrap();
    let stranger = start_with(2, free_addr(), dir.path(), |c| {
        c.cluster_id = "second".into();
        c.founder = false;
        c.bootstrap_timeout = Duration::from_secs(2);
    })
    .await;
    let joined = stranger.join_as_learner(&voters).await;
    let Err(QuorumError::JoinTimeout { last, .. }) = joined else {
        panic!("a node of another cluster joined: {joined:?}");
    };
    assert!(last.contains("INCONSISTENT_CLUSTER_ID"), "{last}");
    let state = nodes.describe_quorum().await.unwrap();
    assert!(state.observers.is_empty(), "{state:?}");
    stranger.shutdown().await;
    nodes.shutdown().await;
}
