//! `rivulet group list | describe | reset-offsets | delete` against a real
//! confluent-kafka consumer group, checked through the Kafka protocol
//! (OffsetFetch, DescribeGroups), not only through what the CLI prints.

use std::{collections::BTreeMap, time::Duration};

use kafka_protocol::records::Compression;
use rivulet_tests::{
    groups::{committed_offsets, wait_for_group, wait_json_line},
    py_command, require_py, rivulet_cmd, run_cmd, unique_topic, Background, BrokerProcess,
    CmdOutput, Msg,
};

const CLI_TIMEOUT: Duration = Duration::from_secs(30);

fn cli(b: &str, args: &[&str]) -> CmdOutput {
    eprintln!("$ rivulet {}", args.join(" "));
    run_cmd(&mut rivulet_cmd(b, args), None, CLI_TIMEOUT)
}

#[track_caller]
fn cli_ok(b: &str, args: &[&str]) -> String {
    let out = cli(b, args);
    out.assert_success(&format!("rivulet {}", args.join(" ")));
    out.stdout
}

/// The rows of `group describe` for `topic`: partition -> (current offset,
/// log end offset, lag, consumer id), columns found by the header names.
fn describe_rows(out: &str, topic: &str) -> BTreeMap<i32, [String; 4]> {
    let header = out
        .lines()
        .find(|l| l.starts_with("GROUP"))
        .unwrap_or_else(|| panic!("no header line in `group describe`:\n{out}"));
    let cols: Vec<&str> = header.split_whitespace().collect();
    let col = |name: &str| {
        cols.iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("no {name} column in {header:?}"))
    };
    let (t, p, cur, end, lag, id) = (
        col("TOPIC"),
        col("PARTITION"),
        col("CURRENT-OFFSET"),
        col("LOG-END-OFFSET"),
        col("LAG"),
        col("CONSUMER-ID"),
    );
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == cols.len() && f[t] == topic)
        .map(|f| {
            let part = f[p]
                .parse()
                .unwrap_or_else(|e| panic!("partition {:?}: {e}", f[p]));
            (part, [f[cur], f[end], f[lag], f[id]].map(str::to_string))
        })
        .collect()
}

fn strings(v: [&str; 4]) -> [String; 4] {
    v.map(str::to_string)
}

#[test]
fn group_cli_list_describe_reset_delete() {
    require_py!("confluent_kafka");
    let broker = BrokerProcess::builder()
        .config("group.initial.rebalance.delay.ms", "0")
        .start();
    let b = broker.bootstrap();
    let topic = unique_topic("gcli");
    let group = format!("{topic}-grp");
    broker.create_topic(&topic, 3, &[]);
    let mut c = broker.client();
    for p in 0..3 {
        let msgs: Vec<Msg> = (0..10)
            .map(|i| Msg::new(None, &format!("v{p}-{i}")))
            .collect();
        c.produce(&topic, p, &msgs, Compression::None)
            .expect("produce");
    }

    // An active member that committed 2, 3, 4 on partitions 0, 1, 2.
    let stop = broker.scratch_dir().join("stop");
    let mut holder = Background::spawn(
        &mut py_command(
            "group_offsets.py",
            &[
                "hold",
                &b,
                &topic,
                "3",
                &group,
                stop.to_str().expect("utf-8"),
            ],
        ),
        broker.scratch_dir(),
        "holder",
    );
    wait_json_line(&holder, Duration::from_secs(60), "group_offsets.py hold");
    let committed: BTreeMap<i32, i64> = (0..3).map(|p| (p, 2 + i64::from(p))).collect();

    let list = cli_ok(&b, &["group", "list"]);
    let line = list
        .lines()
        .find(|l| l.split_whitespace().next() == Some(group.as_str()))
        .unwrap_or_else(|| panic!("`group list` does not show {group}:\n{list}"));
    assert!(
        line.contains("Stable"),
        "`group list` line for an active group: {line:?}"
    );

    let out = cli_ok(&b, &["group", "describe", &group]);
    eprintln!("{out}");
    let rows = describe_rows(&out, &topic);
    assert_eq!(rows.len(), 3, "describe rows for {topic}:\n{out}");
    for (p, [cur, end, lag, id]) in &rows {
        let want = committed[p];
        assert_eq!(
            [cur.as_str(), end.as_str(), lag.as_str()],
            [
                want.to_string().as_str(),
                "10",
                (10 - want).to_string().as_str()
            ],
            "partition {p}: current offset, log end offset, lag:\n{out}"
        );
        assert_ne!(
            id, "-",
            "partition {p} has no consumer while the member is active:\n{out}"
        );
    }

    // Refused while the group has an active member; nothing changes.
    let refused = cli(
        &b,
        &[
            "group",
            "reset-offsets",
            &group,
            "--to-earliest",
            "--topic",
            &topic,
            "--execute",
        ],
    );
    assert!(
        !refused.status.success(),
        "reset-offsets on an active group succeeded:\n{}{}",
        refused.stdout,
        refused.stderr
    );
    let msg = refused.stderr.to_lowercase();
    assert!(
        msg.contains("active") || msg.contains("inactive") || msg.contains("member"),
        "reset-offsets refusal does not say why: {}",
        refused.stderr
    );
    assert_eq!(
        committed_offsets(&mut c, &group, &topic, 3).expect("offsets"),
        committed,
        "committed offsets after a refused reset"
    );

    // Stop the member cleanly: the group becomes Empty.
    std::fs::write(&stop, b"").expect("create stop file");
    let status = holder.wait(Duration::from_secs(30));
    assert!(status.success(), "holder failed: {}", holder.stderr());
    wait_for_group(&mut c, &group, Duration::from_secs(10), "Empty", |g| {
        g.state == "Empty"
    });

    // Without --execute only the plan is printed.
    cli_ok(
        &b,
        &[
            "group",
            "reset-offsets",
            &group,
            "--to-latest",
            "--topic",
            &topic,
        ],
    );
    assert_eq!(
        committed_offsets(&mut c, &group, &topic, 3).expect("offsets"),
        committed,
        "committed offsets after a reset without --execute"
    );

    cli_ok(
        &b,
        &[
            "group",
            "reset-offsets",
            &group,
            "--to-earliest",
            "--topic",
            &topic,
            "--execute",
        ],
    );
    let zero: BTreeMap<i32, i64> = (0..3).map(|p| (p, 0)).collect();
    assert_eq!(
        committed_offsets(&mut c, &group, &topic, 3).expect("offsets"),
        zero,
        "committed offsets after reset-offsets --to-earliest --execute"
    );
    let out = cli_ok(&b, &["group", "describe", &group]);
    let rows = describe_rows(&out, &topic);
    let expected: BTreeMap<i32, [String; 4]> = (0..3)
        .map(|p| (p, strings(["0", "10", "10", "-"])))
        .collect();
    assert_eq!(rows, expected, "describe after the reset:\n{out}");

    cli_ok(&b, &["group", "delete", &group]);
    let list = cli_ok(&b, &["group", "list"]);
    assert!(
        !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(group.as_str())),
        "`group list` still shows {group} after delete:\n{list}"
    );
    assert_eq!(
        committed_offsets(&mut c, &group, &topic, 3).expect("offsets"),
        BTreeMap::new(),
        "committed offsets after `group delete`"
    );
    let gone = cli(&b, &["group", "describe", &group]);
    assert!(
        !gone.status.success(),
        "`group describe` of a deleted group succeeded:\n{}",
        gone.stdout
    );
}
