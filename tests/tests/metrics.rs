//! The Prometheus endpoint: Kafka's metric names (as the JMX exporter
//! presents them) with per-topic values, in a format promtool accepts.

use std::{
    thread,
    time::{Duration, Instant},
};

use kafka_protocol::records::Compression;
use rivulet_tests::{
    kafka::encode_batch,
    metrics::{find, http_get, parse_samples},
    require_tools, run_cmd, unique_topic, BrokerProcess, Msg,
};

fn scrape(broker: &BrokerProcess) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(&broker.metrics_addr(), "/metrics") {
            Ok((200, body)) => return body,
            Ok((status, body)) if Instant::now() >= deadline => {
                panic!("GET {} -> {status}\n{body}", broker.metrics_url())
            }
            Err(e) if Instant::now() >= deadline => {
                panic!("GET {}: {e:#}", broker.metrics_url())
            }
            _ => thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn topic_and_request_metrics_after_traffic() {
    let broker = BrokerProcess::start();
    let topic = unique_topic("met");
    broker.create_topic(&topic, 1, &[]);
    let mut client = broker.client();
    let mut bytes_sent = 0u64;
    for b in 0..2 {
        let msgs: Vec<Msg> = (0..5)
            .map(|i| Msg::new(None, &format!("m-{b}-{i}")))
            .collect();
        bytes_sent += encode_batch(&msgs, Compression::None).len() as u64;
        client
            .produce(&topic, 0, &msgs, Compression::None)
            .expect("produce");
    }
    let fetched = client.fetch_all(&topic, 0, 0).expect("fetch");
    assert_eq!(fetched.len(), 10);

    let body = scrape(&broker);
    let samples = parse_samples(&body);
    let t = [("topic", topic.as_str())];
    let value = |name: &str| -> f64 {
        let found = find(&samples, name, &t);
        assert!(
            !found.is_empty(),
            "no {name}{{topic=\"{topic}\"}} in /metrics:\n{body}"
        );
        found.iter().map(|s| s.value).sum()
    };

    let bytes_in = value("kafka_server_brokertopicmetrics_bytesin_total");
    assert!(
        bytes_in >= bytes_sent as f64 * 0.9,
        "bytesin_total {bytes_in} for {bytes_sent} bytes of record batches"
    );
    assert_eq!(
        value("kafka_server_brokertopicmetrics_messagesin_total"),
        10.0,
        "messagesin_total counts records"
    );
    assert!(
        value("kafka_server_brokertopicmetrics_bytesout_total") > 0.0,
        "bytesout_total after a fetch"
    );

    let produce_requests: Vec<_> = samples
        .iter()
        .filter(|s| s.name.starts_with("kafka_network_requestmetrics_"))
        .filter(|s| s.label("request") == Some("Produce"))
        .collect();
    assert!(
        produce_requests.iter().any(|s| s.value > 0.0),
        "no kafka_network_requestmetrics_*{{request=\"Produce\"}} sample > 0 in /metrics:\n{body}"
    );
    let fetch_requests = samples
        .iter()
        .filter(|s| s.name.starts_with("kafka_network_requestmetrics_"))
        .any(|s| s.label("request") == Some("Fetch") && s.value > 0.0);
    assert!(
        fetch_requests,
        "no request metrics for Fetch in /metrics:\n{body}"
    );
}

#[test]
fn promtool_accepts_the_metrics() {
    require_tools!("promtool");
    let broker = BrokerProcess::start();
    let topic = unique_topic("prom");
    broker.create_topic(&topic, 1, &[]);
    broker
        .client()
        .produce(&topic, 0, &[Msg::new(Some("k"), "v")], Compression::None)
        .expect("produce");
    let body = scrape(&broker);
    let out = run_cmd(
        std::process::Command::new("promtool").args(["check", "metrics"]),
        Some(body.as_bytes()),
        Duration::from_secs(30),
    );
    // Kafka's (and Strimzi's dashboards') name for connections per listener
    // ends in `_count`, which promtool's linter reserves for histograms; it
    // is kept on purpose (docs/monitoring.md). Any other complaint fails.
    let problems: Vec<&str> = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.starts_with("kafka_server_socket_server_metrics_connection_count "))
        .collect();
    assert!(
        problems.is_empty() && out.status.code().is_some_and(|c| c == 0 || c == 3),
        "promtool check metrics failed ({})\n{}{}",
        out.status,
        out.stdout,
        out.stderr
    );
}
