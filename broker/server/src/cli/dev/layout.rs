//! Where everything of a `rivulet dev` cluster goes: validated settings,
//! ports, each broker's `server.properties`, and `cluster.json`. All pure but
//! the few functions that touch the data directory or probe ports.

use std::{
    collections::BTreeMap,
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::DevArgs;
use crate::{cli::parse_kv, identity};

/// The file, in the data directory, that describes the running cluster.
pub const CLUSTER_FILE: &str = "cluster.json";

/// Validated settings: what the rest of `dev` works from instead of the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPlan {
    /// Number of brokers; node ids are `0..brokers`.
    pub brokers: u32,
    /// Number of controller quorum voters: brokers `0..voters`.
    pub voters: u32,
    /// Listen and advertised host of every broker.
    pub host: String,
    /// The data directory, absolute.
    pub dir: PathBuf,
    /// `--config` values, which replace generated keys.
    pub overrides: BTreeMap<String, String>,
    /// How long start-up may take.
    pub ready_timeout: Duration,
    /// `--add-scram` values for every broker.
    pub add_scram: Vec<String>,
    /// `--command-config`: the client properties of the readiness probe.
    pub client_properties: BTreeMap<String, String>,
    /// The cluster id: the one the directory's brokers were formatted
    /// with, or a new one for a new cluster.
    pub cluster_id: String,
    /// Whether the cluster is new: only then do the voters' directories
    /// found the quorum. A broker of an existing cluster whose directory
    /// was wiped joins it instead.
    pub new_cluster: bool,
}

impl DevPlan {
    /// Checks the flags; `dir` is the data directory already made absolute.
    pub fn new(args: &DevArgs, dir: PathBuf) -> anyhow::Result<DevPlan> {
        if args.brokers == 0 {
            bail!("--brokers must be at least 1");
        }
        let voters = voter_count(args.brokers, args.voters).map_err(anyhow::Error::msg)?;
        if args.host.is_empty() {
            bail!("--host must not be empty");
        }
        let client_properties = match &args.command_config {
            None => BTreeMap::new(),
            Some(path) => {
                let text =
                    fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
                let props = crate::cli::parse_properties(&text);
                rivulet_wire::client::ClientSecurity::from_properties(&props)
                    .with_context(|| format!("--command-config {}", path.display()))?;
                props
            }
        };
        Ok(DevPlan {
            brokers: args.brokers,
            voters,
            host: args.host.clone(),
            dir,
            overrides: parse_kv(&args.configs, "--config")?,
            ready_timeout: Duration::from_secs(args.ready_timeout),
            add_scram: args.add_scram.clone(),
            client_properties,
            cluster_id: String::new(),
            new_cluster: true,
        })
    }

    /// The cluster id of the brokers already in the directory (the first
    /// `meta.properties` found, or the id a cluster of an earlier release
    /// reported), if any: any one broker's data makes the cluster exist,
    /// whichever others were wiped.
    pub fn existing_cluster_id(&self) -> anyhow::Result<Option<String>> {
        let mut legacy = false;
        for id in 0..self.brokers {
            let data = self.broker_dir(id).join("data");
            if let Some(meta) = identity::MetaProperties::read(&data)? {
                return Ok(Some(meta.cluster_id));
            }
            let log = data.join(identity::METADATA_DIR).join("log");
            legacy |= fs::read_dir(&log).is_ok_and(|mut e| e.next().is_some());
        }
        Ok(legacy.then(|| identity::legacy_cluster_id(&self.voter_ids())))
    }

    /// The voters by id (addresses do not matter to the legacy id).
    fn voter_ids(&self) -> BTreeMap<i32, String> {
        (0..self.voters as i32)
            .map(|id| (id, String::new()))
            .collect()
    }

    /// `HOST:PORT`, with an IPv6 host in brackets.
    pub(super) fn addr(&self, port: u16) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }

    fn broker_dir(&self, id: u32) -> PathBuf {
        self.dir.join(format!("broker-{id}"))
    }
}

/// The quorum size: `requested`, or 1 below three brokers and 3 from there.
/// Only 1, 3 or 5 make sense (an odd count, so a majority survives failures),
/// and voters are brokers, so there cannot be more voters than brokers.
pub fn voter_count(brokers: u32, requested: Option<u32>) -> Result<u32, String> {
    let voters = requested.unwrap_or(if brokers < 3 { 1 } else { 3 });
    if ![1, 3, 5].contains(&voters) {
        return Err(format!(
            "--voters {voters}: a controller quorum has 1, 3 or 5 voters \
             (an odd number, so a majority survives a failure)"
        ));
    }
    if voters > brokers {
        return Err(format!(
            "--voters {voters} needs at least {voters} brokers, but --brokers is {brokers} \
             (the voters are the first {voters} brokers)"
        ));
    }
    Ok(voters)
}

/// The three ports of one broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerPorts {
    /// Kafka clients (listener `PLAINTEXT`).
    pub kafka: u16,
    /// The controller quorum's gRPC (listener `CONTROLLER`).
    pub controller: u16,
    /// HTTP `/metrics`.
    pub metrics: u16,
}

/// `cluster.json`: what tests and people need to find and restart brokers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFile {
    /// `HOST:PORT,...` of every broker's Kafka listener.
    pub bootstrap: String,
    /// One entry per broker, by node id.
    pub brokers: Vec<BrokerRecord>,
}

/// One broker in `cluster.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    /// Kafka's `node.id`.
    pub id: u32,
    /// Process id of the broker `dev` started (stale once it is restarted
    /// by someone else).
    pub pid: u32,
    /// Kafka listener port.
    pub kafka_port: u16,
    /// Controller quorum listener port.
    pub controller_port: u16,
    /// Metrics HTTP port.
    pub metrics_port: u16,
    /// Whether the broker is a controller quorum voter.
    pub voter: bool,
    /// Its `server.properties`.
    pub config_file: PathBuf,
    /// Its stdout and stderr, appended across restarts.
    pub log_file: PathBuf,
    /// The arguments after the program, to restart it identically.
    pub args: Vec<String>,
}

impl BrokerRecord {
    fn ports(&self) -> BrokerPorts {
        BrokerPorts {
            kafka: self.kafka_port,
            controller: self.controller_port,
            metrics: self.metrics_port,
        }
    }
}

/// Reads `cluster.json` from an earlier run, if there is one.
pub(super) fn read_cluster_file(dir: &Path) -> anyhow::Result<Option<ClusterFile>> {
    let path = dir.join(CLUSTER_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let file = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a `rivulet dev` cluster file; remove it (or the whole directory) \
             to start a new cluster",
            path.display()
        )
    })?;
    Ok(Some(file))
}

/// Writes `cluster.json` through a temporary file, so a reader never sees half.
pub(super) fn write_cluster_file(dir: &Path, file: &ClusterFile) -> anyhow::Result<()> {
    let path = dir.join(CLUSTER_FILE);
    let tmp = dir.join(format!("{CLUSTER_FILE}.tmp"));
    let mut text = serde_json::to_string_pretty(file).context("encode cluster.json")?;
    text.push('\n');
    fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))
}

/// The ports an earlier run on the same directory used. The quorum stored
/// its members' addresses, so they must not change; nor may the membership.
pub fn reuse_ports(plan: &DevPlan, previous: &ClusterFile) -> anyhow::Result<Vec<BrokerPorts>> {
    let path = plan.dir.join(CLUSTER_FILE);
    let count = previous.brokers.len();
    if count != plan.brokers as usize {
        bail!(
            "{} holds a {count}-broker cluster, not {}: run with --brokers {count}, \
             or use another --data-dir (or remove this one) for a new cluster",
            plan.dir.display(),
            plan.brokers
        );
    }
    let voters = previous.brokers.iter().filter(|b| b.voter).count();
    if voters != plan.voters as usize {
        bail!(
            "{} holds a cluster with {voters} controller voters, not {}: run with \
             --voters {voters}, or use another --data-dir (or remove this one) for a new cluster",
            plan.dir.display(),
            plan.voters
        );
    }
    let mut ports = Vec::with_capacity(count);
    for (id, record) in previous.brokers.iter().enumerate() {
        if record.id as usize != id {
            bail!(
                "{} lists broker {} where broker {id} belongs; remove it to start a new cluster",
                path.display(),
                record.id
            );
        }
        ports.push(record.ports());
    }
    Ok(ports)
}

/// Fails clearly when a remembered port is taken, most likely by a `dev`
/// still running on the same directory.
pub(super) fn check_free(plan: &DevPlan, ports: &[BrokerPorts]) -> anyhow::Result<()> {
    for (id, p) in ports.iter().enumerate() {
        for (what, port) in [
            ("Kafka", p.kafka),
            ("controller", p.controller),
            ("metrics", p.metrics),
        ] {
            if TcpListener::bind(plan.addr(port)).is_err() {
                bail!(
                    "port {port} (broker {id}'s {what} listener, kept from the earlier run in {}) \
                     is in use: is a `rivulet dev` on that directory still running?",
                    plan.dir.display()
                );
            }
        }
    }
    Ok(())
}

/// Three ports per broker that were free a moment ago. All are held until
/// all are picked, so none is handed out twice.
pub(super) fn fresh_ports(plan: &DevPlan) -> anyhow::Result<Vec<BrokerPorts>> {
    let held = (0..plan.brokers * 3)
        .map(|_| {
            TcpListener::bind(plan.addr(0))
                .with_context(|| format!("bind {} to pick a port", plan.addr(0)))
        })
        .collect::<anyhow::Result<Vec<TcpListener>>>()?;
    let picked = held
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect::<anyhow::Result<Vec<u16>>>()?;
    Ok(picked
        .chunks_exact(3)
        .map(|p| BrokerPorts {
            kafka: p[0],
            controller: p[1],
            metrics: p[2],
        })
        .collect())
}

/// `HOST:KAFKA_PORT,...` of all brokers.
pub(super) fn bootstrap(plan: &DevPlan, ports: &[BrokerPorts]) -> String {
    ports
        .iter()
        .map(|p| plan.addr(p.kafka))
        .collect::<Vec<_>>()
        .join(",")
}

/// The configs `dev` writes for broker `id`, in file order, before overrides.
pub fn generated_configs(plan: &DevPlan, id: u32, ports: &[BrokerPorts]) -> Vec<(String, String)> {
    let own = ports[id as usize];
    let listeners = format!(
        "PLAINTEXT://{},CONTROLLER://{}",
        plan.addr(own.kafka),
        plan.addr(own.controller)
    );
    let voters = ports
        .iter()
        .take(plan.voters as usize)
        .enumerate()
        .map(|(v, p)| format!("{v}@{}", plan.addr(p.controller)))
        .collect::<Vec<_>>()
        .join(",");
    let roles = if id < plan.voters {
        "broker,controller"
    } else {
        "broker"
    };
    let replication = plan.brokers.min(3).to_string();
    let data = plan.broker_dir(id).join("data");
    [
        ("node.id", id.to_string()),
        ("process.roles", roles.to_string()),
        ("listeners", listeners.clone()),
        ("advertised.listeners", listeners),
        (
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".to_string(),
        ),
        ("controller.listener.names", "CONTROLLER".to_string()),
        ("inter.broker.listener.name", "PLAINTEXT".to_string()),
        ("controller.quorum.voters", voters),
        ("cluster.id", plan.cluster_id.clone()),
        ("log.dirs", data.display().to_string()),
        ("default.replication.factor", replication.clone()),
        ("offsets.topic.replication.factor", replication),
        ("min.insync.replicas", plan.brokers.min(2).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `server.properties` of broker `id`: the generated configs the user did not
/// override, then the user's `--config` values.
pub fn server_properties(plan: &DevPlan, id: u32, ports: &[BrokerPorts]) -> String {
    let mut text = String::from(
        "# Written by `rivulet dev` on every start; change configs with its --config.\n",
    );
    for (key, value) in generated_configs(plan, id, ports) {
        if !plan.overrides.contains_key(&key) {
            text.push_str(&format!("{key}={value}\n"));
        }
    }
    if !plan.overrides.is_empty() {
        text.push_str("# --config\n");
        for (key, value) in &plan.overrides {
            text.push_str(&format!("{key}={value}\n"));
        }
    }
    text
}

/// Writes broker `id`'s directory and config; its pid is filled in at spawn.
pub(super) fn prepare_broker(
    plan: &DevPlan,
    id: u32,
    ports: &[BrokerPorts],
) -> anyhow::Result<BrokerRecord> {
    let dir = plan.broker_dir(id);
    let data = dir.join("data");
    fs::create_dir_all(&data).with_context(|| format!("create {}", dir.display()))?;
    // The format step of a new cluster: the initial voters may found the
    // quorum; every other broker joins it. A formatted directory is kept
    // as it is (and refused if it is another cluster's), one from an
    // earlier release is adopted by the broker itself.
    let legacy = data.join(identity::METADATA_DIR).join("log").exists()
        && identity::MetaProperties::read(&data)?.is_none();
    if !legacy {
        let voters: BTreeMap<i32, String> = ports
            .iter()
            .take(plan.voters as usize)
            .enumerate()
            .map(|(v, p)| (v as i32, plan.addr(p.controller)))
            .collect();
        let found = (plan.new_cluster && id < plan.voters).then_some(&voters);
        identity::format(&data, id as i32, &plan.cluster_id, found)
            .with_context(|| format!("format {}", data.display()))?;
    }
    let config_file = dir.join("server.properties");
    fs::write(&config_file, server_properties(plan, id, ports))
        .with_context(|| format!("write {}", config_file.display()))?;
    let own = ports[id as usize];
    Ok(BrokerRecord {
        id,
        pid: 0,
        kafka_port: own.kafka,
        controller_port: own.controller,
        metrics_port: own.metrics,
        voter: id < plan.voters,
        args: [
            "broker".to_string(),
            "--config-file".to_string(),
            config_file.display().to_string(),
            "--metrics-addr".to_string(),
            plan.addr(own.metrics),
        ]
        .into_iter()
        .chain(
            plan.add_scram
                .iter()
                .flat_map(|s| ["--add-scram".to_string(), s.clone()]),
        )
        .collect(),
        config_file,
        log_file: dir.join("broker.log"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(brokers: u32, voters: u32, overrides: &[(&str, &str)]) -> DevPlan {
        DevPlan {
            brokers,
            voters,
            host: "127.0.0.1".to_string(),
            dir: PathBuf::from("/dev-dir"),
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ready_timeout: Duration::from_secs(60),
            add_scram: Vec::new(),
            client_properties: BTreeMap::new(),
            cluster_id: "dev-test".to_string(),
            new_cluster: true,
        }
    }

    fn ports(n: u16) -> Vec<BrokerPorts> {
        (0..n)
            .map(|i| BrokerPorts {
                kafka: 9000 + i,
                controller: 9100 + i,
                metrics: 9200 + i,
            })
            .collect()
    }

    #[test]
    fn voters_default_by_cluster_size() {
        assert_eq!(voter_count(1, None), Ok(1));
        assert_eq!(voter_count(2, None), Ok(1));
        assert_eq!(voter_count(3, None), Ok(3));
        assert_eq!(voter_count(7, None), Ok(3));
        assert_eq!(voter_count(5, Some(5)), Ok(5));
    }

    #[test]
    fn voters_must_be_odd_and_fit() {
        let even = voter_count(2, Some(2)).unwrap_err();
        assert!(even.contains("1, 3 or 5"), "{even}");
        let too_many = voter_count(3, Some(5)).unwrap_err();
        assert!(too_many.contains("--brokers is 3"), "{too_many}");
        assert!(voter_count(9, Some(7)).is_err());
    }

    #[test]
    fn properties_for_voter_and_plain_broker() {
        let p = plan(4, 3, &[]);
        let ports = ports(4);
        let voter = crate::cli::parse_properties(&server_properties(&p, 0, &ports));
        assert_eq!(voter["node.id"], "0");
        assert_eq!(voter["process.roles"], "broker,controller");
        assert_eq!(
            voter["listeners"],
            "PLAINTEXT://127.0.0.1:9000,CONTROLLER://127.0.0.1:9100"
        );
        assert_eq!(voter["advertised.listeners"], voter["listeners"]);
        assert_eq!(
            voter["controller.quorum.voters"],
            "0@127.0.0.1:9100,1@127.0.0.1:9101,2@127.0.0.1:9102"
        );
        assert_eq!(voter["log.dirs"], "/dev-dir/broker-0/data");
        assert_eq!(voter["default.replication.factor"], "3");
        assert_eq!(voter["offsets.topic.replication.factor"], "3");
        assert_eq!(voter["min.insync.replicas"], "2");
        let plain = crate::cli::parse_properties(&server_properties(&p, 3, &ports));
        assert_eq!(plain["process.roles"], "broker");
        assert_eq!(
            plain["controller.quorum.voters"],
            voter["controller.quorum.voters"]
        );
    }

    #[test]
    fn single_broker_replicates_once() {
        let props =
            crate::cli::parse_properties(&server_properties(&plan(1, 1, &[]), 0, &ports(1)));
        assert_eq!(props["default.replication.factor"], "1");
        assert_eq!(props["min.insync.replicas"], "1");
        assert_eq!(props["controller.quorum.voters"], "0@127.0.0.1:9100");
    }

    #[test]
    fn overrides_replace_generated_keys() {
        let p = plan(
            3,
            3,
            &[("min.insync.replicas", "1"), ("num.partitions", "6")],
        );
        let text = server_properties(&p, 1, &ports(3));
        assert_eq!(text.matches("min.insync.replicas=").count(), 1, "{text}");
        let props = crate::cli::parse_properties(&text);
        assert_eq!(props["min.insync.replicas"], "1");
        assert_eq!(props["num.partitions"], "6");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let mut p = plan(1, 1, &[]);
        p.host = "::1".to_string();
        assert_eq!(p.addr(9092), "[::1]:9092");
        assert_eq!(bootstrap(&p, &ports(1)), "[::1]:9000");
    }

    fn recorded(p: &DevPlan, ports: &[BrokerPorts]) -> ClusterFile {
        let brokers = (0..p.brokers)
            .map(|id| {
                let own = ports[id as usize];
                BrokerRecord {
                    id,
                    pid: 1,
                    kafka_port: own.kafka,
                    controller_port: own.controller,
                    metrics_port: own.metrics,
                    voter: id < p.voters,
                    config_file: PathBuf::from("c"),
                    log_file: PathBuf::from("l"),
                    args: Vec::new(),
                }
            })
            .collect();
        ClusterFile {
            bootstrap: bootstrap(p, ports),
            brokers,
        }
    }

    #[test]
    fn earlier_ports_are_kept() {
        let p = plan(3, 3, &[]);
        let file = recorded(&p, &ports(3));
        let json = serde_json::to_string_pretty(&file).unwrap();
        let back: ClusterFile = serde_json::from_str(&json).unwrap();
        assert_eq!(reuse_ports(&p, &back).unwrap(), ports(3));
    }

    #[test]
    fn another_shape_is_refused() {
        let file = recorded(&plan(3, 3, &[]), &ports(3));
        let err = reuse_ports(&plan(2, 1, &[]), &file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("3-broker cluster"), "{err}");
        let err = reuse_ports(&plan(3, 1, &[]), &file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("3 controller voters"), "{err}");
    }
}
