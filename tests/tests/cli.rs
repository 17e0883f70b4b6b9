//! The `rivulet` client subcommands (`topic`, `produce`, `consume`) against a
//! running broker, checked through the Kafka protocol, not just their output.

use std::time::Duration;

use kafka_protocol::records::Compression;
use rivulet_tests::{
    broker::free_port, kafka::SOURCE_DYNAMIC_TOPIC, rivulet_cmd, run_cmd, unique_topic,
    BrokerProcess, CmdOutput, Msg,
};

const CLI_TIMEOUT: Duration = Duration::from_secs(30);

fn cli(bootstrap: &str, args: &[&str], stdin: Option<&str>) -> CmdOutput {
    run_cmd(
        &mut rivulet_cmd(bootstrap, args),
        stdin.map(str::as_bytes),
        CLI_TIMEOUT,
    )
}

#[track_caller]
fn cli_ok(bootstrap: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = cli(bootstrap, args, stdin);
    out.assert_success(&format!("rivulet {}", args.join(" ")));
    out.stdout
}

fn listed(bootstrap: &str) -> Vec<String> {
    cli_ok(bootstrap, &["topic", "list"], None)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn topic_create_list_describe_alter_delete() {
    let broker = BrokerProcess::start();
    let b = broker.bootstrap();
    let topic = unique_topic("clit");
    let mut c = broker.client();

    cli_ok(
        &b,
        &[
            "topic",
            "create",
            &topic,
            "--partitions",
            "3",
            "--config",
            "retention.ms=86400000",
        ],
        None,
    );
    assert_eq!(
        c.partition_count(&topic).expect("metadata"),
        Some(3),
        "partitions after create"
    );
    let cfg = c.topic_configs(&topic).expect("describe configs");
    assert_eq!(cfg["retention.ms"].value.as_deref(), Some("86400000"));
    assert!(
        listed(&b).contains(&topic),
        "`topic list` lacks {topic}: {:?}",
        listed(&b)
    );

    let described = cli_ok(&b, &["topic", "describe", &topic], None);
    assert!(
        described.contains(&topic),
        "describe output lacks the name:\n{described}"
    );
    assert!(
        described.contains("retention.ms") && described.contains("86400000"),
        "describe output lacks the topic's config retention.ms=86400000:\n{described}"
    );

    cli_ok(&b, &["topic", "alter", &topic, "--partitions", "5"], None);
    assert_eq!(
        c.partition_count(&topic).expect("metadata"),
        Some(5),
        "partitions after alter"
    );
    cli_ok(
        &b,
        &[
            "topic",
            "alter",
            &topic,
            "--config",
            "retention.ms=1000",
            "--config",
            "segment.ms=600000",
        ],
        None,
    );
    let cfg = c.topic_configs(&topic).expect("describe configs");
    assert_eq!(cfg["retention.ms"].value.as_deref(), Some("1000"));
    assert_eq!(cfg["segment.ms"].value.as_deref(), Some("600000"));
    cli_ok(
        &b,
        &["topic", "alter", &topic, "--delete-config", "retention.ms"],
        None,
    );
    let cfg = c.topic_configs(&topic).expect("describe configs");
    assert_ne!(
        cfg["retention.ms"].source, SOURCE_DYNAMIC_TOPIC,
        "retention.ms still set after --delete-config: {:?}",
        cfg["retention.ms"]
    );
    assert_eq!(
        cfg["segment.ms"].value.as_deref(),
        Some("600000"),
        "other configs kept"
    );

    cli_ok(&b, &["topic", "delete", &topic], None);
    assert_eq!(
        c.partition_count(&topic).expect("metadata"),
        None,
        "topic after delete"
    );
    assert!(
        !listed(&b).contains(&topic),
        "`topic list` still shows {topic}"
    );
}

#[test]
fn produce_and_consume_round_trip() {
    let broker = BrokerProcess::start();
    let b = broker.bootstrap();
    let topic = unique_topic("clip");
    cli_ok(&b, &["topic", "create", &topic, "--partitions", "1"], None);

    cli_ok(
        &b,
        &[
            "produce",
            "--topic",
            &topic,
            "--key-separator",
            ":",
            "--header",
            "src=cli",
            "--header",
            "n=1",
        ],
        Some("k1:v1\nk2:v2 with spaces\nk3:v3:colon\n"),
    );
    let out = cli_ok(
        &b,
        &[
            "consume",
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "3",
            "--timeout-ms",
            "10000",
            "--format",
            "%k=%v",
        ],
        None,
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["k1=v1", "k2=v2 with spaces", "k3=v3:colon"],
        "consume --format '%k=%v'"
    );

    let out = cli_ok(
        &b,
        &[
            "consume",
            "--topic",
            &topic,
            "--offset",
            "1",
            "--max-messages",
            "1",
            "--timeout-ms",
            "10000",
            "--format",
            "%o %p %v",
        ],
        None,
    );
    assert_eq!(out.trim_end(), "1 0 v2 with spaces", "consume --offset 1");

    // What the CLI stored, seen through the protocol.
    let records = broker.client().fetch_all(&topic, 0, 0).expect("fetch");
    assert_eq!(records.len(), 3);
    for (r, key) in records.iter().zip(["k1", "k2", "k3"]) {
        assert_eq!(
            r.key.as_deref(),
            Some(key.as_bytes()),
            "key at {}",
            r.offset
        );
        let headers: Vec<(String, Option<Vec<u8>>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_ref().map(|v| v.to_vec())))
            .collect();
        assert_eq!(
            headers,
            vec![
                ("src".to_string(), Some(b"cli".to_vec())),
                ("n".to_string(), Some(b"1".to_vec()))
            ],
            "headers at {}",
            r.offset
        );
    }

    // And records from another client come out of `consume` too.
    broker
        .client()
        .produce(&topic, 0, &[Msg::new(None, "from-raw")], Compression::Gzip)
        .expect("produce");
    let out = cli_ok(
        &b,
        &[
            "consume",
            "--topic",
            &topic,
            "--offset",
            "3",
            "--max-messages",
            "1",
            "--timeout-ms",
            "10000",
        ],
        None,
    );
    assert_eq!(out.trim_end(), "from-raw", "default format is the value");
}

#[test]
fn cli_errors_are_reported() {
    let broker = BrokerProcess::start();
    let b = broker.bootstrap();
    let missing = unique_topic("nosuch");

    let out = cli(&b, &["topic", "describe", &missing], None);
    assert!(
        !out.status.success(),
        "describing a missing topic succeeded:\n{}",
        out.stdout
    );
    let msg = format!("{}{}", out.stderr, out.stdout).to_lowercase();
    assert!(
        msg.contains(&missing.to_lowercase())
            && ["not found", "unknown", "does not exist", "no such"]
                .iter()
                .any(|w| msg.contains(w)),
        "the error should name the topic and say it does not exist:\n{msg}"
    );

    let topic = unique_topic("dup");
    cli_ok(&b, &["topic", "create", &topic], None);
    let out = cli(&b, &["topic", "create", &topic], None);
    assert!(
        !out.status.success(),
        "creating an existing topic succeeded"
    );
    assert!(
        format!("{}{}", out.stderr, out.stdout)
            .to_lowercase()
            .contains("exist"),
        "creating an existing topic should say so:\n{}{}",
        out.stderr,
        out.stdout
    );

    // Nobody listens here: a bounded failure, not a hang.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let out = cli(&nowhere, &["topic", "list"], None);
    assert!(
        !out.status.success(),
        "`topic list` against {nowhere} succeeded"
    );
    assert!(
        !out.stderr.trim().is_empty(),
        "no error message for an unreachable broker"
    );
}

#[test]
fn bootstrap_server_flag_after_the_subcommand() {
    // docs/cli.md: every client command takes --bootstrap-server; users of
    // Kafka's tools put it anywhere, typically last.
    let broker = BrokerProcess::start();
    let b = broker.bootstrap();
    let topic = unique_topic("flag");
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = std::process::Command::new(rivulet_tests::rivulet_bin());
        cmd.args(args)
            .args(["--bootstrap-server", &b])
            .env_remove("RIVULET_BOOTSTRAP_SERVER");
        let out = run_cmd(&mut cmd, stdin.map(str::as_bytes), CLI_TIMEOUT);
        out.assert_success(&format!(
            "rivulet {} --bootstrap-server {b}",
            args.join(" ")
        ));
        out.stdout
    };
    run(&["topic", "create", &topic, "--partitions", "1"], None);
    assert!(run(&["topic", "list"], None)
        .lines()
        .any(|l| l.trim() == topic));
    run(&["produce", "--topic", &topic], Some("hello\n"));
    let out = run(
        &[
            "consume",
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "1",
            "--timeout-ms",
            "10000",
        ],
        None,
    );
    assert_eq!(out.trim_end(), "hello");
}
