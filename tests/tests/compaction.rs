//! Log compaction (`cleanup.policy=compact`) seen from a consumer: after the
//! cleaner has run, the closed segments hold only the latest record of each
//! key (the active segment is left alone), every surviving record keeps the
//! offset it was produced at, a
//! tombstone stays readable for `delete.retention.ms` and then disappears
//! with its key, and all of this survives a restart. Compressed, idempotent
//! batches from librdkafka are compacted record by record and read back by
//! librdkafka across the gaps.

use std::{
    collections::BTreeMap,
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;
use kafka_protocol::records::Compression;
use rivulet_tests::{
    groups::run_py_logged,
    kcat, now_ms, require_py, require_tool, run_cmd,
    segments::{log_segments, partition_dir, segment_base_offset},
    unique_topic, BrokerProcess, KafkaConn, Msg, EARLIEST, LATEST,
};

const KEYS: usize = 20;
const ROUNDS: usize = 10;
/// Keys `k0`..`k{DELETED-1}` get a tombstone after the last round.
const DELETED: usize = 5;
const DELETE_RETENTION_MS: u64 = 5000;

/// (key, value) of a record; a `None` value is a tombstone.
type Kv = (String, Option<String>);

fn msg(key: &str, value: Option<&str>) -> Msg {
    Msg {
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        headers: Vec::new(),
        timestamp: now_ms(),
    }
}

/// Every record of partition 0, by offset.
fn read_log(c: &mut KafkaConn, topic: &str) -> BTreeMap<i64, Kv> {
    let text = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
    c.fetch_all(topic, 0, 0)
        .unwrap_or_else(|e| panic!("fetch {topic}: {e:#}"))
        .into_iter()
        .map(|r| {
            let key = text(r.key).unwrap_or_else(|| panic!("record {} has no key", r.offset));
            (r.offset, (key, text(r.value)))
        })
        .collect()
}

/// Polls the log until `done` holds for it (returning it), for at most
/// `timeout`; panics with the last state and `what`.
fn wait_log(
    c: &mut KafkaConn,
    topic: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&BTreeMap<i64, Kv>) -> bool,
) -> BTreeMap<i64, Kv> {
    let deadline = Instant::now() + timeout;
    loop {
        let log = read_log(c, topic);
        if done(&log) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not reached within {timeout:?}; the log has {} records: {log:?}",
            log.len()
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// Offset of the latest record of each key among `records`.
fn latest_by_key(records: &BTreeMap<i64, Kv>) -> BTreeMap<String, i64> {
    records.iter().map(|(o, (k, _))| (k.clone(), *o)).collect()
}

#[test]
fn compaction_keeps_latest_value_per_key_at_original_offsets() {
    let mut broker = BrokerProcess::builder()
        .config("log.cleaner.backoff.ms", "500")
        .start();
    let topic = unique_topic("compact");
    let retention = DELETE_RETENTION_MS.to_string();
    broker.create_topic(
        &topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "1024"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", &retention),
        ],
    );
    let mut c = broker.client();

    // Rounds of values for a fixed key set, then tombstones, one record per
    // batch; remember where each landed.
    let mut produced: BTreeMap<i64, Kv> = BTreeMap::new();
    let mut send = |c: &mut KafkaConn, key: &str, value: Option<&str>| -> i64 {
        let offset = c
            .produce(&topic, 0, &[msg(key, value)], Compression::None)
            .unwrap_or_else(|e| panic!("produce {key}: {e:#}"));
        produced.insert(offset, (key.to_string(), value.map(str::to_string)));
        offset
    };
    for r in 0..ROUNDS {
        for k in 0..KEYS {
            send(&mut c, &format!("k{k}"), Some(&format!("r{r}-k{k}")));
        }
    }
    let mut last_tombstone = 0;
    for k in 0..DELETED {
        last_tombstone = send(&mut c, &format!("k{k}"), None);
    }
    // Unique-key fillers until the tombstones are in a closed segment.
    let dir = partition_dir(broker.data_dir(), &topic, 0);
    let active_base = || {
        log_segments(&dir)
            .last()
            .map(|p| segment_base_offset(p))
            .expect("a segment")
    };
    let mut fillers = 0;
    while active_base() <= last_tombstone {
        assert!(
            fillers < 200,
            "no segment roll after {fillers} filler records"
        );
        send(&mut c, &format!("fill-{fillers}"), Some("filler"));
        fillers += 1;
    }
    // Three values of one key in the active segment, which is never
    // cleaned: all three stay.
    let active = active_base();
    let hot: Vec<i64> = (0..3)
        .map(|i| send(&mut c, "hot", Some(&format!("hot-{i}"))))
        .collect();
    assert_eq!(
        active_base(),
        active,
        "the active segment rolled under the `hot` records"
    );
    let end = c.list_offset(&topic, 0, LATEST).expect("log end");
    assert_eq!(
        end,
        (KEYS * ROUNDS + DELETED + fillers + 3) as i64,
        "log end offset"
    );
    let segments = log_segments(&dir).len();
    eprintln!("produced {end} records, now in {segments} segments ({fillers} fillers)");

    let latest = latest_by_key(&produced);
    let is_latest = |o: &i64, kv: &Kv| latest.get(&kv.0) == Some(o) || hot.contains(o);
    let at_produced_offsets = |log: &BTreeMap<i64, Kv>| {
        for (o, kv) in log {
            assert_eq!(
                produced.get(o),
                Some(kv),
                "record at offset {o} after compaction"
            );
        }
    };

    // Phase 1: only the latest record of each key is left; the tombstones
    // are among them, within delete.retention.ms.
    let started = Instant::now();
    let log = wait_log(
        &mut c,
        &topic,
        Duration::from_secs(30),
        "compaction",
        |log| log.iter().all(|(o, kv)| is_latest(o, kv)),
    );
    eprintln!(
        "compacted to {} records after {:?}",
        log.len(),
        started.elapsed()
    );
    at_produced_offsets(&log);
    let want: BTreeMap<i64, Kv> = produced
        .iter()
        .filter(|(o, kv)| is_latest(o, kv))
        .map(|(o, kv)| (*o, kv.clone()))
        .collect();
    assert_eq!(
        log, want,
        "the compacted log: the latest record of every key, tombstones included, and the \
         whole active segment"
    );
    assert_eq!(
        c.list_offset(&topic, 0, LATEST).expect("latest"),
        end,
        "log end after compaction"
    );
    assert_eq!(
        c.list_offset(&topic, 0, EARLIEST).expect("earliest"),
        0,
        "log start after compaction"
    );

    // Phase 2: past delete.retention.ms the tombstones go, with their keys.
    let log = wait_log(
        &mut c,
        &topic,
        Duration::from_secs(30),
        "tombstone removal",
        |log| log.values().all(|(_, v)| v.is_some()),
    );
    eprintln!("tombstones removed after {:?}", started.elapsed());
    assert!(
        started.elapsed() >= Duration::from_millis(DELETE_RETENTION_MS - 1000),
        "tombstones removed {:?} after compaction, before delete.retention.ms",
        started.elapsed()
    );
    let want: BTreeMap<i64, Kv> = want.into_iter().filter(|(_, (_, v))| v.is_some()).collect();
    assert_eq!(log, want, "the log once the tombstones are gone");
    for k in 0..DELETED {
        let key = format!("k{k}");
        assert!(
            !log.values().any(|(lk, _)| *lk == key),
            "deleted key {key} is still in the log"
        );
    }
    for k in DELETED..KEYS {
        let value = Some(format!("r{}-k{k}", ROUNDS - 1));
        assert!(
            log.values()
                .any(|kv| *kv == (format!("k{k}"), value.clone())),
            "k{k} lost its latest value"
        );
    }

    // A librdkafka consumer reads the gapped log the same way.
    if require_tool("kcat") {
        let out = run_cmd(
            kcat(&broker.bootstrap()).args([
                "-C",
                "-t",
                &topic,
                "-p",
                "0",
                "-o",
                "beginning",
                "-e",
                "-f",
                "%o %k %s\\n",
            ]),
            None,
            Duration::from_secs(30),
        );
        out.assert_success("kcat -C");
        let seen: Vec<String> = out.stdout.lines().map(str::to_string).collect();
        let expected: Vec<String> = log
            .iter()
            .map(|(o, (k, v))| format!("{o} {k} {}", v.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(seen, expected, "kcat's view of the compacted log");
    }

    // The compacted log is what a restarted broker serves.
    broker.restart();
    let mut c = broker.client();
    assert_eq!(
        read_log(&mut c, &topic),
        log,
        "the compacted log after a restart"
    );
    assert_eq!(
        c.list_offset(&topic, 0, LATEST).expect("latest"),
        end,
        "log end after restart"
    );
}

/// Parses the `[[offset, key, value-or-null], ...]` that
/// `compaction_clients.py` prints.
fn parse_records(out: &str) -> BTreeMap<i64, Kv> {
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad output {out:?}: {e}"));
    v.as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            let o = r[0].as_i64().expect("offset");
            let k = r[1].as_str().expect("key").to_string();
            (o, (k, r[2].as_str().map(str::to_string)))
        })
        .collect()
}

#[test]
fn compaction_of_compressed_idempotent_batches_read_by_librdkafka() {
    require_py!("confluent_kafka");
    let broker = BrokerProcess::builder()
        .config("log.cleaner.backoff.ms", "500")
        .start();
    let topic = unique_topic("compactz");
    broker.create_topic(
        &topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "1024"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "600000"),
        ],
    );
    let b = broker.bootstrap();
    let mut produced = parse_records(&run_py_logged(
        "compaction_clients.py",
        &["produce", &b, &topic, "20", "8"],
    ));
    let last = *produced.keys().last().expect("records");
    let dir = partition_dir(broker.data_dir(), &topic, 0);
    let active_base = || {
        log_segments(&dir)
            .last()
            .map(|p| segment_base_offset(p))
            .expect("a segment")
    };
    let mut c = broker.client();
    let mut fillers = 0;
    while active_base() <= last {
        assert!(
            fillers < 200,
            "no segment roll after {fillers} filler records"
        );
        let key = format!("fill-{fillers}");
        let o = c
            .produce(&topic, 0, &[msg(&key, Some("filler"))], Compression::None)
            .expect("produce filler");
        produced.insert(o, (key, Some("filler".to_string())));
        fillers += 1;
    }
    let latest = latest_by_key(&produced);
    let want: BTreeMap<i64, Kv> = produced
        .iter()
        .filter(|(o, (k, _))| latest.get(k) == Some(o))
        .map(|(o, kv)| (*o, kv.clone()))
        .collect();
    eprintln!(
        "produced {} records ({fillers} fillers); expecting {} after compaction",
        produced.len(),
        want.len()
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = parse_records(&run_py_logged(
            "compaction_clients.py",
            &["read", &b, &topic],
        ));
        for (o, kv) in &seen {
            assert_eq!(
                produced.get(o),
                Some(kv),
                "record at offset {o} as librdkafka reads it"
            );
        }
        if seen == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the log was not compacted to the latest record per key within 30 s: \
             librdkafka reads {} records, expected {}",
            seen.len(),
            want.len()
        );
        thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        c.list_offset(&topic, 0, LATEST).expect("latest"),
        last + 1 + fillers as i64
    );
}
