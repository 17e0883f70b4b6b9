//! Secured listeners with real clients: TLS (server authentication, then
//! client certificates), SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over
//! clear text and over TLS, SCRAM users managed through the admin API, the
//! refusals (wrong password, unknown user, untrusted or expired
//! certificate, plaintext on a TLS port) and certificate rotation.
//!
//! Clients are confluent-kafka (`tests/py/security_clients.py`) and kcat,
//! configured exactly as users configure them.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use rivulet_tests::{
    certs::TestPki, kcat, last_json, metrics, py_command, require_py, require_tools, rivulet_cmd,
    run_cmd, run_py, unique_topic, BrokerProcess, KafkaConn,
};
use serde_json::json;

const PLAIN_JAAS: &str = "org.apache.kafka.common.security.plain.PlainLoginModule required \
     username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" \
     user_alice=\"alice-secret\";";

/// A broker with every kind of secured listener beside PLAINTEXT: SSL,
/// SSL with required client certificates (MTLS), SASL_PLAINTEXT and
/// SASL_SSL, PLAIN users alice/admin and SCRAM users bob (SHA-256) and
/// carol (SHA-512) from `--add-scram`.
fn secured_broker(pki: &TestPki) -> BrokerProcess {
    let server = pki.server("broker");
    let keystore = server.keystore.display().to_string();
    let ca = pki.ca_file().display().to_string();
    BrokerProcess::builder()
        .listener("SSL", "SSL")
        .listener("MTLS", "SSL")
        .listener("SASL_PLAINTEXT", "SASL_PLAINTEXT")
        .listener("SASL_SSL", "SASL_SSL")
        .config("ssl.keystore.type", "PEM")
        .config("ssl.keystore.location", &keystore)
        .config("listener.name.mtls.ssl.client.auth", "required")
        .config("listener.name.mtls.ssl.truststore.location", &ca)
        .config(
            "sasl.enabled.mechanisms",
            "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        )
        .config("sasl.jaas.config", PLAIN_JAAS)
        .arg("--add-scram")
        .arg("SCRAM-SHA-256=[name=bob,password=bob-secret]")
        .arg("--add-scram")
        .arg("SCRAM-SHA-512=[name=carol,password=carol-secret]")
        .start()
}

fn options(bootstrap: &str, topic: &str, props: serde_json::Value) -> String {
    json!({"bootstrap": bootstrap, "topic": topic, "props": props}).to_string()
}

fn roundtrip(bootstrap: &str, props: serde_json::Value) -> serde_json::Value {
    let topic = unique_topic("sec");
    last_json(&run_py(
        "security_clients.py",
        &["roundtrip", &options(bootstrap, &topic, props)],
    ))
}

fn refused(bootstrap: &str, props: serde_json::Value) -> serde_json::Value {
    last_json(&run_py(
        "security_clients.py",
        &["refused", &options(bootstrap, "unused", props)],
    ))
}

fn failed_authentications(broker: &BrokerProcess, listener: &str) -> f64 {
    metric(
        broker,
        "kafka_server_socket_server_metrics_failed_authentication_total",
        &[("listener", listener)],
    )
}

fn metric(broker: &BrokerProcess, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, body) = metrics::http_get(&broker.metrics_addr(), "/metrics").expect("scrape");
    metrics::find(&metrics::parse_samples(&body), name, labels)
        .iter()
        .map(|s| s.value)
        .sum()
}

/// Waits (bounded) for SCRAM users given with `--add-scram` to be stored.
fn wait_scram_users(broker: &BrokerProcess) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut conn = broker.client();
        let described = conn.send(
            &kafka_protocol::messages::DescribeUserScramCredentialsRequest::default(),
            0,
        );
        if described.is_ok_and(|r| r.results.len() >= 2) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the --add-scram users were never stored"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_listener_kind_serves_real_clients() {
    require_py!("confluent_kafka");
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "Rivulet test CA");
    let broker = secured_broker(&pki);
    wait_scram_users(&broker);
    let ca = pki.ca_file().display().to_string();
    let alice = pki.client("alice", "alice", "clients");

    let ssl = roundtrip(
        &broker.listener_bootstrap("SSL"),
        json!({"security.protocol": "SSL", "ssl.ca.location": ca}),
    );
    assert_eq!(ssl["consumed"], 20, "{ssl}");
    let mtls = roundtrip(
        &broker.listener_bootstrap("MTLS"),
        json!({
            "security.protocol": "SSL", "ssl.ca.location": ca,
            "ssl.certificate.location": alice.cert.display().to_string(),
            "ssl.key.location": alice.key.display().to_string(),
        }),
    );
    assert_eq!(mtls["consumed"], 20, "{mtls}");
    for (mechanism, user, password) in [
        ("PLAIN", "alice", "alice-secret"),
        ("SCRAM-SHA-256", "bob", "bob-secret"),
        ("SCRAM-SHA-512", "carol", "carol-secret"),
    ] {
        for (listener, protocol) in [
            ("SASL_PLAINTEXT", "SASL_PLAINTEXT"),
            ("SASL_SSL", "SASL_SSL"),
        ] {
            let out = roundtrip(
                &broker.listener_bootstrap(listener),
                json!({
                    "security.protocol": protocol, "ssl.ca.location": ca,
                    "sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password,
                }),
            );
            assert_eq!(out["consumed"], 20, "{mechanism} on {listener}: {out}");
        }
    }
    assert_eq!(failed_authentications(&broker, "SASL_SSL"), 0.0);
}

#[test]
fn kcat_over_ssl_and_sasl_ssl() {
    require_tools!("kcat");
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "Rivulet test CA");
    let broker = secured_broker(&pki);
    wait_scram_users(&broker);
    let ca = pki.ca_file().display().to_string();
    let topic = unique_topic("kcat-sec");
    let sasl_ssl = [
        "-X",
        "security.protocol=SASL_SSL",
        "-X",
        &format!("ssl.ca.location={ca}"),
        "-X",
        "sasl.mechanisms=SCRAM-SHA-512",
        "-X",
        "sasl.username=carol",
        "-X",
        "sasl.password=carol-secret",
    ];
    let mut produce = kcat(&broker.listener_bootstrap("SASL_SSL"));
    produce
        .args(sasl_ssl)
        .args(["-P", "-t", &topic, "-X", "topic.request.required.acks=-1"]);
    let out = run_cmd(
        &mut produce,
        Some(b"one\ntwo\nthree\n"),
        Duration::from_secs(60),
    );
    out.assert_success("kcat produce over SASL_SSL");
    let mut consume = kcat(&broker.listener_bootstrap("SSL"));
    consume.args([
        "-X",
        "security.protocol=SSL",
        "-X",
        &format!("ssl.ca.location={ca}"),
        "-C",
        "-t",
        &topic,
        "-o",
        "beginning",
        "-e",
        "-q",
    ]);
    let out = run_cmd(&mut consume, None, Duration::from_secs(60));
    out.assert_success("kcat consume over SSL");
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["one", "two", "three"]
    );
}

#[test]
fn bad_credentials_and_certificates_are_refused_cleanly() {
    require_py!("confluent_kafka");
    require_tools!("kcat");
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "Rivulet test CA");
    let other = TestPki::new(&dir.path().join("other"), "Someone else's CA");
    let mut broker = secured_broker(&pki);
    wait_scram_users(&broker);
    let ca = pki.ca_file().display().to_string();
    let sasl = |mechanism: &str, user: &str, password: &str| {
        json!({
            "security.protocol": "SASL_SSL", "ssl.ca.location": ca,
            "sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password,
        })
    };
    let before = failed_authentications(&broker, "SASL_SSL");
    for props in [
        sasl("PLAIN", "alice", "wrong"),
        sasl("PLAIN", "mallory", "alice-secret"),
        sasl("SCRAM-SHA-512", "carol", "wrong"),
        sasl("SCRAM-SHA-512", "mallory", "carol-secret"),
        // bob has only a SHA-256 credential.
        sasl("SCRAM-SHA-512", "bob", "bob-secret"),
    ] {
        let out = refused(&broker.listener_bootstrap("SASL_SSL"), props.clone());
        eprintln!("{props}: {out}");
        broker.assert_alive();
    }
    assert!(failed_authentications(&broker, "SASL_SSL") >= before + 5.0);
    // The client is told why, in Kafka's words, for an unknown user as for
    // a wrong password.
    for user in ["carol", "mallory"] {
        let mut list = kcat(&broker.listener_bootstrap("SASL_PLAINTEXT"));
        list.args([
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-512",
            "-X",
            &format!("sasl.username={user}"),
            "-X",
            "sasl.password=wrong",
            "-L",
        ]);
        let out = run_cmd(&mut list, None, Duration::from_secs(30));
        assert!(!out.status.success());
        assert!(
            out.stderr
                .contains("Authentication failed: Invalid username or password"),
            "{user}: {}",
            out.stderr
        );
    }

    let stranger = other.client("stranger", "stranger", "clients");
    let expired = pki.expired_client("expired", "old");
    for (what, props) in [
        (
            "no client certificate",
            json!({"security.protocol": "SSL", "ssl.ca.location": ca}),
        ),
        (
            "a client of another CA",
            json!({
                "security.protocol": "SSL", "ssl.ca.location": ca,
                "ssl.certificate.location": stranger.cert.display().to_string(),
                "ssl.key.location": stranger.key.display().to_string(),
            }),
        ),
        (
            "an expired client certificate",
            json!({
                "security.protocol": "SSL", "ssl.ca.location": ca,
                "ssl.certificate.location": expired.cert.display().to_string(),
                "ssl.key.location": expired.key.display().to_string(),
            }),
        ),
    ] {
        let out = refused(&broker.listener_bootstrap("MTLS"), props);
        eprintln!("{what}: {out}");
        broker.assert_alive();
    }
    assert!(failed_authentications(&broker, "MTLS") >= 3.0);
    // The client does not trust the broker's CA.
    let out = refused(
        &broker.listener_bootstrap("SSL"),
        json!({"security.protocol": "SSL", "ssl.ca.location": other.ca_file().display().to_string()}),
    );
    eprintln!("an untrusted broker certificate: {out}");
    // A plaintext client on a TLS port: a failed handshake, counted.
    let before = failed_authentications(&broker, "SSL");
    let out = refused(
        &broker.listener_bootstrap("SSL"),
        json!({"security.protocol": "PLAINTEXT"}),
    );
    eprintln!("plaintext on TLS: {out}");
    assert!(failed_authentications(&broker, "SSL") > before);
    // A client that hangs up before or during the handshake failed
    // nothing: not counted (Kafka counts authentication failures only).
    let before = failed_authentications(&broker, "SSL");
    for _ in 0..5 {
        drop(std::net::TcpStream::connect(broker.listener_bootstrap("SSL")).unwrap());
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        failed_authentications(&broker, "SSL"),
        before,
        "hang-ups are not failures"
    );
    // A plaintext client on a SASL port, skipping authentication.
    let mut conn = KafkaConn::connect(&broker.listener_bootstrap("SASL_PLAINTEXT"))
        .expect("ApiVersions is answered before authentication");
    assert!(
        conn.metadata(None).is_err(),
        "Metadata without authentication must close the connection"
    );
    broker.assert_alive();
    // And the broker still serves good clients.
    let ok = roundtrip(
        &broker.listener_bootstrap("SASL_SSL"),
        sasl("SCRAM-SHA-256", "bob", "bob-secret"),
    );
    assert_eq!(ok["consumed"], 20);
}

#[test]
fn scram_users_are_managed_through_the_admin_api() {
    require_py!("confluent_kafka");
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "Rivulet test CA");
    let mut broker = secured_broker(&pki);
    wait_scram_users(&broker);
    let admin = json!({
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "carol", "sasl.password": "carol-secret",
    });
    let opts = json!({
        "bootstrap": broker.listener_bootstrap("SASL_PLAINTEXT"), "topic": "unused",
        "props": admin, "new_user": "dave", "new_password": "dave-secret",
    });
    let out = last_json(&run_py(
        "security_clients.py",
        &["scram_admin", &opts.to_string()],
    ));
    assert_eq!(out["created_and_deleted"], true);

    // Credentials live in the metadata log: a restart keeps them, and the
    // --add-scram flags (same or changed) do not overwrite them.
    broker.restart();
    wait_scram_users(&broker);
    let still = roundtrip(
        &broker.listener_bootstrap("SASL_PLAINTEXT"),
        json!({
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-256",
            "sasl.username": "bob", "sasl.password": "bob-secret",
        }),
    );
    assert_eq!(still["consumed"], 20);
    let log = std::fs::read_to_string(broker.data_dir().join("__cluster_metadata").join("log"))
        .unwrap_or_default();
    assert!(
        !log.contains("carol-secret"),
        "a password reached the metadata log"
    );
}

/// `rivulet user add|list|remove` manage the SCRAM users real clients log
/// in as.
#[test]
fn the_user_command_manages_scram_users() {
    require_py!("confluent_kafka");
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "Rivulet test CA");
    let broker = secured_broker(&pki);
    wait_scram_users(&broker);
    let user = |args: &[&str]| {
        let mut cmd = rivulet_cmd(&broker.bootstrap(), &["user"]);
        cmd.args(args).env_remove("RIVULET_USER_PASSWORD");
        run_cmd(&mut cmd, None, Duration::from_secs(30))
    };
    user(&[
        "add",
        "erin",
        "--password",
        "erin-secret",
        "--iterations",
        "8192",
    ])
    .assert_success("rivulet user add");
    let list = user(&["list"]);
    list.assert_success("rivulet user list");
    assert!(
        list.stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["erin", "SCRAM-SHA-512", "8192"])),
        "{}",
        list.stdout
    );
    let login = json!({
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "erin", "sasl.password": "erin-secret",
    });
    assert_eq!(
        roundtrip(&broker.listener_bootstrap("SASL_PLAINTEXT"), login.clone())["consumed"],
        20
    );

    // Refusals come back as Kafka's errors, with a failing exit status.
    let weak = user(&["add", "erin", "--password", "x", "--iterations", "10"]);
    assert!(
        !weak.status.success() && weak.stderr.contains("4096"),
        "{}",
        weak.stderr
    );
    let md5 = user(&["add", "erin", "--password", "x", "--mechanism", "SCRAM-MD5"]);
    assert!(!md5.status.success(), "{}", md5.stderr);

    user(&["remove", "erin"]).assert_success("rivulet user remove");
    assert!(!user(&["list"]).stdout.contains("erin"));
    let again = user(&["remove", "erin"]);
    assert!(
        !again.status.success() && again.stderr.contains("RESOURCE_NOT_FOUND"),
        "{}",
        again.stderr
    );
    let out = refused(&broker.listener_bootstrap("SASL_PLAINTEXT"), login);
    eprintln!("a removed user: {out}");
}

/// Every client command takes `--command-config` with Kafka client
/// properties (Java's names, or librdkafka's), as Kafka's tools do.
#[test]
fn cli_commands_take_a_command_config() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "Rivulet test CA");
    let broker = secured_broker(&pki);
    wait_scram_users(&broker);
    let ca = pki.ca_file().display().to_string();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let java = write(
        "sasl_ssl.properties",
        format!(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"carol\" password=\"carol-secret\";\n\
             ssl.truststore.type=PEM\nssl.truststore.location={ca}\n"
        ),
    );
    let sasl_ssl = broker.listener_bootstrap("SASL_SSL");
    let cli = |config: &str, bootstrap: &str, args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = rivulet_cmd(bootstrap, args);
        cmd.args(["--command-config", config]);
        run_cmd(&mut cmd, stdin, Duration::from_secs(30))
    };
    let topic = unique_topic("cli-sec");
    cli(
        &java,
        &sasl_ssl,
        &["topic", "create", &topic, "--partitions", "2"],
        None,
    )
    .assert_success("topic create over SASL_SSL");
    let list = cli(&java, &sasl_ssl, &["topic", "list"], None);
    list.assert_success("topic list over SASL_SSL");
    assert!(
        list.stdout.lines().any(|l| l.trim() == topic),
        "{}",
        list.stdout
    );
    cli(
        &java,
        &sasl_ssl,
        &["produce", "--topic", &topic, "--partition", "0"],
        Some(b"a\nb\n"),
    )
    .assert_success("produce over SASL_SSL");
    let consumed = cli(
        &java,
        &sasl_ssl,
        &[
            "consume",
            "--topic",
            &topic,
            "--partition",
            "0",
            "--from-beginning",
            "--max-messages",
            "2",
            "--timeout-ms",
            "10000",
        ],
        None,
    );
    consumed.assert_success("consume over SASL_SSL");
    assert_eq!(consumed.stdout.lines().collect::<Vec<_>>(), ["a", "b"]);

    // librdkafka's names, PLAIN over clear text.
    let rdkafka = write(
        "plain.properties",
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=PLAIN\nsasl.username=alice\nsasl.password=alice-secret\n".into(),
    );
    cli(
        &rdkafka,
        &broker.listener_bootstrap("SASL_PLAINTEXT"),
        &["topic", "list"],
        None,
    )
    .assert_success("topic list over SASL_PLAINTEXT with PLAIN");
    // A client certificate from a PEM keystore.
    let alice = pki.client("alice", "alice", "clients");
    let mtls = write(
        "mtls.properties",
        format!(
            "security.protocol=SSL\nssl.truststore.location={ca}\nssl.keystore.type=PEM\nssl.keystore.location={}\n",
            alice.keystore.display()
        ),
    );
    cli(
        &mtls,
        &broker.listener_bootstrap("MTLS"),
        &["topic", "list"],
        None,
    )
    .assert_success("topic list over mTLS");

    // Failures say what went wrong.
    let wrong = write(
        "wrong.properties",
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\nsasl.username=bob\nsasl.password=nope\n".into(),
    );
    let out = cli(
        &wrong,
        &broker.listener_bootstrap("SASL_PLAINTEXT"),
        &["topic", "list"],
        None,
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("Invalid username or password"),
        "{}",
        out.stderr
    );
    let no_ca = write("no_ca.properties", "security.protocol=SSL\n".into());
    let out = cli(
        &no_ca,
        &broker.listener_bootstrap("SSL"),
        &["topic", "list"],
        None,
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("ssl.truststore.location"),
        "{}",
        out.stderr
    );
    let other = TestPki::new(&dir.path().join("other"), "Someone else's CA");
    let untrusted = write(
        "untrusted.properties",
        format!(
            "security.protocol=SSL\nssl.ca.location={}\n",
            other.ca_file().display()
        ),
    );
    let out = cli(
        &untrusted,
        &broker.listener_bootstrap("SSL"),
        &["topic", "list"],
        None,
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("TLS handshake"), "{}", out.stderr);
}

#[test]
fn sasl_handshake_v0_sends_raw_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "Rivulet test CA");
    let broker = secured_broker(&pki);
    let mut conn = KafkaConn::connect(&broker.listener_bootstrap("SASL_PLAINTEXT")).unwrap();
    let mut handshake = kafka_protocol::messages::SaslHandshakeRequest::default();
    handshake.mechanism = kafka_protocol::protocol::StrBytes::from_static_str("PLAIN");
    let response = conn.send(&handshake, 0).unwrap();
    assert_eq!(response.error_code, 0);
    // v0: the token is a bare size-prefixed frame, and so is the answer.
    conn.write_frame(b"\0alice\0alice-secret").unwrap();
    let answer = conn.read_frame().unwrap();
    assert!(answer.is_empty(), "PLAIN's success token is empty");
    let md = conn
        .metadata(None)
        .expect("authenticated: Metadata is served");
    assert!(!md.brokers.is_empty());

    // A wrong password in v0 closes the connection without an answer.
    let mut conn = KafkaConn::connect(&broker.listener_bootstrap("SASL_PLAINTEXT")).unwrap();
    conn.send(&handshake, 0).unwrap();
    conn.write_frame(b"\0alice\0nope").unwrap();
    assert!(conn.read_frame().is_err());

    // SaslHandshake on a PLAINTEXT listener: ILLEGAL_SASL_STATE, no harm done.
    let mut conn = broker.client();
    let response = conn.send(&handshake, 1).unwrap();
    assert_eq!(response.error_code, 34);
    assert!(conn.metadata(None).is_ok());
}

/// KIP-368: with a 2 s session lifetime, librdkafka re-authenticates on
/// its open connections instead of being cut off, and produces and
/// consumes through it all.
#[test]
fn clients_re_authenticate_before_their_session_expires() {
    require_py!("confluent_kafka");
    let broker = BrokerProcess::builder()
        .listener("SASL_PLAINTEXT", "SASL_PLAINTEXT")
        .config(
            "listener.name.sasl_plaintext.connections.max.reauth.ms",
            "2000",
        )
        .arg("--add-scram")
        .arg("SCRAM-SHA-512=[name=carol,password=carol-secret]")
        .arg("--add-scram")
        .arg("SCRAM-SHA-256=[name=bob,password=bob-secret]")
        .start();
    wait_scram_users(&broker);
    let topic = unique_topic("reauth");
    let props = json!({
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "carol", "sasl.password": "carol-secret",
    });
    let out = last_json(&run_py(
        "security_clients.py",
        &[
            "paced",
            &options(&broker.listener_bootstrap("SASL_PLAINTEXT"), &topic, props),
        ],
    ));
    assert_eq!(out["consumed"], 40, "{out}");
    let handshakes = metric(
        &broker,
        "kafka_network_requestmetrics_requests_total",
        &[("request", "SaslHandshake")],
    );
    let expired = metric(
        &broker,
        "kafka_network_requestmetrics_errors_total",
        &[("error", "authentication")],
    );
    eprintln!("{handshakes} SaslHandshake requests, {expired} connections cut");
    assert!(
        handshakes >= 6.0,
        "sessions re-authenticated: {handshakes} handshakes"
    );
    assert_eq!(expired, 0.0, "no connection was cut for an expired session");
}

/// Replaces `path` atomically with `contents` (as a Secret update does).
fn replace(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn rotated_certificates_are_served_without_a_restart() {
    require_py!("confluent_kafka");
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path(), "Rivulet test CA");
    let broker = secured_broker(&pki);
    let bootstrap = broker.listener_bootstrap("SSL");
    let ca = pki.ca_file().display().to_string();
    let served = || {
        let out = run_py("tls_peer.py", &["subject", &bootstrap, &ca]);
        last_json(&out)["subject"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(served(), "commonName=broker");
    // A connection made before the rotation.
    let ready = dir.path().join("ready");
    let go = dir.path().join("go");
    let held = py_command(
        "tls_peer.py",
        &[
            "hold",
            &bootstrap,
            &ca,
            &ready.display().to_string(),
            &go.display().to_string(),
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("start tls_peer.py hold");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        assert!(
            Instant::now() < deadline,
            "the held connection never got ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let rotated = pki.server("broker-rotated");
    let keystore = dir.path().join("broker.pem");
    replace(&keystore, &std::fs::read(&rotated.keystore).unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while served() != "commonName=broker-rotated" {
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::fs::write(&go, b"").unwrap();
    let out = held.wait_with_output().expect("tls_peer.py hold");
    assert!(
        out.status.success(),
        "the connection made before the rotation broke: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A broken update is refused; the last good certificate stays.
    replace(
        &keystore,
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(served(), "commonName=broker-rotated");
    let after = roundtrip(
        &bootstrap,
        json!({"security.protocol": "SSL", "ssl.ca.location": ca}),
    );
    assert_eq!(after["consumed"], 20);
    let log = broker.log();
    assert!(log.contains("certificates reloaded"), "{log}");
    assert!(log.contains("keeping the previous ones"), "{log}");
}
