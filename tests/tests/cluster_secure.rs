//! A three-broker `rivulet dev` cluster whose broker-to-broker traffic is
//! secured: replication over SASL_SSL (SCRAM-SHA-512 login of user
//! `broker`, leaders' certificates verified against the CA and the
//! advertised host) and the controller quorum over mutual TLS. Clients use
//! SASL_SSL too (confluent-kafka with librdkafka's defaults: acks=all,
//! idempotence). ACLs are on, with the brokers' user `broker` a super user,
//! as a Kafka cluster with an authorizer runs.
//!
//! A partition leader is killed with `kill -9` under the producer: no
//! acknowledged record is lost or duplicated, and the restarted broker
//! rejoins every ISR over the secured links. Then the security is shown
//! to apply: a broker restarted with a wrong inter-broker password fails
//! its logins at the leaders and stays out of the ISRs, and a broker whose
//! controller certificate comes from another CA is refused by the quorum.

#[allow(dead_code)]
#[path = "cluster_failover/clients.rs"]
mod clients;

use std::{
    collections::BTreeMap,
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use clients::{verify, StreamProducer};
use rivulet_tests::{
    certs::TestPki,
    cluster::DevCluster,
    cluster_checks::{metric_over, poll_until},
    metrics, require_py, unique_topic,
};
use rivulet_wire::client::{Client, ClientSecurity, DEFAULT_CLIENT_ID};
use serde_json::json;

/// Bound on fencing, elections and catching up (see cluster_failover.rs).
const FAILOVER_BOUND: Duration = Duration::from_secs(30);

const PARTITIONS: i32 = 6;

const UNDER_REPLICATED: &str = "kafka_server_replicamanager_underreplicatedpartitions";
const FAILED_AUTH: &str = "kafka_server_socket_server_metrics_failed_authentication_total";

fn scram_login(user: &str, password: &str) -> String {
    format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required \
         username=\"{user}\" password=\"{password}\";"
    )
}

/// The inter-broker login's JAAS key (the Kafka listener `dev` names
/// PLAINTEXT, mapped to SASL_SSL here).
const LOGIN_KEY: &str = "listener.name.plaintext.scram-sha-512.sasl.jaas.config";

/// The clients' properties (librdkafka's names, which the Rust client takes too).
fn client_props(ca: &Path) -> BTreeMap<String, String> {
    [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", "alice"),
        ("sasl.password", "alice-secret"),
        ("ssl.ca.location", ca.to_str().expect("utf-8 path")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn start_cluster(pki: &TestPki, dir: &Path) -> DevCluster {
    let peer = pki.peer("broker");
    let props = client_props(&pki.ca_file());
    let command_config = dir.join("client.properties");
    let text: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&command_config, text).expect("write client.properties");
    let keystore = peer.keystore.display().to_string();
    let ca = pki.ca_file().display().to_string();
    let login = scram_login("broker", "broker-secret");
    let configs: &[(&str, &str)] = &[
        (
            "listener.security.protocol.map",
            "PLAINTEXT:SASL_SSL,CONTROLLER:SSL",
        ),
        ("ssl.keystore.location", &keystore),
        ("ssl.truststore.location", &ca),
        ("sasl.enabled.mechanisms", "SCRAM-SHA-512"),
        ("sasl.mechanism.inter.broker.protocol", "SCRAM-SHA-512"),
        (LOGIN_KEY, &login),
        ("broker.session.timeout.ms", "3000"),
        ("broker.heartbeat.interval.ms", "500"),
        ("replica.lag.time.max.ms", "4000"),
        ("offsets.topic.num.partitions", "3"),
        ("auto.leader.rebalance.enable", "false"),
        // ACLs on: followers fetch as `broker`, which must be let in.
        (
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        ),
        ("super.users", "User:broker;User:alice"),
    ];
    configs
        .iter()
        .fold(DevCluster::builder(3), |b, (k, v)| b.config(k, v))
        .arg("--add-scram")
        .arg("SCRAM-SHA-512=[name=broker,password=broker-secret]")
        .arg("--add-scram")
        .arg("SCRAM-SHA-512=[name=alice,password=alice-secret]")
        .arg("--command-config")
        .arg(command_config.to_str().expect("utf-8 path"))
        .start()
}

/// A SASL_SSL admin client of the surviving brokers `ids`.
struct Admin {
    rt: tokio::runtime::Runtime,
    security: ClientSecurity,
}

impl Admin {
    fn new(ca: &Path) -> Admin {
        Admin {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            security: ClientSecurity::from_properties(&client_props(ca)).expect("client props"),
        }
    }

    fn client(&self, cluster: &DevCluster, ids: &[i32]) -> Result<Client, String> {
        let bootstrap: Vec<String> = ids
            .iter()
            .map(|id| cluster.kafka_addr(*id).to_string())
            .collect();
        self.rt
            .block_on(Client::connect_secure(
                &bootstrap.join(","),
                DEFAULT_CLIENT_ID,
                self.security.clone(),
            ))
            .map_err(|e| e.to_string())
    }

    fn create_topic(&self, cluster: &DevCluster, topic: &str) {
        let configs = BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())]);
        poll_until(FAILOVER_BOUND, "topic created over SASL_SSL", || {
            let mut client = self.client(cluster, &cluster.broker_ids())?;
            self.rt
                .block_on(client.create_topics(topic, PARTITIONS, 3, configs.clone()))
                .map_err(|e| e.to_string())
        });
    }

    /// Partition -> (leader, ISR), as the brokers `ids` report it.
    fn partitions(
        &self,
        cluster: &DevCluster,
        ids: &[i32],
        topic: &str,
    ) -> Result<BTreeMap<i32, (i32, Vec<i32>)>, String> {
        let mut client = self.client(cluster, ids)?;
        let md = self
            .rt
            .block_on(client.metadata(Some(vec![topic.to_string()])))
            .map_err(|e| e.to_string())?;
        let t = md.topics.first().ok_or("no topic in Metadata")?;
        let parts: BTreeMap<i32, (i32, Vec<i32>)> = t
            .partitions
            .iter()
            .map(|p| (p.partition, (p.leader, p.isr.clone())))
            .collect();
        if parts.len() != PARTITIONS as usize {
            return Err(format!("partitions {parts:?}"));
        }
        Ok(parts)
    }
}

/// Failed authentications on `listener` summed over brokers `ids`.
fn failed_auth(cluster: &DevCluster, ids: &[i32], listener: &str) -> f64 {
    ids.iter()
        .map(|id| {
            let url = cluster.metrics_url(*id);
            let addr = url
                .trim_start_matches("http://")
                .trim_end_matches("/metrics");
            let (_, body) = metrics::http_get(addr, "/metrics").expect("scrape");
            metrics::find(
                &metrics::parse_samples(&body),
                FAILED_AUTH,
                &[("listener", listener)],
            )
            .iter()
            .map(|s| s.value)
            .sum::<f64>()
        })
        .sum()
}

/// Appends `key=value` to broker `id`'s config file (the last value wins),
/// for its next restart.
fn override_config(cluster: &DevCluster, id: i32, key: &str, value: &str) {
    let path = cluster
        .data_dir()
        .join(format!("broker-{id}"))
        .join("server.properties");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open server.properties");
    writeln!(file, "{key}={value}").expect("append to server.properties");
}

#[test]
fn replication_and_quorum_run_secured_through_a_leader_kill9() {
    require_py!("confluent_kafka");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(&dir.path().join("pki"), "Rivulet cluster CA");
    let mut cluster = start_cluster(&pki, dir.path());
    eprintln!("secured cluster ready after {:?}", started.elapsed());
    let all = cluster.broker_ids();
    let admin = Admin::new(&pki.ca_file());
    let topic = unique_topic("secure");
    admin.create_topic(&cluster, &topic);
    let (before, _) = poll_until(FAILOVER_BOUND, "every ISR full", || {
        let parts = admin.partitions(&cluster, &all, &topic)?;
        match parts.values().all(|(_, isr)| isr.len() == 3) {
            true => Ok(parts),
            false => Err(format!("{parts:?}")),
        }
    });

    // The scripts' clients get the clients' security through the
    // environment; every script this test runs uses the same.
    let props: serde_json::Map<String, serde_json::Value> = client_props(&pki.ca_file())
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    std::env::set_var(
        "KAFKA_CLIENT_PROPS",
        serde_json::Value::from(props).to_string(),
    );
    let mut producer = StreamProducer::start(
        &cluster.bootstrap(),
        &topic,
        0,
        dir.path(),
        "secure-producer",
    );
    producer.wait_everywhere(PARTITIONS, 300);

    // Kill the leader of partition 0 under the producer.
    let victim = before[&0].0;
    let victim_parts: Vec<i32> = before
        .iter()
        .filter(|(_, (leader, _))| *leader == victim)
        .map(|(p, _)| *p)
        .collect();
    let survivors: Vec<i32> = all.iter().copied().filter(|&b| b != victim).collect();
    cluster.kill9(victim);
    let killed = Instant::now();
    let last_before = producer.last_offsets();
    poll_until(FAILOVER_BOUND, "new leaders without the victim", || {
        let parts = admin.partitions(&cluster, &survivors, &topic)?;
        let moved = victim_parts
            .iter()
            .all(|p| parts[p].0 >= 0 && parts[p].0 != victim && !parts[p].1.contains(&victim));
        if moved {
            Ok(())
        } else {
            Err(format!("{parts:?}"))
        }
    });
    producer.wait_beyond(&victim_parts, &last_before, 50);
    eprintln!(
        "new leaders serve the producer {:?} after the kill",
        killed.elapsed()
    );
    cluster.restart(victim);
    let (_, took) = poll_until(
        FAILOVER_BOUND,
        "the restarted broker back in every ISR",
        || {
            let parts = admin.partitions(&cluster, &all, &topic)?;
            match parts.values().all(|(_, isr)| isr.len() == 3) {
                true => Ok(()),
                false => Err(format!("{parts:?}")),
            }
        },
    );
    eprintln!("broker {victim} back in every ISR {took:?} after its restart");
    producer.finish();
    verify(&cluster.bootstrap(), &topic, PARTITIONS, &[&producer]);
    poll_until(FAILOVER_BOUND, "no under-replicated partitions", || {
        let sum = metric_over(&cluster, &all, UNDER_REPLICATED)?;
        if sum == 0.0 {
            Ok(())
        } else {
            Err(format!("sum {sum}"))
        }
    });

    // A wrong inter-broker password: the leaders refuse the follower, which
    // stays out of the ISRs.
    let outsider = victim;
    let others = survivors;
    let refused_before = failed_auth(&cluster, &others, "PLAINTEXT");
    override_config(
        &cluster,
        outsider,
        LOGIN_KEY,
        &scram_login("broker", "not-the-password"),
    );
    cluster.restart(outsider);
    let (_, took) = poll_until(FAILOVER_BOUND, "the leaders refuse the wrong login", || {
        let refused = failed_auth(&cluster, &others, "PLAINTEXT");
        let parts = admin.partitions(&cluster, &others, &topic)?;
        let outside = parts.values().all(|(_, isr)| !isr.contains(&outsider));
        if refused > refused_before && outside {
            Ok(())
        } else {
            Err(format!("{refused} failed logins, partitions {parts:?}"))
        }
    });
    eprintln!("broker {outsider} out of every ISR {took:?} after a restart with a wrong password");
    std::thread::sleep(Duration::from_secs(3));
    let parts = admin.partitions(&cluster, &others, &topic).unwrap();
    assert!(
        parts.values().all(|(_, isr)| !isr.contains(&outsider)),
        "a broker with a wrong inter-broker password rejoined an ISR: {parts:?}"
    );

    // A controller certificate from another CA: the quorum refuses the
    // handshake (counted as a failed SSL authentication on CONTROLLER).
    let rogue_ca = TestPki::new(&dir.path().join("rogue"), "Another CA");
    let rogue = rogue_ca.peer("rogue");
    let quorum_refused_before = failed_auth(&cluster, &others, "CONTROLLER");
    override_config(
        &cluster,
        outsider,
        "listener.name.controller.ssl.keystore.location",
        &rogue.keystore.display().to_string(),
    );
    cluster.restart(outsider);
    poll_until(
        FAILOVER_BOUND,
        "the quorum refuses an untrusted peer",
        || {
            let refused = failed_auth(&cluster, &others, "CONTROLLER");
            if refused > quorum_refused_before {
                Ok(())
            } else {
                Err(format!("{refused} failed quorum handshakes"))
            }
        },
    );
    eprintln!("whole test took {:?}", started.elapsed());
}
