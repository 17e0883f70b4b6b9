//! The real binary with a Kafka `server.properties`: node.id, log.dirs and
//! listeners come from the file, and flags given as well win over it (the
//! file's keys must not then be refused as unknown).

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use kafka_protocol::messages::MetadataRequest;
use rivulet_wire::client::Connection;

/// Starts `rivulet broker ARGS` and returns it with the Kafka address from
/// its ready line.
fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rivulet"))
        .arg("broker")
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn rivulet");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(rest) = line.split("kafka=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap().to_string();
                    return (child, addr);
                }
                seen.push(line);
            }
            Err(_) if child.try_wait().unwrap().is_some() => break,
            Err(_) => {}
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("broker did not become ready; it said:\n{}", seen.join("\n"));
}

async fn node_id(addr: &str) -> i32 {
    let mut conn = Connection::connect(addr).await.unwrap();
    let meta = conn.send(MetadataRequest::default()).await.unwrap();
    meta.brokers[0].node_id.0
}

#[tokio::test]
async fn server_properties_supply_node_id_log_dirs_and_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = dir.path().join("data");
    let file = dir.path().join("server.properties");
    std::fs::write(
        &file,
        format!(
            "node.id=5\nlog.dirs={}\nlisteners=PLAINTEXT://127.0.0.1:{port}\nnum.partitions=2\n",
            data.display()
        ),
    )
    .unwrap();
    let (mut child, addr) = start(&[
        "--config-file",
        file.to_str().unwrap(),
        "--metrics-addr",
        "none",
    ]);
    assert_eq!(addr, format!("127.0.0.1:{port}"), "listener from the file");
    assert_eq!(node_id(&addr).await, 5, "node.id from the file");
    assert!(data.join("meta.json").exists(), "log.dirs from the file");
    child.kill().unwrap();
    let _ = child.wait();
}

#[tokio::test]
async fn flags_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.properties");
    // Port 1 cannot be bound without privileges: used, it would fail the start.
    std::fs::write(
        &file,
        format!(
            "node.id=5\nlog.dirs={}\nlisteners=PLAINTEXT://127.0.0.1:1\nadvertised.listeners=PLAINTEXT://nowhere:1\n",
            dir.path().join("file-data").display()
        ),
    )
    .unwrap();
    let flag_data = dir.path().join("flag-data");
    let (mut child, addr) = start(&[
        "--config-file",
        file.to_str().unwrap(),
        "--listeners",
        "PLAINTEXT://127.0.0.1:0",
        "--advertised-listeners",
        "PLAINTEXT://127.0.0.1:0",
        "--node-id",
        "7",
        "--data-dir",
        flag_data.to_str().unwrap(),
        "--metrics-addr",
        "none",
    ]);
    assert_ne!(addr, "127.0.0.1:1");
    assert_eq!(node_id(&addr).await, 7);
    assert!(flag_data.join("meta.json").exists());
    assert!(!dir.path().join("file-data").exists());
    child.kill().unwrap();
    let _ = child.wait();
}
