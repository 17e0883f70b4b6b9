//! Log divergence: a leader that took writes its followers never copied
//! (acks=1 while they were paused) and then died must, when it comes back,
//! cut that tail (OffsetForLeaderEpoch against the new leader) and take the
//! new leader's records at those offsets, so every replica holds the same
//! log again. The test then makes it leader again and reads its log.

use std::time::Duration;

use kafka_protocol::records::Compression;
use rivulet_tests::{
    cluster::DevCluster,
    cluster_checks::{
        create_replicated_topic, elect_preferred_leaders, partitions_from, poll_until, try_client,
        wait_fully_in_sync,
    },
    kafka::encode_batch,
    unique_topic, Msg,
};

/// How long any one step may take (failovers take seconds).
const STEP: Duration = Duration::from_secs(45);

fn batch(prefix: &str, n: usize) -> bytes::Bytes {
    let msgs: Vec<Msg> = (0..n)
        .map(|i| Msg::new(None, &format!("{prefix}-{i}")))
        .collect();
    encode_batch(&msgs, Compression::None)
}

#[test]
fn a_returning_leader_cuts_the_tail_it_alone_wrote() {
    let mut cluster = DevCluster::builder(3)
        .config("broker.session.timeout.ms", "4000")
        .config("broker.heartbeat.interval.ms", "500")
        // Paused followers stay in the ISR: only the leader has the tail.
        .config("replica.lag.time.max.ms", "120000")
        .config("auto.leader.rebalance.enable", "false")
        .config("min.insync.replicas", "1")
        .config("offsets.topic.num.partitions", "1")
        .start();
    let ids = cluster.broker_ids();
    let topic = unique_topic("diverge");
    let mut admin = cluster.client(ids[0]);
    create_replicated_topic(&mut admin, &topic, 1, 3, &[]).expect("create the topic");
    let (parts, _) = wait_fully_in_sync(&cluster, &ids, &topic, 1, STEP);
    let old = parts[&0].clone();
    let leader = old.leader;
    assert_eq!(
        leader, old.replicas[0],
        "the first replica leads a new partition"
    );
    let followers: Vec<i32> = ids.iter().copied().filter(|&id| id != leader).collect();

    // Committed by every replica.
    let mut conn = try_client(&cluster, leader).expect("connect to the leader");
    let r = conn
        .produce_batch(&topic, 0, batch("committed", 10), -1)
        .expect("acks=all produce");
    assert_eq!((r.error_code, r.base_offset), (0, 0));

    // Written by the leader alone.
    for &f in &followers {
        cluster.pause(f);
    }
    // A fetch a follower sent just before it stopped may be parked at the
    // leader; it must expire (replica.fetch.wait.max.ms, 500 ms) before the
    // tail is written, or the tail would land in that follower's socket.
    std::thread::sleep(Duration::from_millis(1500));
    let r = conn
        .produce_batch(&topic, 0, batch("lost", 5), 1)
        .expect("acks=1 produce");
    assert_eq!(
        (r.error_code, r.base_offset),
        (0, 10),
        "the leader took the tail"
    );
    cluster.kill9(leader);
    for &f in &followers {
        cluster.resume(f);
    }

    // A follower takes over in a new epoch and writes its own offsets 10..
    let (new, took) = poll_until(STEP, "a new leader among the followers", || {
        let parts = partitions_from(&cluster, &followers, &topic)?;
        let p = parts[&0].clone();
        if followers.contains(&p.leader) && p.leader_epoch > old.leader_epoch {
            Ok(p)
        } else {
            Err(format!("{p:?}"))
        }
    });
    eprintln!("new leader {} after {took:?}", new.leader);
    let mut conn = try_client(&cluster, new.leader).expect("connect to the new leader");
    let (r, _) = poll_until(STEP, "an acks=all write to the new leader", || {
        let r = conn
            .produce_batch(&topic, 0, batch("kept", 3), -1)
            .map_err(|e| format!("{e:#}"))?;
        if r.error_code == 0 {
            Ok(r)
        } else {
            Err(format!("error code {}", r.error_code))
        }
    });
    assert_eq!(r.base_offset, 10, "the new leader never had the tail");

    // The old leader returns, cuts its tail and catches up.
    cluster.restart(leader);
    let (_, took) = wait_fully_in_sync(&cluster, &ids, &topic, 1, STEP);
    eprintln!("old leader back in the ISR after {took:?}");
    let (_, took) = poll_until(STEP, "the old leader leading again", || {
        let mut c = try_client(&cluster, new.leader).map_err(|e| format!("{e:#}"))?;
        let results =
            elect_preferred_leaders(&mut c, &topic, &[0]).map_err(|e| format!("{e:#}"))?;
        let parts = partitions_from(&cluster, &ids, &topic)?;
        if parts[&0].leader == leader {
            Ok(())
        } else {
            Err(format!("{results:?} {:?}", parts[&0]))
        }
    });
    eprintln!("preferred leader restored after {took:?}");

    let values = poll_until(STEP, "the old leader's log", || {
        let mut c = try_client(&cluster, leader).map_err(|e| format!("{e:#}"))?;
        let records = c.fetch_all(&topic, 0, 0).map_err(|e| format!("{e:#}"))?;
        if records.len() < 13 {
            return Err(format!("{} records so far", records.len()));
        }
        Ok(records
            .iter()
            .map(|r| {
                let v = r
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).to_string());
                (r.offset, v.unwrap_or_default())
            })
            .collect::<Vec<_>>())
    })
    .0;
    let expected: Vec<(i64, String)> = (0..10)
        .map(|i| (i, format!("committed-{i}")))
        .chain((0..3).map(|i| (10 + i, format!("kept-{i}"))))
        .collect();
    assert_eq!(
        values, expected,
        "the divergent tail is gone, replaced by the new leader's records"
    );
}
