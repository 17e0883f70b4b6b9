//! Brokers' lifecycles and the active controller together, on 3 voters and
//! a learner: registration and unfencing, fencing on an expired session
//! and leadership moving away, a new incarnation, preferred leader
//! rebalance, re-registration after being unregistered, and a controller
//! failover that fences nobody alive.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{create_topic, endpoints, free_addr, image_where, start_voters, voter_map};
use rivulet_quorum::{
    metadata::{LeaderChange, MetadataCommand, PartitionChange},
    BrokerInfo, BrokerLifecycle, ControllerConfig, QuorumNode,
};

const HEARTBEAT: Duration = Duration::from_millis(200);
const SESSION: Duration = Duration::from_secs(2);

fn lifecycle(node: &Arc<QuorumNode>) -> BrokerLifecycle {
    let id = i32::try_from(node.id()).unwrap();
    let info = BrokerInfo {
        broker_id: id,
        rack: None,
        endpoints: endpoints(9000 + node.id() as u16),
    };
    node.spawn_broker_lifecycle(info, HEARTBEAT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_fencing_rebalance_and_controller_failover() {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<_> = (0..3).map(|_| free_addr()).collect();
    let voters = voter_map(&addrs);
    let mut nodes = start_voters(&addrs, dir.path()).await;
    let learner = Arc::new(common::start_with(4, free_addr(), dir.path(), |_| {}).await);
    learner.join_as_learner(&voters).await.unwrap();
    nodes.push(learner);
    let config = ControllerConfig {
        session_timeout: SESSION,
        check_interval: Duration::from_millis(100),
        auto_leader_rebalance: true,
        leader_imbalance_check_interval: Duration::from_millis(500),
    };
    for n in &nodes {
        n.spawn_controller(config.clone());
    }
    let mut lifecycles: Vec<Option<BrokerLifecycle>> =
        nodes.iter().map(|n| Some(lifecycle(n))).collect();
    for l in lifecycles.iter().flatten() {
        l.wait_unfenced(common::PATIENCE).await.unwrap();
    }
    let learner = nodes[3].clone();
    image_where(&learner, "all brokers live", |m| {
        m.live_brokers().count() == 4
    })
    .await;
    assert_eq!(learner.metrics().live_brokers, 4);

    // Broker 4 (on the learner) leads; its heartbeats stop: after its
    // session it is fenced and leadership moves to 1.
    learner
        .propose(create_topic("t", vec![vec![4, 1, 2]]))
        .await
        .unwrap();
    let first_epoch = lifecycles[3].as_ref().unwrap().broker_epoch().unwrap();
    let stopped = Instant::now();
    lifecycles[3].take().unwrap().stop();
    let image = image_where(&nodes[0], "broker 4 fenced", |m| {
        m.brokers[&4].fenced && m.topics["t"].partitions[&0].leader == Some(1)
    })
    .await;
    assert!(
        stopped.elapsed() >= SESSION - HEARTBEAT,
        "fenced early: {:?}",
        stopped.elapsed()
    );
    assert_eq!(image.topics["t"].partitions[&0].isr, vec![1, 2]);
    assert_eq!(nodes[0].metrics().fenced_brokers, 1);

    // A new process for broker 4: a new incarnation and epoch. Once it is
    // back in the ISR (its partition leader's AlterPartition), the
    // rebalance makes it the leader again.
    let restarted = lifecycle(&learner);
    let second_epoch = restarted.wait_unfenced(common::PATIENCE).await.unwrap();
    assert!(second_epoch > first_epoch);
    lifecycles[3] = Some(restarted);
    let p = image_where(&learner, "broker 4 live", |m| m.is_live(4))
        .await
        .topics["t"]
        .partitions[&0]
        .clone();
    let rejoin = MetadataCommand::ChangePartition(PartitionChange {
        topic: "t".into(),
        partition: 0,
        leader: LeaderChange::Unchanged,
        isr: Some(vec![1, 2, 4]),
        expected_partition_epoch: Some(p.partition_epoch),
        expected_leader_epoch: Some(p.leader_epoch),
    });
    learner.propose(rejoin).await.unwrap();
    let image = image_where(&learner, "preferred leader 4 back", |m| {
        m.topics["t"].partitions[&0].leader == Some(4)
    })
    .await;
    assert_eq!(
        image.topics["t"].partitions[&0].leader_epoch,
        p.leader_epoch + 1
    );

    // Unregistered by an operator: broker 2's next heartbeat is refused
    // and it registers again, with a new epoch.
    let old = lifecycles[1].as_ref().unwrap().broker_epoch().unwrap();
    nodes[0]
        .propose(MetadataCommand::UnregisterBroker { broker_id: 2 })
        .await
        .unwrap();
    image_where(&nodes[0], "broker 2 back", |m| {
        m.brokers
            .get(&2)
            .is_some_and(|b| b.epoch > old && !b.fenced)
    })
    .await;
    let renewed = lifecycles[1].as_ref().unwrap();
    let epoch = renewed.wait_unfenced(common::PATIENCE).await.unwrap();
    assert!(epoch > old);

    // The active controller dies with its broker. The new one grants every
    // broker a session first: nobody alive is fenced, the dead one is.
    let all: Vec<&QuorumNode> = nodes.iter().map(|n| &**n).collect();
    let leader = common::wait_for_leader(&all, None).await;
    let index = leader as usize - 1;
    lifecycles[index].take();
    nodes[index].shutdown().await;
    let survivors: Vec<Arc<QuorumNode>> =
        nodes.iter().filter(|n| n.id() != leader).cloned().collect();
    let watcher = survivors[0].clone();
    let dead = i32::try_from(leader).unwrap();
    let watch_until = Instant::now() + 3 * SESSION;
    while Instant::now() < watch_until {
        let image = watcher.metadata().borrow().clone();
        let fenced: Vec<_> = image
            .brokers
            .values()
            .filter(|b| b.fenced)
            .map(|b| b.id)
            .collect();
        assert!(
            fenced.iter().all(|&id| id == dead),
            "live brokers fenced: {fenced:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    image_where(&watcher, "the dead broker fenced", |m| {
        m.brokers[&dead].fenced
    })
    .await;
    let metrics: Vec<_> = survivors.iter().map(|n| n.metrics()).collect();
    let active: u8 = metrics.iter().map(|m| m.active_controller_count).sum();
    assert_eq!(active, 1, "{metrics:?}");
    assert_eq!((metrics[0].live_brokers, metrics[0].fenced_brokers), (3, 1));
    assert_eq!(
        survivors[0].watch_leader().borrow().map(|l| l != leader),
        Some(true)
    );
    for n in &survivors {
        n.shutdown().await;
    }
}
