//! `rivulet bench` end to end against an in-process broker: what it
//! produces is all there, and the consume pass counts exactly that.

use std::process::Command;

mod common;
use common::Running;

fn bench(addr: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .args(["bench", "--bootstrap-server", addr])
        .args(args)
        .output()
        .expect("run rivulet bench");
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_produce_then_consume_counts_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Running::start(dir.path()).await;
    let addr = broker.addr.clone();
    let (produced, consumed) = tokio::task::spawn_blocking(move || {
        let common = ["--topic", "b", "--partitions", "2", "--records", "5000"];
        let produced = bench(
            &addr,
            &[&["produce"][..], &common, &["--batch-records", "250"]].concat(),
        );
        let consumed = bench(&addr, &[&["consume"][..], &common].concat());
        (produced, consumed)
    })
    .await
    .unwrap();
    assert!(produced.starts_with("produce: 5000 records"), "{produced}");
    assert!(consumed.starts_with("consume: 5000 records"), "{consumed}");
    broker.stop().await;
}
