//! Cluster identity and the voter set, black-box with `rivulet dev`:
//! a voter whose disk is wiped rejoins the same cluster and loses
//! nothing; a broker refuses another cluster's directory; the quorum
//! grows 1 -> 3 and shrinks 3 -> 1 (KIP-853's AddRaftVoter and
//! RemoveRaftVoter through `rivulet quorum`), DescribeQuorum showing each
//! step.

use std::{collections::BTreeSet, process::Command, time::Duration};

use kafka_protocol::{
    messages::{
        describe_quorum_request::{PartitionData, TopicData},
        DescribeQuorumRequest, DescribeQuorumResponse,
    },
    records::Compression,
};
use rivulet_tests::{
    broker::BrokerProcess,
    cluster::DevCluster,
    cluster_checks::{
        create_replicated_topic, poll_until, topic_partitions, try_client, wait_fully_in_sync,
    },
    kafka::{topic_name, Msg},
    rivulet_bin, rivulet_cmd, run_cmd,
};

const QUORUM_WAIT: Duration = Duration::from_secs(60);

/// (leader, voters, observers, voter directory ids as Kafka prints them).
type Quorum = (i32, Vec<i32>, Vec<i32>, Vec<String>);

/// DescribeQuorum from broker `id`: (leader, voters, observers, voter
/// directory ids).
fn describe(cluster: &DevCluster, id: i32) -> Result<Quorum, String> {
    let mut conn = try_client(cluster, id).map_err(|e| format!("{e:#}"))?;
    let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic_name("__cluster_metadata"))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let resp: DescribeQuorumResponse = conn.call(&req, 2).map_err(|e| format!("{e:#}"))?;
    if resp.error_code != 0 {
        return Err(format!(
            "DescribeQuorum error {} {:?}",
            resp.error_code, resp.error_message
        ));
    }
    let p = &resp.topics[0].partitions[0];
    let ids = |r: &[kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
        let mut v: Vec<i32> = r.iter().map(|s| s.replica_id.0).collect();
        v.sort();
        v
    };
    let mut voters: Vec<_> = p
        .current_voters
        .iter()
        .map(|s| (s.replica_id.0, s.replica_directory_id))
        .collect();
    voters.sort();
    Ok((
        p.leader_id.0,
        ids(&p.current_voters),
        ids(&p.observers),
        voters
            .into_iter()
            .map(|(_, d)| rivulet_wire::uuid_text::encode(d.as_bytes()))
            .collect(),
    ))
}

/// Runs `rivulet broker` as a single broker on `data`, to see it refuse.
fn start_single_broker(data: &std::path::Path) -> rivulet_tests::CmdOutput {
    run_cmd(
        Command::new(rivulet_bin())
            .args(["broker", "--listeners", "PLAINTEXT://127.0.0.1:0"])
            .args(["--metrics-addr", "none", "--data-dir"])
            .arg(data),
        None,
        Duration::from_secs(30),
    )
}

/// The cluster id broker `id` reports.
fn cluster_id(cluster: &DevCluster, id: i32) -> String {
    let md = cluster.client(id).metadata(Some(&[])).expect("Metadata");
    md.cluster_id.expect("a cluster id").to_string()
}

/// `directory.id` of broker `id`'s data directory. A broker that just
/// restarted on an empty directory may be listening before it has
/// formatted it, so this waits (bounded) for the file.
fn directory_id(cluster: &DevCluster, id: i32) -> String {
    let path = cluster
        .data_dir()
        .join(format!("broker-{id}/data/meta.properties"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        match std::fs::read_to_string(&path) {
            Ok(text) if text.contains("directory.id=") => break text,
            Ok(_) | Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Ok(text) => break text,
            Err(e) => panic!("{}: {e}", path.display()),
        }
    };
    text.lines()
        .find_map(|l| l.strip_prefix("directory.id="))
        .expect("directory.id")
        .to_owned()
}

#[test]
fn a_voter_with_a_wiped_disk_rejoins_the_same_cluster_and_nothing_is_lost() {
    let mut cluster = DevCluster::start(3, &[]);
    let id_before = cluster_id(&cluster, 0);
    let mut conn = cluster.client(0);
    create_replicated_topic(&mut conn, "kept", 3, 3, &[]).expect("create kept");
    wait_fully_in_sync(&cluster, &[0, 1, 2], "kept", 3, QUORUM_WAIT);
    let msgs: Vec<Msg> = (0..100)
        .map(|i| Msg::new(None, &format!("record-{i}")))
        .collect();
    let mut written = 0;
    for p in 0..3 {
        let leader = topic_partitions(&mut conn, "kept").expect("metadata")[&p].leader;
        let chunk: Vec<Msg> = msgs
            .iter()
            .skip(p as usize * 34)
            .take(34)
            .cloned()
            .collect();
        written += chunk.len();
        cluster
            .client(leader)
            .produce("kept", p, &chunk, Compression::None)
            .expect("produce");
    }
    assert_eq!(written, 100);
    let (_, voters, _, _) = describe(&cluster, 0).expect("describe");
    assert_eq!(voters, vec![0, 1, 2]);
    let old_dir = directory_id(&cluster, 1);

    // Voter 1 loses its disk: kill -9, delete, restart with the same args.
    cluster.kill9(1);
    std::fs::remove_dir_all(cluster.data_dir().join("broker-1/data")).expect("wipe broker 1");
    cluster.restart(1);

    let new_dir = directory_id(&cluster, 1);
    assert_ne!(new_dir, old_dir, "the wiped broker has a new directory");
    // It is formatted as a member of the same cluster, never a founder.
    let log = cluster.log(1);
    assert!(log.contains("founder=false"), "{log}");
    assert_eq!(
        log.matches("an initial voter; waiting for the founder")
            .count(),
        1,
        "only its first start was one of the initial voters:\n{log}"
    );
    assert!(!log.contains("founding the controller quorum"), "{log}");
    poll_until(
        QUORUM_WAIT,
        "the wiped voter's new directory recorded in the quorum",
        || {
            let (_, voters, observers, dirs) = describe(&cluster, 2)?;
            if voters == [0, 1, 2] && observers.is_empty() && dirs[1] == new_dir {
                Ok(())
            } else {
                Err(format!(
                    "voters {voters:?} observers {observers:?} dirs {dirs:?}"
                ))
            }
        },
    );
    for id in 0..3 {
        assert_eq!(
            cluster_id(&cluster, id),
            id_before,
            "broker {id} is in the same cluster"
        );
    }
    wait_fully_in_sync(&cluster, &[0, 1, 2], "kept", 3, QUORUM_WAIT);
    // Every record is there, read from each partition's leader (a new
    // leader answers once its high watermark has caught up).
    poll_until(
        QUORUM_WAIT,
        "all 100 records readable after the wipe",
        || {
            let mut read = BTreeSet::new();
            let mut per_partition = Vec::new();
            let leaders = topic_partitions(&mut conn, "kept").map_err(|e| format!("{e:#}"))?;
            for p in 0..3 {
                let leader = leaders[&p].leader;
                let mut client = try_client(&cluster, leader).map_err(|e| format!("{e:#}"))?;
                let records = client
                    .fetch_all("kept", p, 0)
                    .map_err(|e| format!("{e:#}"))?;
                per_partition.push((p, leader, records.len()));
                for r in records {
                    read.insert(String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned());
                }
            }
            if read.len() == 100 {
                Ok(())
            } else {
                Err(format!("(partition, leader, records): {per_partition:?}"))
            }
        },
    );
}
#[test]
fn a_broker_refuses_a_directory_of_another_cluster() {
    let first = DevCluster::start(1, &[]);
    let second = DevCluster::start(1, &[]);
    let first_id = cluster_id(&first, 0);
    let second_id = cluster_id(&second, 0);
    assert_ne!(first_id, second_id, "two dev clusters, two ids");
    // Broker 0 of the second cluster's config, on the first's directory.
    let foreign = first.data_dir().join("broker-0/data");
    let out = run_cmd(
        Command::new(rivulet_bin())
            .arg("broker")
            .arg("--config-file")
            .arg(second.data_dir().join("broker-0/server.properties"))
            .arg("--data-dir")
            .arg(&foreign)
            .args([
                "--metrics-addr",
                "none",
                "--listeners",
                "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
            ]),
        None,
        Duration::from_secs(30),
    );
    assert!(
        !out.status.success(),
        "started on another cluster's directory:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("INCONSISTENT_CLUSTER_ID"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&first_id) && out.stderr.contains(&second_id),
        "{}",
        out.stderr
    );
}

#[test]
fn a_single_broker_refuses_a_copy_of_a_cluster_members_directory() {
    let mut cluster = DevCluster::start(3, &[]);
    cluster.stop();
    let tmp = tempfile::tempdir().expect("temp dir");
    let copy = tmp.path().join("copy");
    let status = Command::new("cp")
        .arg("-a")
        .arg(cluster.data_dir().join("broker-0/data"))
        .arg(&copy)
        .status()
        .expect("cp");
    assert!(status.success());
    let partitions_before = std::fs::read_dir(&copy).expect("copy").count();
    let out = start_single_broker(&copy);
    assert!(
        !out.status.success(),
        "a cluster member's copy started as a single broker"
    );
    assert!(
        out.stderr.contains("single-broker cluster"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_dir(&copy).expect("copy").count(),
        partitions_before,
        "nothing in the directory was removed"
    );
}

#[test]
fn the_quorum_grows_from_one_voter_to_three_and_back() {
    let cluster = DevCluster::builder(3).voters(1).start();
    let bootstrap = cluster.bootstrap();
    let step = |expected: &[i32], what: &str| {
        poll_until(QUORUM_WAIT, what, || {
            let (leader, voters, observers, _) = describe(&cluster, 2)?;
            let all: BTreeSet<i32> = voters.iter().chain(&observers).copied().collect();
            if voters == expected && all == BTreeSet::from([0, 1, 2]) && voters.contains(&leader) {
                Ok(())
            } else {
                Err(format!(
                    "leader {leader} voters {voters:?} observers {observers:?}"
                ))
            }
        })
    };
    step(&[0], "one voter, two observers");
    for (args, expected) in [
        (vec!["quorum", "add-voter", "1"], vec![0, 1]),
        (vec!["quorum", "add-voter", "2"], vec![0, 1, 2]),
        (vec!["quorum", "remove-voter", "0"], vec![1, 2]),
        (vec!["quorum", "remove-voter", "1"], vec![2]),
    ] {
        let out = run_cmd(&mut rivulet_cmd(&bootstrap, &args), None, QUORUM_WAIT);
        out.assert_success(&format!("rivulet {}", args.join(" ")));
        step(
            &expected,
            &format!("voters {expected:?} after {}", args.join(" ")),
        );
    }
    // The last voter cannot go; the answer says why.
    let out = run_cmd(
        &mut rivulet_cmd(&bootstrap, &["quorum", "remove-voter", "2"]),
        None,
        QUORUM_WAIT,
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("last voter"), "{}", out.stderr);
    // The cluster still works: a topic can be created through broker 0,
    // which is no longer a voter.
    let mut conn = cluster.client(0);
    create_replicated_topic(&mut conn, "after", 1, 3, &[]).expect("create after the shrink");
    let described = run_cmd(
        &mut rivulet_cmd(&bootstrap, &["quorum", "describe"]),
        None,
        QUORUM_WAIT,
    );
    described.assert_success("rivulet quorum describe");
    assert!(
        described.stdout.contains("CurrentVoters:  [2]"),
        "{}",
        described.stdout
    );
}

#[test]
fn a_single_broker_whose_metadata_log_is_gone_says_so_instead_of_waiting() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let mut broker = BrokerProcess::builder().data_dir(&data).start();
    broker.create_topic("kept", 1, &[]);
    broker.terminate();
    std::fs::remove_dir_all(data.join("__cluster_metadata")).expect("delete the metadata log");
    let out = start_single_broker(&data);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("metadata log of single-broker cluster"),
        "{}",
        out.stderr
    );
    assert!(data.join("kept-0").exists(), "the partition data is kept");
}

#[test]
fn dev_restarted_after_its_founders_disk_was_wiped_rejoins_instead_of_founding() {
    let mut cluster = DevCluster::start(3, &[]);
    let id_before = cluster_id(&cluster, 1);
    let mut conn = cluster.client(1);
    create_replicated_topic(&mut conn, "kept", 1, 3, &[]).expect("create kept");
    wait_fully_in_sync(&cluster, &[0, 1, 2], "kept", 1, QUORUM_WAIT);
    cluster.stop();
    std::fs::remove_dir_all(cluster.data_dir().join("broker-0/data")).expect("wipe broker 0");
    cluster.restart_dev();
    let log = cluster.log(0);
    assert_eq!(
        log.matches("founding the controller quorum").count(),
        1,
        "broker 0 founded again:\n{log}"
    );
    for id in 0..3 {
        assert_eq!(cluster_id(&cluster, id), id_before, "broker {id}");
    }
    wait_fully_in_sync(&cluster, &[0, 1, 2], "kept", 1, QUORUM_WAIT);
}

#[test]
fn a_broker_that_cannot_reach_its_quorum_is_up_but_not_ready_and_says_why() {
    let mut cluster = DevCluster::start(3, &[]);
    let metrics_addr = |cluster: &DevCluster, id: i32| {
        cluster
            .metrics_url(id)
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .to_owned()
    };
    let (status, body) =
        rivulet_tests::metrics::http_get(&metrics_addr(&cluster, 2), "/ready").expect("GET /ready");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    // Two of three voters gone: broker 2, restarted, cannot register.
    cluster.kill9(0);
    cluster.kill9(1);
    cluster.restart(2);
    let addr = metrics_addr(&cluster, 2);
    let (body, _) = poll_until(QUORUM_WAIT, "broker 2 up but not ready", || {
        match rivulet_tests::metrics::http_get(&addr, "/ready") {
            Ok((503, body)) => Ok(body),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(format!("{e:#}")),
        }
    });
    assert!(body.starts_with("not ready: "), "{body}");
    assert!(
        body.contains("controller quorum"),
        "the reason names the quorum: {body}"
    );
    // Its metrics answer meanwhile.
    let (status, _) = rivulet_tests::metrics::http_get(&addr, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    cluster.restart(0);
    cluster.restart(1);
    poll_until(
        QUORUM_WAIT,
        "broker 2 ready once the quorum is back",
        || match rivulet_tests::metrics::http_get(&addr, "/ready") {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}
