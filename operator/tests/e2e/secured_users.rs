//! The secured example with real brokers (processes mode): its brokers
//! run on the certificates the operator issued (the stand-in kubelet
//! projects the `<cluster>-broker-certs` Secret as files), the cluster
//! becomes Ready, and a TLS and a SCRAM-SHA-512 KafkaUser get their
//! Secrets. A local kcat that has nothing but those Secrets' contents
//! (and the cluster CA's `ca.crt`) produces and consumes on the topic the
//! user's ACLs allow, is refused on the other, and loses its access when
//! its KafkaUser is deleted.

use k8s_openapi::api::core::v1::Secret;
use rivulet_operator::crd::KafkaUser;

use super::*;

const SECURED: &str = "secure";
/// The third octet of this test's pod addresses (other tests use 1-3).
const SUBNET: u8 = 7;

/// One user's kcat: its connection settings, and the topic its ACLs
/// allow.
struct UserClient {
    name: &'static str,
    topic: &'static str,
    /// `-b ... -X ...` of kcat, from the user's files only.
    connection: String,
}

impl UserClient {
    fn produce(&self, topic: &str) -> String {
        format!(
            "seq 1 50 | timeout 90 kcat {} -t {topic} -P -X acks=all -X message.timeout.ms=20000",
            self.connection
        )
    }

    fn consume(&self, topic: &str) -> String {
        format!(
            "timeout 90 kcat {} -t {topic} -C -e -q -o beginning -f '%s\\n'",
            self.connection
        )
    }
}

#[tokio::test]
async fn secured_cluster_users_work_from_their_secrets_and_lose_access_on_delete() {
    let test = "secured_cluster_users_work_from_their_secrets_and_lose_access_on_delete";
    let Some(client) = cluster_client(test).await else {
        return;
    };
    let mode = mode(&client).await;
    if mode != Mode::Processes {
        eprintln!("SKIPPED {test}: it needs real brokers (RIVULET_E2E_MODE=processes)");
        return;
    }
    install(&client).await;
    let ns = TestNamespace::create(&client, "secured-users").await;
    let node = Arc::new(LocalNode::new(&ns.name, SECURED, SUBNET));
    let kubelet = node.start(client.clone(), &ns.name, SECURED);
    let _operator = LocalOperator::start(&client, &ns.name, Some(&node)).await;

    // The example's cluster as users apply it, on smaller volumes.
    let example = include_str!("../../../manifests/examples/secure-cluster.yaml");
    let cluster_doc = example
        .split("\n---\n")
        .find(|doc| doc.contains("kind: KafkaCluster"))
        .expect("the example's KafkaCluster")
        .replace("size: 10Gi", "size: 1Gi");
    let clusters: Api<KafkaCluster> = ns.api();
    create_from_yaml(&clusters, &cluster_doc).await;
    let started = Instant::now();
    wait_cluster_ready(mode, &ns, SECURED, 3).await;
    eprintln!(
        "secured cluster Ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let topics: Api<Topic> = ns.api();
    for topic in ["tls-orders", "scram-orders"] {
        create_from_yaml(
            &topics,
            &format!(
                "apiVersion: rivulet.dev/v1alpha1\nkind: Topic\nmetadata:\n  name: {topic}\nspec:\n  cluster: {SECURED}\n  partitions: 3\n  replicationFactor: 3\n"
            ),
        )
        .await;
    }
    let users: Api<KafkaUser> = ns.api();
    for (user, kind, topic) in [
        ("tls-app", "tls", "tls-orders"),
        ("scram-app", "scram-sha-512", "scram-orders"),
    ] {
        create_from_yaml(&users, &user_yaml(user, kind, topic)).await;
    }
    for topic in ["tls-orders", "scram-orders"] {
        wait_for(
            &format!("Topic {topic} Ready"),
            Duration::from_secs(120),
            || async {
                let t = topics.get(topic).await.ok()?;
                ready_condition(&t.status?.conditions).then_some(())
            },
        )
        .await;
    }
    let started = Instant::now();
    for user in ["tls-app", "scram-app"] {
        wait_for(
            &format!("KafkaUser {user} Ready"),
            Duration::from_secs(120),
            || async {
                let u = users.get(user).await.ok()?;
                ready_condition(&u.status?.conditions).then_some(())
            },
        )
        .await;
    }
    eprintln!(
        "both KafkaUsers Ready after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Each client has only its Secret's files; SCRAM clients take the
    // cluster CA from `<cluster>-cluster-ca-cert`, as the example says.
    let secrets: Api<Secret> = ns.api();
    let tls_dir = write_secret(
        &node,
        &secrets,
        "tls-app",
        &["ca.crt", "user.crt", "user.key"],
    )
    .await;
    let scram_dir = write_secret(&node, &secrets, "scram-app", &["password"]).await;
    let ca = secret_bytes(&secrets, &format!("{SECURED}-cluster-ca-cert"), "ca.crt").await;
    std::fs::write(scram_dir.join("ca.crt"), ca).expect("write ca.crt");
    let domain = format!("{}.svc.cluster.local", ns.name);
    let tls = UserClient {
        name: "tls-app",
        topic: "tls-orders",
        connection: format!(
            "-b {SECURED}-bootstrap.{domain}:9092 -X security.protocol=SSL -X ssl.ca.location={0}/ca.crt -X ssl.certificate.location={0}/user.crt -X ssl.key.location={0}/user.key",
            tls_dir.display()
        ),
    };
    let scram = UserClient {
        name: "scram-app",
        topic: "scram-orders",
        connection: format!(
            "-b {SECURED}-broker-0.{SECURED}-brokers.{domain}:9094 -X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=scram-app -X sasl.password=$(cat {0}/password) -X ssl.ca.location={0}/ca.crt",
            scram_dir.display()
        ),
    };
    let clients = Clients::Local {
        node: &node,
        running: Mutex::new(BTreeMap::new()),
    };

    for (user, other) in [(&tls, &scram), (&scram, &tls)] {
        clients
            .run(&format!("{}-produce", user.name), &user.produce(user.topic))
            .await;
        let read = clients
            .run(&format!("{}-consume", user.name), &user.consume(user.topic))
            .await;
        let mut numbers: Vec<u32> = read.lines().filter_map(|l| l.trim().parse().ok()).collect();
        numbers.sort_unstable();
        assert_eq!(
            numbers,
            (1..=50).collect::<Vec<_>>(),
            "{} read back {read}",
            user.name
        );
        let refused = format!("{}-produce-{}", user.name, other.topic);
        assert_refused_by(&clients, &refused, &user.produce(other.topic), "authoriz").await;
        let refused = format!("{}-consume-{}", user.name, other.topic);
        assert_refused_by(&clients, &refused, &user.consume(other.topic), "authoriz").await;
        eprintln!(
            "{}: 50 records produced and read back on {}, refused on {}",
            user.name, user.topic, other.topic
        );
    }

    // Deleting a KafkaUser revokes it: the SCRAM login fails, the TLS
    // user's certificate still connects but its ACLs are gone.
    for user in [&scram, &tls] {
        let started = Instant::now();
        users
            .delete(user.name, &DeleteParams::default())
            .await
            .expect("delete the KafkaUser");
        wait_for(
            &format!("KafkaUser {} deleted", user.name),
            Duration::from_secs(120),
            || async { users.get_opt(user.name).await.ok()?.is_none().then_some(()) },
        )
        .await;
        let expected = if user.name == "scram-app" {
            "authenticat"
        } else {
            "authoriz"
        };
        let name = format!("{}-revoked", user.name);
        assert_refused_by(&clients, &name, &user.produce(user.topic), expected).await;
        eprintln!(
            "{}: refused ({expected}...) {:.1} s after its KafkaUser was deleted",
            user.name,
            started.elapsed().as_secs_f64()
        );
    }
    kubelet.stop().await;
}

/// A KafkaUser of authentication `kind` allowed to produce to and
/// consume `topic` (with consumer groups named after it).
fn user_yaml(user: &str, kind: &str, topic: &str) -> String {
    format!(
        "apiVersion: rivulet.dev/v1alpha1
kind: KafkaUser
metadata:
  name: {user}
spec:
  cluster: {SECURED}
  authentication:
    type: {kind}
  authorization:
    type: simple
    acls:
      - resource:
          type: topic
          name: {topic}
        operations: [Read, Write, Describe]
      - resource:
          type: group
          name: {user}
          patternType: prefix
        operations: [Read]
"
    )
}

fn ready_condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn secret_bytes(secrets: &Api<Secret>, name: &str, key: &str) -> Vec<u8> {
    let secret = wait_for(
        &format!("Secret {name}"),
        Duration::from_secs(60),
        || async { secrets.get_opt(name).await.ok()? },
    )
    .await;
    secret
        .data
        .and_then(|d| d.get(key).cloned())
        .unwrap_or_else(|| panic!("Secret {name} has no {key}"))
        .0
}

/// Writes `keys` of the Secret `name` into a directory of the node's.
async fn write_secret(
    node: &LocalNode,
    secrets: &Api<Secret>,
    name: &str,
    keys: &[&str],
) -> PathBuf {
    let dir = node.path(&format!("client-{name}"));
    std::fs::create_dir_all(&dir).expect("client directory");
    for key in keys {
        let bytes = secret_bytes(secrets, name, key).await;
        std::fs::write(dir.join(key), bytes).expect("write a Secret key");
    }
    dir
}

/// Runs `script`, which must fail with `expected` (lowercase) in its
/// output.
async fn assert_refused_by(clients: &Clients<'_>, name: &str, script: &str, expected: &str) {
    clients.start(name, script).await;
    let (ok, output) = clients.finish(name).await;
    assert!(
        !ok && output.to_lowercase().contains(expected),
        "client {name} should have been refused ({expected}...): succeeded {ok}, output: {output}"
    );
}
