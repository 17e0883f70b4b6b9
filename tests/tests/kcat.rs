//! kcat (librdkafka's command-line client) against one broker: metadata,
//! produce/consume round trips with keys and headers, offsets by time and
//! consuming from chosen offsets.

use std::{thread, time::Duration};

use rivulet_tests::{kcat, now_ms, require_tools, run_cmd, unique_topic, BrokerProcess};
use serde_json::Value;

const KCAT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs kcat with `args` (and `stdin`), asserts success, returns stdout.
#[track_caller]
fn run_kcat(bootstrap: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = run_cmd(
        kcat(bootstrap).args(args),
        stdin.map(str::as_bytes),
        KCAT_TIMEOUT,
    );
    out.assert_success(&format!("kcat {args:?}"));
    out.stdout
}

/// Produces `lines` to partition 0 with `-K:` keys and the given headers.
fn produce_lines(bootstrap: &str, topic: &str, lines: &[&str], headers: &[&str]) {
    let mut args = vec!["-P", "-t", topic, "-p", "0", "-K:"];
    for h in headers {
        args.push("-H");
        args.push(h);
    }
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    run_kcat(bootstrap, &args, Some(&input));
}

/// Consumes partition 0 from `offset` to the end as kcat's JSON envelopes.
fn consume_json(bootstrap: &str, topic: &str, offset: &str) -> Vec<Value> {
    let out = run_kcat(
        bootstrap,
        &["-C", "-t", topic, "-p", "0", "-o", offset, "-e", "-J"],
        None,
    );
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad kcat JSON {l:?}: {e}")))
        .collect()
}

/// Parses `kcat -Q` output ("topic [p] offset N") into the offset.
fn queried_offset(output: &str, topic: &str) -> i64 {
    let line = output
        .lines()
        .find(|l| l.starts_with(&format!("{topic} [0]")))
        .unwrap_or_else(|| panic!("no result for {topic} [0] in kcat -Q output:\n{output}"));
    let (_, n) = line
        .rsplit_once("offset ")
        .unwrap_or_else(|| panic!("no offset in {line:?}"));
    n.trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad offset in {line:?}: {e}"))
}

#[test]
fn metadata_lists_broker_and_topics() {
    require_tools!("kcat");
    let broker = BrokerProcess::start();
    let topic = unique_topic("kmeta");
    broker.create_topic(&topic, 3, &[]);
    let out = run_kcat(&broker.bootstrap(), &["-L", "-J"], None);
    let md: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("kcat -L -J printed no JSON ({e}):\n{out}"));

    let brokers = md["brokers"].as_array().expect("brokers array");
    assert_eq!(brokers.len(), 1, "brokers in metadata: {md}");
    assert_eq!(brokers[0]["id"], 0, "broker id: {md}");
    assert_eq!(
        brokers[0]["name"],
        broker.bootstrap().as_str(),
        "advertised address: {md}"
    );
    assert_eq!(md["controllerid"], 0, "controller id: {md}");

    let t = md["topics"]
        .as_array()
        .expect("topics array")
        .iter()
        .find(|t| t["topic"] == topic.as_str())
        .unwrap_or_else(|| panic!("topic {topic} not in kcat -L: {md}"));
    let parts = t["partitions"].as_array().expect("partitions array");
    let mut ids: Vec<i64> = parts
        .iter()
        .map(|p| p["partition"].as_i64().expect("partition id"))
        .collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2], "partitions of {topic}: {t}");
    for p in parts {
        assert_eq!(p["leader"], 0, "leader: {p}");
        assert!(p.get("error").is_none(), "partition error: {p}");
    }
}

#[test]
fn produce_consume_roundtrip_with_keys_and_headers() {
    require_tools!("kcat");
    let broker = BrokerProcess::start();
    let b = broker.bootstrap();
    let topic = unique_topic("krt");
    broker.create_topic(&topic, 1, &[]);

    let lines = ["k1:hello world", "k2:second", "k3:third:with:colons"];
    produce_lines(&b, &topic, &lines, &["h1=v1", "h2=v2"]);

    let msgs = consume_json(&b, &topic, "beginning");
    assert_eq!(msgs.len(), 3, "consumed: {msgs:?}");
    let expected = [
        ("k1", "hello world"),
        ("k2", "second"),
        ("k3", "third:with:colons"),
    ];
    for (i, (m, (k, v))) in msgs.iter().zip(expected).enumerate() {
        assert_eq!(m["offset"], i as i64, "offset: {m}");
        assert_eq!(m["partition"], 0, "partition: {m}");
        assert_eq!(m["key"], k, "key: {m}");
        assert_eq!(m["payload"], v, "payload: {m}");
        assert_eq!(
            m["headers"],
            serde_json::json!(["h1", "v1", "h2", "v2"]),
            "headers: {m}"
        );
        assert_eq!(m["tstype"], "create", "timestamp type: {m}");
        let ts = m["ts"].as_i64().expect("timestamp");
        assert!(
            (now_ms() - ts).abs() < 120_000,
            "create time {ts} is not close to now: {m}"
        );
    }

    // A second produce continues the log, and a fresh consume sees all.
    produce_lines(&b, &topic, &["k4:fourth"], &[]);
    let msgs = consume_json(&b, &topic, "beginning");
    assert_eq!(msgs.len(), 4, "consumed after second produce: {msgs:?}");
    assert_eq!(msgs[3]["offset"], 3);
    assert_eq!(msgs[3]["payload"], "fourth");
    assert!(
        msgs[3]["headers"].is_null() || msgs[3]["headers"] == serde_json::json!([]),
        "record produced without headers has headers: {}",
        msgs[3]
    );
}

#[test]
fn consume_from_chosen_offsets() {
    require_tools!("kcat");
    let broker = BrokerProcess::start();
    let b = broker.bootstrap();
    let topic = unique_topic("koff");
    broker.create_topic(&topic, 1, &[]);
    let lines: Vec<String> = (0..10).map(|i| format!("k{i}:value-{i}")).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    produce_lines(&b, &topic, &lines, &[]);

    let fmt = ["-f", "%o=%s\\n"];
    let consume = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["-C", "-t", topic.as_str(), "-p", "0", "-e"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&fmt);
        run_kcat(&b, &args, None)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let all: Vec<String> = (0..10).map(|i| format!("{i}=value-{i}")).collect();
    assert_eq!(consume(&["-o", "beginning"]), all, "-o beginning");
    assert_eq!(consume(&["-o", "6"]), all[6..].to_vec(), "-o 6");
    assert_eq!(
        consume(&["-o", "-3"]),
        all[7..].to_vec(),
        "-o -3 (from end)"
    );
    assert_eq!(
        consume(&["-o", "2", "-c", "3"]),
        all[2..5].to_vec(),
        "-o 2 -c 3"
    );
    assert_eq!(consume(&["-o", "end"]), Vec::<String>::new(), "-o end");
}

#[test]
fn query_offsets_for_times() {
    require_tools!("kcat");
    let broker = BrokerProcess::start();
    let b = broker.bootstrap();
    let topic = unique_topic("kq");
    broker.create_topic(&topic, 1, &[]);

    // Two produce runs with a time gap; the create-times are set by kcat.
    produce_lines(&b, &topic, &["a:0", "a:1", "a:2"], &[]);
    thread::sleep(Duration::from_millis(100));
    let split = now_ms();
    thread::sleep(Duration::from_millis(100));
    produce_lines(&b, &topic, &["b:3", "b:4"], &[]);
    let after = now_ms() + 60_000;

    let query = |ts: i64| -> i64 {
        let spec = format!("{topic}:0:{ts}");
        queried_offset(&run_kcat(&b, &["-Q", "-t", &spec], None), &topic)
    };
    assert_eq!(
        query(split),
        3,
        "first offset at or after the gap ({split})"
    );
    assert_eq!(query(0), 0, "first offset at or after time 0");
    assert_eq!(query(after), -1, "no offset after the last record");

    // The consumer's s@ (start at timestamp) uses the same lookup.
    let start = format!("s@{split}");
    let out = run_kcat(
        &b,
        &[
            "-C", "-t", &topic, "-p", "0", "-o", &start, "-e", "-f", "%o=%s\\n",
        ],
        None,
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["3=3", "4=4"],
        "-o {start}"
    );
}
