//! A stepped system clock: the broker keeps its own time.
//!
//! libfaketime (LD_PRELOAD) steps the broker's wall clock a day forward,
//! then a day back, while its monotonic clock runs on. Kafka would roll and
//! delete a day of fresh segments on the forward step (time-based retention
//! and `segment.ms` read the wall clock); Rivulet counts time from its start
//! on the boot clock, so nothing is deleted, and the step is logged and
//! exported.

use std::{thread, time::Duration};

use kafka_protocol::records::Compression;
use rivulet_tests::{
    metrics::{find, http_get, parse_samples},
    tools::require_file,
    BrokerProcess, Msg, EARLIEST,
};

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
const TOPIC: &str = "clock";

#[test]
fn a_stepped_system_clock_deletes_nothing_by_retention() {
    if !require_file(FAKETIME, "libfaketime") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = dir.path().join("clock");
    let step = |offset: &str| {
        std::fs::write(&clock, offset).expect("write the fake clock");
        // libfaketime re-reads the file at most once a second; then give the
        // broker's 500 ms retention check a few rounds.
        thread::sleep(Duration::from_millis(3000));
    };
    std::fs::write(&clock, "+0").expect("write the fake clock");
    let broker = BrokerProcess::builder()
        .env("LD_PRELOAD", FAKETIME)
        .env(
            "FAKETIME_TIMESTAMP_FILE",
            clock.to_str().expect("utf-8 path"),
        )
        .env("FAKETIME_CACHE_DURATION", "1")
        // Only the wall clock steps; CLOCK_MONOTONIC and CLOCK_BOOTTIME run on.
        .env("DONT_FAKE_MONOTONIC", "1")
        .config("log.retention.check.interval.ms", "500")
        .start();
    broker.create_topic(
        TOPIC,
        1,
        &[("retention.ms", "600000"), ("segment.ms", "600000")],
    );
    let mut conn = broker.client();
    let mut produce = |value: &str| {
        conn.produce(TOPIC, 0, &[Msg::new(None, value)], Compression::None)
            .unwrap_or_else(|e| panic!("produce {value}: {e:#}\n{}", broker.log()))
    };
    produce("before");
    step("+1d");
    produce("a day ahead");
    step("+1d");
    produce("still a day ahead");
    step("-1d");
    produce("a day behind");
    step("-1d");

    let mut reader = broker.client();
    let start = reader
        .list_offset(TOPIC, 0, EARLIEST)
        .expect("log start offset");
    let records = reader.fetch_all(TOPIC, 0, start).expect("fetch everything");
    let values: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(
        values,
        ["before", "a day ahead", "still a day ahead", "a day behind"],
        "a record was deleted by retention when the clock stepped\n{}",
        broker.log()
    );

    let log = broker.log();
    assert!(
        log.contains("the system clock was stepped"),
        "the step was not logged\n{log}"
    );
    let (_, body) = http_get(&broker.metrics_addr(), "/metrics").expect("scrape metrics");
    let samples = parse_samples(&body);
    let offset = find(&samples, "rivulet_broker_wall_clock_offset_seconds", &[]);
    assert!(
        offset.first().is_some_and(|s| s.value < -80_000.0),
        "the offset gauge does not show the day behind: {offset:?}"
    );
}
