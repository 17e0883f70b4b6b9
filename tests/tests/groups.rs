//! Consumer groups against one broker: kcat balanced consumers (`-G`) share
//! a topic with every message consumed exactly once, and when one is killed
//! with SIGKILL the survivors take over its partitions from its last
//! committed offsets, losing nothing; committed offsets survive a kill -9 of
//! the broker; and the lag of a group shows on `/metrics`.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use kafka_protocol::records::Compression;
use rivulet_tests::{
    groups::{committed_offsets, wait_for_group, wait_json_line},
    kcat,
    metrics::{find, http_get, parse_samples},
    py_command, require_py, require_tools, run_py, unique_topic, Background, BrokerProcess,
    KafkaConn, Msg,
};

const PARTITIONS: i32 = 6;

/// `session.timeout.ms` given to the kcat members.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// One line of a member's output: (partition, offset, value).
type Consumed = (i32, i64, String);

/// Starts a kcat balanced consumer of `topic` in `group`, printing
/// `partition offset value` lines unbuffered, starting from the committed
/// offsets (from the beginning where there are none).
fn kcat_member(b: &str, group: &str, topic: &str, dir: &Path, name: &str) -> Background {
    let mut cmd = kcat(b);
    cmd.args([
        "-G",
        group,
        // Not `-o beginning`: in -G mode kcat assigns every partition it is
        // given at that offset on each rebalance, ignoring committed offsets.
        "-u",
        "-f",
        "%p %o %s\\n",
        "-X",
        "auto.offset.reset=earliest",
        "-X",
        "session.timeout.ms=6000",
        "-X",
        "heartbeat.interval.ms=500",
        "-X",
        "auto.commit.interval.ms=500",
        topic,
    ]);
    Background::spawn(&mut cmd, dir, name)
}

/// Parses a member's output so far (a last line without its newline is
/// still being written and is left out).
fn consumed(path: &Path) -> Vec<Consumed> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let mut next = || {
                parts
                    .next()
                    .unwrap_or_else(|| panic!("bad kcat line {l:?}"))
            };
            let p = next()
                .parse()
                .unwrap_or_else(|e| panic!("bad line {l:?}: {e}"));
            let o = next()
                .parse()
                .unwrap_or_else(|e| panic!("bad line {l:?}: {e}"));
            (p, o, next().to_string())
        })
        .collect()
}

/// Produces `per_partition` unique values to every partition (one batch
/// each) and returns value -> (partition, offset).
fn produce_round(
    c: &mut KafkaConn,
    topic: &str,
    round: &str,
    per_partition: usize,
) -> BTreeMap<String, (i32, i64)> {
    produce_to(c, topic, PARTITIONS, round, per_partition)
}

/// [`produce_round`] for a topic of `partitions` partitions.
fn produce_to(
    c: &mut KafkaConn,
    topic: &str,
    partitions: i32,
    round: &str,
    per_partition: usize,
) -> BTreeMap<String, (i32, i64)> {
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        let values: Vec<String> = (0..per_partition)
            .map(|i| format!("{round}-p{p}-{i}"))
            .collect();
        let msgs: Vec<Msg> = values.iter().map(|v| Msg::new(None, v)).collect();
        let base = c
            .produce(topic, p, &msgs, Compression::None)
            .unwrap_or_else(|e| panic!("produce to {topic}-{p}: {e:#}"));
        for (i, v) in values.into_iter().enumerate() {
            out.insert(v, (p, base + i as i64));
        }
    }
    out
}

/// Waits until the outputs at `paths` together hold every value of
/// `expected`; panics after `timeout` with what is missing.
fn wait_consumed(paths: &[&Path], expected: &BTreeMap<String, (i32, i64)>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let seen: BTreeSet<String> = paths
            .iter()
            .flat_map(|p| consumed(p))
            .map(|(_, _, v)| v)
            .collect();
        let missing: Vec<&String> = expected.keys().filter(|v| !seen.contains(*v)).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} messages not consumed within {timeout:?}, e.g. {:?}",
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(5)]
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn kcat_balanced_group_shares_partitions_and_survives_member_kill() {
    require_tools!("kcat");
    let broker = BrokerProcess::builder()
        .config("group.initial.rebalance.delay.ms", "0")
        .start();
    let b = broker.bootstrap();
    let topic = unique_topic("kcatg");
    let group = format!("{topic}-grp");
    broker.create_topic(&topic, PARTITIONS, &[]);
    let mut c = broker.client();
    let dir = broker.scratch_dir();

    eprintln!("starting 3 kcat -G members");
    let mut members: Vec<Option<Background>> = (0..3)
        .map(|i| Some(kcat_member(&b, &group, &topic, dir, &format!("m{i}"))))
        .collect();
    let out: Vec<_> = (0..3).map(|i| dir.join(format!("m{i}.stdout"))).collect();
    let info = wait_for_group(
        &mut c,
        &group,
        Duration::from_secs(40),
        "3 balanced members",
        |g| g.is_balanced(&topic, 3, PARTITIONS),
    );
    eprintln!("group stable: {info:?}");

    // Round 1: every message consumed by exactly one member.
    let first = produce_round(&mut c, &topic, "r1", 50);
    let paths: Vec<&Path> = out.iter().map(|p| p.as_path()).collect();
    wait_consumed(&paths, &first, Duration::from_secs(30));
    let mut owner_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut partitions_of: Vec<BTreeSet<i32>> = vec![BTreeSet::new(); 3];
    for (i, path) in out.iter().enumerate() {
        for (p, o, v) in consumed(path) {
            assert_eq!(
                first.get(&v),
                Some(&(p, o)),
                "member {i} consumed {v:?} at {p}/{o}, not where it was produced"
            );
            if let Some(other) = owner_of.insert(v.clone(), i) {
                panic!("{v:?} consumed twice (members {other} and {i}) while all were alive");
            }
            partitions_of[i].insert(p);
        }
    }
    assert_eq!(owner_of.len(), first.len(), "consumed set != produced set");
    for (i, ps) in partitions_of.iter().enumerate() {
        assert!(
            !ps.is_empty(),
            "member {i} consumed nothing: {partitions_of:?}"
        );
    }
    eprintln!(
        "round 1: {} messages, each once; partitions {partitions_of:?}",
        first.len()
    );

    // Let the auto-commits land, so the killed member has committed work.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let committed = committed_offsets(&mut c, &group, &topic, PARTITIONS).expect("offsets");
        if (0..PARTITIONS).all(|p| committed.get(&p) == Some(&50)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kcat's auto-commits did not reach offset 50 on every partition within 15 s: {committed:?}"
        );
        thread::sleep(Duration::from_millis(200));
    }

    // Kill member 0 (SIGKILL: no LeaveGroup, no final commit).
    let victim_parts = partitions_of[0].clone();
    drop(members[0].take());
    let killed_at = Instant::now();
    let committed_at_kill = committed_offsets(&mut c, &group, &topic, PARTITIONS).expect("offsets");
    eprintln!("killed member 0 (partitions {victim_parts:?}); committed {committed_at_kill:?}");

    let second = produce_round(&mut c, &topic, "r2", 20);
    let survivors: Vec<&Path> = vec![&out[1], &out[2]];
    wait_consumed(
        &survivors,
        &second,
        SESSION_TIMEOUT + Duration::from_secs(25),
    );
    eprintln!("survivors took over after {:?}", killed_at.elapsed());
    let info = wait_for_group(
        &mut c,
        &group,
        Duration::from_secs(20),
        "2 balanced members",
        |g| g.is_balanced(&topic, 2, PARTITIONS),
    );
    eprintln!("group after the kill: {info:?}");

    // Nothing lost; duplicates only at or after the killed member's commits.
    let all: BTreeMap<String, (i32, i64)> = first.into_iter().chain(second).collect();
    let mut times_seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for path in &out {
        for (p, o, v) in consumed(path) {
            assert_eq!(all.get(&v), Some(&(p, o)), "{v:?} consumed at {p}/{o}");
            *times_seen.entry((p, o)).or_insert(0) += 1;
        }
    }
    // Per member and partition: (first offset, last offset, count), for messages.
    let ranges: Vec<BTreeMap<i32, (i64, i64, usize)>> = out
        .iter()
        .map(|path| {
            let mut r: BTreeMap<i32, (i64, i64, usize)> = BTreeMap::new();
            for (p, o, _) in consumed(path) {
                let e = r.entry(p).or_insert((o, o, 0));
                e.0 = e.0.min(o);
                e.1 = e.1.max(o);
                e.2 += 1;
            }
            r
        })
        .collect();
    eprintln!("consumed per member, partition -> (first, last, count): {ranges:?}");
    let lost: Vec<_> = all
        .values()
        .filter(|po| !times_seen.contains_key(po))
        .collect();
    assert!(lost.is_empty(), "messages never consumed: {lost:?}");
    for ((p, o), n) in &times_seen {
        if *n > 1 {
            let from = committed_at_kill.get(p).copied().unwrap_or(0);
            assert!(
                victim_parts.contains(p) && *o >= from,
                "{p}/{o} consumed {n} times, though it was committed ({committed_at_kill:?}) \
                 before member 0 (partitions {victim_parts:?}) was killed; per member \
                 partition -> (first, last, count): {ranges:?}"
            );
        }
    }
    // The survivors resumed the victim's partitions exactly at its commits.
    for p in &victim_parts {
        let first_seen = survivors
            .iter()
            .flat_map(|path| consumed(path))
            .filter(|(q, _, _)| q == p)
            .map(|(_, o, _)| o)
            .min();
        assert_eq!(
            first_seen,
            committed_at_kill.get(p).copied(),
            "first offset the survivors consumed on the killed member's partition {p}"
        );
    }
    drop(members);
}

/// Starts `group_offsets.py hold`: a confluent-kafka member of `group` that
/// commits offset 2+p on partition p of `topic` and stays in the group until
/// `stop` exists. Returns it once the commit is acknowledged.
fn hold_group(broker: &BrokerProcess, topic: &str, group: &str, stop: &Path) -> Background {
    let parts = 3.to_string();
    let stop = stop.to_str().expect("utf-8 path");
    let holder = Background::spawn(
        &mut py_command(
            "group_offsets.py",
            &["hold", &broker.bootstrap(), topic, &parts, group, stop],
        ),
        broker.scratch_dir(),
        "holder",
    );
    let line = wait_json_line(&holder, Duration::from_secs(60), "group_offsets.py hold");
    eprintln!("holder committed: {line}");
    holder
}

/// Partition -> 2 + partition: what `group_offsets.py hold` commits.
fn held_offsets() -> BTreeMap<i32, i64> {
    (0..3).map(|p| (p, 2 + i64::from(p))).collect()
}

#[test]
fn committed_offsets_survive_broker_kill9() {
    require_py!("confluent_kafka");
    let mut broker = BrokerProcess::builder()
        .config("group.initial.rebalance.delay.ms", "0")
        .start();
    let topic = unique_topic("gcrash");
    let group = format!("{topic}-grp");
    broker.create_topic(&topic, 3, &[]);
    produce_to(&mut broker.client(), &topic, 3, "c", 10);

    let stop = broker.scratch_dir().join("stop");
    let holder = hold_group(&broker, &topic, &group, &stop);
    // Crash right after the commit was acknowledged, member still alive.
    broker.kill9();
    drop(holder);
    eprintln!("broker killed after the commit; restarting");
    broker.restart();

    let expected = held_offsets();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = broker.client();
    loop {
        match committed_offsets(&mut c, &group, &topic, 3) {
            Ok(got) if got == expected => break,
            other => assert!(
                Instant::now() < deadline,
                "committed offsets of {group} after kill -9 and restart: {other:?}, \
                 expected {expected:?}"
            ),
        }
        thread::sleep(Duration::from_millis(200));
    }
    let json = serde_json::to_string(&expected).expect("json");
    eprintln!("offsets reloaded; resuming with a new consumer");
    run_py(
        "group_offsets.py",
        &["resume", &broker.bootstrap(), &topic, "3", &group, &json],
    );
}

#[test]
fn consumer_group_lag_in_metrics() {
    require_py!("confluent_kafka");
    let broker = BrokerProcess::builder()
        .config("group.initial.rebalance.delay.ms", "0")
        .start();
    let topic = unique_topic("glag");
    let group = format!("{topic}-grp");
    broker.create_topic(&topic, 3, &[]);
    let mut c = broker.client();
    produce_to(&mut c, &topic, 3, "l", 10);
    let stop = broker.scratch_dir().join("stop");
    let mut holder = hold_group(&broker, &topic, &group, &stop);

    let check = |log_end: [i64; 3]| {
        let (status, body) = http_get(&broker.metrics_addr(), "/metrics").expect("scrape");
        assert_eq!(status, 200, "GET /metrics");
        let samples = parse_samples(&body);
        for (p, committed) in held_offsets() {
            let part = p.to_string();
            let labels = [
                ("consumergroup", group.as_str()),
                ("topic", topic.as_str()),
                ("partition", part.as_str()),
            ];
            for (name, want) in [
                ("kafka_consumergroup_lag", log_end[p as usize] - committed),
                ("kafka_consumergroup_current_offset", committed),
            ] {
                let found = find(&samples, name, &labels);
                let lines: Vec<&str> = body.lines().filter(|l| l.contains(name)).collect();
                assert_eq!(found.len(), 1, "{name}{labels:?} in /metrics: {lines:#?}");
                assert_eq!(found[0].value, want as f64, "{name}{labels:?}: {lines:#?}");
            }
        }
    };
    check([10, 10, 10]);
    // Lag follows the log end offset.
    let more: Vec<Msg> = (0..5)
        .map(|i| Msg::new(None, &format!("more-{i}")))
        .collect();
    c.produce(&topic, 1, &more, Compression::None)
        .expect("produce");
    check([10, 15, 10]);
    eprintln!("lag and current offset metrics match");

    std::fs::write(&stop, b"").expect("create stop file");
    let status = holder.wait(Duration::from_secs(30));
    assert!(status.success(), "holder failed: {}", holder.stderr());
}
