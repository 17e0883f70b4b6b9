//! Pure-Python Kafka clients, which negotiate their own (older) protocol
//! versions: kafka-python and aiokafka, round trips with assign()/seek().

use rivulet_tests::{require_py, run_py, unique_topic, BrokerProcess};

#[test]
fn kafka_python_roundtrip_and_version_detection() {
    require_py!("kafka");
    let broker = BrokerProcess::start();
    let topic = unique_topic("kpy");
    broker.create_topic(&topic, 1, &[]);
    let out = run_py("kafka_python_roundtrip.py", &[&broker.bootstrap(), &topic]);
    let summary: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad summary {out:?}: {e}"));
    let version = summary["api_version"].as_array().expect("api_version list");
    assert!(
        version.first().and_then(|v| v.as_i64()).unwrap_or(0) >= 1,
        "kafka-python took the broker for a pre-1.0 Kafka: {summary}"
    );
}

#[test]
fn aiokafka_roundtrip() {
    require_py!("aiokafka");
    let broker = BrokerProcess::start();
    let topic = unique_topic("aio");
    broker.create_topic(&topic, 1, &[]);
    run_py("aiokafka_roundtrip.py", &[&broker.bootstrap(), &topic]);
}
