//! Client quotas with real clients: a confluent-kafka producer and consumer
//! over their byte rates are slowed to about the quota and told so
//! (throttle_time_ms), while a client without a quota runs free; quotas
//! set with `rivulet quota` are described with Kafka's filters, checked
//! with Kafka's errors, and survive a broker restart.
//!
//! Rates are judged with wide margins: a quota of 1 MiB/s must keep a
//! client under 2 MiB/s, which a slow machine only makes easier. The broker
//! measures over 3 samples of 1 s (`quota.window.num=3`) so that a few MB
//! are enough to exceed the burst a fresh client is allowed.

use std::time::Duration;

use kafka_protocol::{
    messages::{
        alter_client_quotas_request::{EntityData, EntryData, OpData},
        describe_client_quotas_request::ComponentData,
        AlterClientQuotasRequest, DescribeClientQuotasRequest,
    },
    protocol::StrBytes,
};
use rivulet_tests::{
    last_json, metrics, require_py, rivulet_cmd, run_cmd, run_py_timeout, unique_topic,
    BrokerProcess, CmdOutput,
};
use serde_json::json;

const MIB: u64 = 1 << 20;
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
const PY_TIMEOUT: Duration = Duration::from_secs(150);

fn broker() -> BrokerProcess {
    BrokerProcess::builder()
        .config("quota.window.num", "3")
        .start()
}

fn cli(broker: &BrokerProcess, args: &[&str]) -> CmdOutput {
    run_cmd(
        &mut rivulet_cmd(&broker.bootstrap(), args),
        None,
        CLI_TIMEOUT,
    )
}

#[track_caller]
fn cli_ok(broker: &BrokerProcess, args: &[&str]) -> String {
    let out = cli(broker, args);
    out.assert_success(&format!("rivulet {args:?}"));
    out.stdout
}

fn clients(
    scenario: &str,
    broker: &BrokerProcess,
    topic: &str,
    client_id: &str,
    bytes: u64,
) -> serde_json::Value {
    let options = json!({
        "bootstrap": broker.bootstrap(),
        "topic": topic,
        "client_id": client_id,
        "bytes": bytes,
    });
    last_json(&run_py_timeout(
        "quota_clients.py",
        &[scenario, &options.to_string()],
        PY_TIMEOUT,
    ))
}

fn throttled(broker: &BrokerProcess, quota: &str) -> f64 {
    let (_, body) = metrics::http_get(&broker.metrics_addr(), "/metrics").expect("scrape");
    metrics::find(
        &metrics::parse_samples(&body),
        "kafka_server_quota_throttled_requests_total",
        &[("quota", quota)],
    )
    .iter()
    .map(|s| s.value)
    .sum()
}

#[test]
fn byte_rate_quotas_slow_down_only_their_client() {
    require_py!("confluent_kafka");
    let broker = broker();
    let topic = unique_topic("quota");
    broker.create_topic(&topic, 1, &[]);
    let rate = MIB.to_string();
    set_quota(
        &broker,
        &[
            "--client-id",
            "slow-producer",
            "--producer-byte-rate",
            &rate,
        ],
    );
    set_quota(
        &broker,
        &[
            "--client-id",
            "slow-consumer",
            "--consumer-byte-rate",
            &rate,
        ],
    );

    let fast = clients("produce", &broker, &topic, "fast-producer", 8 * MIB);
    assert_eq!(throttled(&broker, "produce"), 0.0, "{fast}");
    assert_eq!(fast["throttle_events"], 0, "{fast}");
    let slow = clients("produce", &broker, &topic, "slow-producer", 8 * MIB);
    eprintln!("produce: fast {fast}\nproduce: slow {slow}");
    let slow_rate = slow["rate"].as_f64().unwrap();
    assert!(
        slow_rate < 2.0 * MIB as f64,
        "1 MiB/s quota, produced at {slow_rate:.0} B/s: {slow}"
    );
    assert!(
        slow["throttle_events"].as_u64().unwrap() > 0,
        "the producer was told: {slow}"
    );
    assert!(throttled(&broker, "produce") > 0.0);
    // The quota holds the slow producer to about 6 s for 8 MiB; the
    // free one is faster unless the machine is slower than the quota.
    assert!(
        fast["rate"].as_f64().unwrap() > slow_rate,
        "fast {fast} slow {slow}"
    );

    let reader = clients("consume", &broker, &topic, "slow-consumer", 6 * MIB);
    eprintln!("consume: slow {reader}");
    let read_rate = reader["rate"].as_f64().unwrap();
    assert!(
        read_rate < 2.0 * MIB as f64,
        "1 MiB/s quota, consumed at {read_rate:.0} B/s: {reader}"
    );
    assert!(reader["throttle_events"].as_u64().unwrap() > 0, "{reader}");
    assert!(throttled(&broker, "fetch") > 0.0);
}

#[track_caller]
fn set_quota(broker: &BrokerProcess, args: &[&str]) {
    let mut all = vec!["quota", "set"];
    all.extend_from_slice(args);
    cli_ok(broker, &all);
}

fn describe(broker: &BrokerProcess, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["quota", "describe", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&cli_ok(broker, &all)).expect("describe --json prints JSON")
}

#[test]
fn quotas_are_described_with_filters_and_survive_a_restart() {
    let mut broker = broker();
    set_quota(
        &broker,
        &["--user", "alice", "--producer-byte-rate", "2048"],
    );
    set_quota(
        &broker,
        &[
            "--user",
            "alice",
            "--client-id",
            "app",
            "--consumer-byte-rate",
            "4096",
        ],
    );
    set_quota(
        &broker,
        &["--user-default", "--request-percentage", "150.5"],
    );
    set_quota(
        &broker,
        &[
            "--client-id-default",
            "--producer-byte-rate",
            "10",
            "--consumer-byte-rate",
            "20",
        ],
    );
    set_quota(
        &broker,
        &["--client-id-default", "--delete", "consumer_byte_rate"],
    );
    set_quota(
        &broker,
        &[
            "--client-id",
            "dry",
            "--producer-byte-rate",
            "1",
            "--validate-only",
        ],
    );

    let expected_all = json!([
        {"entity": {"client-id": null}, "values": {"producer_byte_rate": 10.0}},
        {"entity": {"user": null}, "values": {"request_percentage": 150.5}},
        {"entity": {"user": "alice"}, "values": {"producer_byte_rate": 2048.0}},
        {"entity": {"user": "alice", "client-id": "app"}, "values": {"consumer_byte_rate": 4096.0}},
    ]);
    assert_eq!(
        describe(&broker, &[]),
        expected_all,
        "validate-only stored nothing"
    );
    let alice = describe(&broker, &["--user", "alice"]);
    assert_eq!(alice.as_array().unwrap().len(), 2, "{alice}");
    let strict = describe(&broker, &["--user", "alice", "--strict"]);
    assert_eq!(
        strict,
        json!([{"entity": {"user": "alice"}, "values": {"producer_byte_rate": 2048.0}}])
    );
    let defaults = describe(&broker, &["--user-default", "--strict"]);
    assert_eq!(
        defaults,
        json!([{"entity": {"user": null}, "values": {"request_percentage": 150.5}}])
    );
    let table = cli_ok(&broker, &["quota", "describe"]);
    assert!(
        table.contains("<default>") && table.contains("alice"),
        "{table}"
    );

    // Kafka's refusals, as the CLI reports them.
    let refused = cli(
        &broker,
        &[
            "quota",
            "set",
            "--user",
            "bob",
            "--request-percentage",
            "-3",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("greater than 0"),
        "{}",
        refused.stderr
    );
    let mut conn = broker.client();
    let bad_filter = conn
        .send(
            &DescribeClientQuotasRequest::default().with_components(vec![ComponentData::default()
                .with_entity_type(StrBytes::from_static_str("topic"))
                .with_match_type(2)]),
            1,
        )
        .expect("describe");
    assert_eq!(bad_filter.error_code, 42, "INVALID_REQUEST");
    assert!(bad_filter.entries.is_none());
    let op = OpData::default()
        .with_key(StrBytes::from_static_str("request_percentage"))
        .with_value(-3.0);
    let entity = EntityData::default()
        .with_entity_type(StrBytes::from_static_str("user"))
        .with_entity_name(Some(StrBytes::from_static_str("bob")));
    let negative = conn
        .send(
            &AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
                .with_entity(vec![entity])
                .with_ops(vec![op])]),
            0,
        )
        .expect("alter");
    assert_eq!(negative.entries[0].error_code, 42, "INVALID_REQUEST");
    assert_eq!(
        negative.entries[0].error_message.as_deref(),
        Some("Quota request_percentage must be greater than 0")
    );

    broker.restart();
    assert_eq!(
        describe(&broker, &[]),
        expected_all,
        "quotas are in the metadata log"
    );
}
