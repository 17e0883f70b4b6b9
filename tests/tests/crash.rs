//! Durability across `kill -9`: every record the broker acknowledged with
//! acks=all is, after a restart on the same data directory, at the offset the
//! acknowledgement named.

use std::{
    thread,
    time::{Duration, Instant},
};

use rivulet_tests::{
    process::Background, require_py, run_py, tools::py_command, unique_topic, BrokerProcess,
};

const PARTITIONS: i32 = 2;

#[test]
fn acknowledged_records_survive_kill9() {
    require_py!("confluent_kafka");
    let mut broker = BrokerProcess::start();
    let topic = unique_topic("crash");
    broker.create_topic(&topic, PARTITIONS, &[]);
    let acked = broker.scratch_dir().join("acked.txt");
    let acked = acked.to_str().expect("utf-8 path");
    let parts = PARTITIONS.to_string();

    run_py(
        "crash.py",
        &[
            "produce",
            &broker.bootstrap(),
            &topic,
            &parts,
            "3000",
            acked,
        ],
    );
    broker.kill9();
    broker.restart();
    run_py(
        "crash.py",
        &["verify", &broker.bootstrap(), &topic, &parts, acked],
    );
}

#[test]
fn acknowledged_records_survive_kill9_mid_stream() {
    require_py!("confluent_kafka");
    let mut broker = BrokerProcess::start();
    let topic = unique_topic("crashmid");
    broker.create_topic(&topic, PARTITIONS, &[]);
    let acked_path = broker.scratch_dir().join("acked.txt");
    let acked = acked_path.to_str().expect("utf-8 path").to_string();
    let parts = PARTITIONS.to_string();
    let b = broker.bootstrap();

    let mut producer = Background::spawn(
        &mut py_command("crash.py", &["stream", &b, &topic, &parts, "6000", &acked]),
        broker.scratch_dir(),
        "producer",
    );
    // Kill the broker once a few hundred records are acknowledged, while
    // the producer is still sending.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = std::fs::read_to_string(&acked_path)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n >= 300 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {n} records acknowledged after 30 s\n--- producer stderr ---\n{}",
            producer.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    broker.kill9();
    thread::sleep(Duration::from_millis(500));
    broker.restart();

    let status = producer.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "producer failed ({status})\n{}\n{}",
        producer.stdout(),
        producer.stderr()
    );
    run_py("crash.py", &["verify", &b, &topic, &parts, &acked]);
}
