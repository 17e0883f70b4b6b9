//! ACLs end to end: confluent-kafka's AdminClient creates, describes and
//! deletes them and users' clients see them enforced (prefix READ, DENY
//! over ALLOW, super user, groups, transactional ids, idempotence); they
//! survive a restart; `rivulet acl` manages them; and in a 3-broker
//! cluster an ACL changed through one broker is enforced by every broker.

use std::time::{Duration, Instant};

use kafka_protocol::{
    messages::{
        describe_user_scram_credentials_request::UserName, metadata_request::MetadataRequestTopic,
        DescribeUserScramCredentialsRequest, MetadataRequest, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_tests::{
    cluster::DevCluster, last_json, metrics, require_py, rivulet_cmd, run_cmd, run_py,
    unique_topic, BrokerProcess, CmdOutput,
};
use serde_json::json;

const STANDARD: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

const JAAS: &str = "org.apache.kafka.common.security.plain.PlainLoginModule required \
     user_admin=\"admin-secret\" user_alice=\"alice-secret\" user_bob=\"bob-secret\";";

/// A broker with ACLs on, `admin` its super user, and a SASL_PLAINTEXT
/// listener with PLAIN users admin, alice and bob.
fn acl_broker() -> BrokerProcess {
    BrokerProcess::builder()
        .listener("SASL", "SASL_PLAINTEXT")
        .config("sasl.enabled.mechanisms", "PLAIN")
        .config("listener.name.sasl.plain.sasl.jaas.config", JAAS)
        .config("authorizer.class.name", STANDARD)
        .config("super.users", "User:admin")
        .config("group.initial.rebalance.delay.ms", "0")
        .start()
}

fn acl_clients(scenario: &str, bootstrap: &str, prefix: &str) -> serde_json::Value {
    let options = json!({
        "bootstrap": bootstrap,
        "prefix": prefix,
        "passwords": {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"},
    });
    last_json(&run_py("acl_clients.py", &[scenario, &options.to_string()]))
}

fn denials(broker: &BrokerProcess, operation: &str, resource_type: &str) -> f64 {
    let (_, body) = metrics::http_get(&broker.metrics_addr(), "/metrics").expect("scrape");
    metrics::find(
        &metrics::parse_samples(&body),
        "kafka_server_authorizer_denied_total",
        &[("operation", operation), ("resource_type", resource_type)],
    )
    .iter()
    .map(|s| s.value)
    .sum()
}

#[test]
fn acls_are_enforced_for_real_clients_and_survive_a_restart() {
    require_py!("confluent_kafka");
    let mut broker = acl_broker();
    let sasl = broker.listener_bootstrap("SASL");
    let prefix = format!("{}-", unique_topic("acl"));
    acl_clients("setup", &sasl, &prefix);
    let enforced = acl_clients("enforce", &sasl, &prefix);
    assert_eq!(enforced["bob_denied"], 29, "{enforced}");
    assert!(
        denials(&broker, "WRITE", "TOPIC") >= 2.0,
        "write denials are counted"
    );
    assert!(denials(&broker, "DESCRIBE", "GROUP") >= 1.0);
    acl_clients("filters", &sasl, &prefix);

    // The anonymous PLAINTEXT listener gets nothing: ACLs name users.
    let mut anonymous = broker.client();
    let topic = format!("{prefix}orders-1");
    let md = anonymous
        .send(&metadata_for(&topic), 12)
        .expect("metadata over PLAINTEXT");
    assert_eq!(
        md.topics[0].error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );

    broker.restart();
    let sasl = broker.listener_bootstrap("SASL");
    acl_clients("after_restart", &sasl, &prefix);
}

fn metadata_for(topic: &str) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]))
        .with_allow_auto_topic_creation(false)
}

fn acl_cmd(bootstrap: &str, config: Option<&std::path::Path>, args: &[&str]) -> CmdOutput {
    let mut cmd = rivulet_cmd(bootstrap, &["acl"]);
    cmd.args(args);
    if let Some(config) = config {
        cmd.arg("--command-config").arg(config);
    }
    run_cmd(&mut cmd, None, Duration::from_secs(30))
}

#[test]
fn acl_command_adds_lists_and_removes() {
    let broker = acl_broker();
    let sasl = broker.listener_bootstrap("SASL");
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("admin.properties");
    std::fs::write(
        &admin,
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
         sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
         username=\"admin\" password=\"admin-secret\";\n",
    )
    .unwrap();
    let alice = dir.path().join("alice.properties");
    std::fs::write(
        &alice,
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n\
         sasl.username=alice\nsasl.password=alice-secret\n",
    )
    .unwrap();
    let admin = Some(admin.as_path());

    acl_cmd(
        &sasl,
        admin,
        &[
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "read",
            "--operation",
            "describe",
            "--topic",
            "logs-",
            "--group",
            "logs-",
            "--resource-pattern-type",
            "prefixed",
        ],
    )
    .assert_success("acl add");
    acl_cmd(
        &sasl,
        admin,
        &[
            "add",
            "--deny-principal",
            "User:bob",
            "--operation",
            "all",
            "--cluster",
        ],
    )
    .assert_success("acl add deny");
    let listed = acl_cmd(&sasl, admin, &["list", "--json"]);
    listed.assert_success("acl list");
    let rows: Vec<serde_json::Value> = serde_json::from_str(listed.stdout.trim()).unwrap();
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(rows.iter().any(|r| r["resource_type"] == "CLUSTER"
        && r["permission"] == "DENY"
        && r["principal"] == "User:bob"));
    // MATCH: the ACLs that apply to topic logs-app.
    let matched = acl_cmd(
        &sasl,
        admin,
        &[
            "list",
            "--topic",
            "logs-app",
            "--resource-pattern-type",
            "match",
            "--json",
        ],
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(matched.stdout.trim()).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let table = acl_cmd(&sasl, admin, &["list"]);
    assert!(table.stdout.contains("PREFIXED"), "{}", table.stdout);

    // alice may not manage ACLs; the refusal is Kafka's error, clearly.
    let refused = acl_cmd(
        &sasl,
        Some(&alice),
        &[
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "all",
            "--cluster",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        refused
            .stderr
            .to_lowercase()
            .contains("cluster authorization failed")
            || refused.stderr.contains("CLUSTER_AUTHORIZATION_FAILED"),
        "{}",
        refused.stderr
    );
    // Bad input is refused by the command, naming what is wrong.
    let bad = acl_cmd(
        &sasl,
        admin,
        &[
            "add",
            "--allow-principal",
            "User:x",
            "--operation",
            "fly",
            "--topic",
            "t",
        ],
    );
    assert!(!bad.status.success());
    assert!(
        bad.stderr.contains("`fly` is not a operation") || bad.stderr.contains("fly"),
        "{}",
        bad.stderr
    );
    let no_principal = acl_cmd(
        &sasl,
        admin,
        &["add", "--operation", "read", "--topic", "t"],
    );
    assert!(
        no_principal.stderr.contains("principal"),
        "{}",
        no_principal.stderr
    );
    let bad_principal = acl_cmd(
        &sasl,
        admin,
        &[
            "add",
            "--allow-principal",
            "alice",
            "--operation",
            "read",
            "--topic",
            "t",
        ],
    );
    assert!(!bad_principal.status.success());
    assert!(
        bad_principal.stderr.contains("colon"),
        "{}",
        bad_principal.stderr
    );

    let removed = acl_cmd(&sasl, admin, &["remove", "--principal", "User:alice"]);
    removed.assert_success("acl remove");
    assert!(removed.stdout.contains("removed 4"), "{}", removed.stdout);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(acl_cmd(&sasl, admin, &["list", "--json"]).stdout.trim()).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let everything = acl_cmd(&sasl, admin, &["remove"]);
    assert!(
        !everything.status.success(),
        "a filterless remove is refused"
    );
}

#[test]
fn acl_apis_without_an_authorizer_say_security_is_disabled() {
    let broker = BrokerProcess::start();
    let listed = acl_cmd(&broker.bootstrap(), None, &["list"]);
    assert!(!listed.status.success());
    assert!(
        listed.stderr.contains("No Authorizer is configured"),
        "{}",
        listed.stderr
    );
}

/// Polls `check` on every broker until it holds everywhere (bounded).
fn on_every_broker(cluster: &DevCluster, what: &str, check: impl Fn(i32) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in cluster.broker_ids() {
        while !check(id) {
            assert!(Instant::now() < deadline, "broker {id}: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn topic_error(cluster: &DevCluster, id: i32, topic: &str) -> i16 {
    cluster
        .client(id)
        .send(&metadata_for(topic), 12)
        .map(|md| md.topics[0].error_code)
        .unwrap_or(-1)
}

#[test]
fn acls_and_users_changed_on_one_broker_are_enforced_by_all() {
    let mut cluster = DevCluster::start(
        3,
        &[
            ("authorizer.class.name", STANDARD),
            // Brokers and clients are anonymous here; what has no ACL is open.
            ("allow.everyone.if.no.acl.found", "true"),
        ],
    );
    let secret = unique_topic("secret");
    let b0 = cluster.kafka_addr(0).to_string();
    run_cmd(
        &mut rivulet_cmd(
            &b0,
            &[
                "topic",
                "create",
                &secret,
                "--partitions",
                "3",
                "--replication-factor",
                "3",
            ],
        ),
        None,
        Duration::from_secs(30),
    )
    .assert_success("topic create");
    on_every_broker(&cluster, "the topic is visible", |id| {
        topic_error(&cluster, id, &secret) == 0
    });
    acl_cmd(
        &b0,
        None,
        &[
            "add",
            "--deny-principal",
            "User:ANONYMOUS",
            "--operation",
            "describe",
            "--topic",
            &secret,
        ],
    )
    .assert_success("acl add through broker 0");
    let denied = ResponseError::TopicAuthorizationFailed.code();
    on_every_broker(&cluster, "the DENY is enforced", |id| {
        topic_error(&cluster, id, &secret) == denied
    });

    // A broker restarted from kill -9 enforces it from its own log.
    cluster.kill9(2);
    cluster.restart(2);
    on_every_broker(&cluster, "the DENY survives a restart", |id| {
        topic_error(&cluster, id, &secret) == denied
    });

    // Removed through another broker: open again everywhere.
    let b1 = cluster.kafka_addr(1).to_string();
    acl_cmd(&b1, None, &["remove", "--topic", &secret])
        .assert_success("acl remove through broker 1");
    on_every_broker(&cluster, "the removal is seen", |id| {
        topic_error(&cluster, id, &secret) == 0
    });

    // A SCRAM user added through broker 1 is known to every broker.
    let mut add = rivulet_cmd(&b1, &["user", "add", "erin", "--password", "erin-secret"]);
    add.env_remove("RIVULET_USER_PASSWORD");
    run_cmd(&mut add, None, Duration::from_secs(30)).assert_success("user add");
    on_every_broker(&cluster, "the SCRAM user is replicated", |id| {
        let request = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
            UserName::default().with_name(StrBytes::from_static_str("erin")),
        ]));
        cluster
            .client(id)
            .send(&request, 0)
            .is_ok_and(|r| r.results.first().is_some_and(|u| u.error_code == 0))
    });
}
