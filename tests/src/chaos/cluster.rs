//! A Rivulet cluster whose brokers each run in their own network namespace
//! of a [`PrivateNet`], so links between them can fail.
//!
//! The brokers are set up as `rivulet dev` sets up its own (combined
//! broker+controller voters, the same replication defaults), with `rivulet
//! format` run for each data directory and every broker started with `ip
//! netns exec`, which execs it: the child's pid is the broker's, so SIGKILL
//! and SIGSTOP reach it directly. Every broker listens on its namespace's
//! address (Kafka on 9092, the quorum on 9093, metrics on 9100).

use std::{
    fs::{self, OpenOptions},
    path::PathBuf,
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::{
    kafka::{connect_retry, KafkaConn},
    netns::PrivateNet,
    process::run_cmd,
    tools::rivulet_bin,
};

/// The ports every broker uses on its own address.
const KAFKA_PORT: u16 = 9092;
const CONTROLLER_PORT: u16 = 9093;
const METRICS_PORT: u16 = 9100;
/// How long a fresh cluster may take until every broker sees every other.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Each broker's storage fault rules, beside its config (empty: none).
const DISK_FAULTS: &str = "disk-faults";

/// One broker's files and process.
struct NetBroker {
    /// Extra environment of this broker's process (e.g. a fake clock).
    env: Vec<(String, String)>,
    config_file: PathBuf,
    log_file: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// A cluster of brokers in network namespaces; see the module docs. Dropping
/// it kills every broker and removes the namespaces.
pub struct NetCluster {
    // Field order is drop order: brokers die before their namespaces go.
    brokers: Vec<NetBroker>,
    net: PrivateNet,
    dir: TempDir,
}

impl NetCluster {
    /// Builds the network (moving the calling thread into the test
    /// namespace, see [`PrivateNet::create`]) and starts `brokers` brokers,
    /// the first `voters` of them quorum voters, each with the generated
    /// configs plus `configs`. Returns once every broker lists all of them.
    pub fn start(
        brokers: usize,
        voters: usize,
        configs: &[(String, String)],
    ) -> Result<NetCluster, String> {
        Self::start_with_env(brokers, voters, configs, &|_| Vec::new())
    }

    /// [`NetCluster::start`] with extra environment variables for each
    /// broker's process, by node id (kept across restarts).
    pub fn start_with_env(
        brokers: usize,
        voters: usize,
        configs: &[(String, String)],
        env: &dyn Fn(usize) -> Vec<(String, String)>,
    ) -> Result<NetCluster, String> {
        let net = PrivateNet::create(brokers)?;
        let dir = tempfile::Builder::new()
            .prefix("rivulet-chaos-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let cluster_id = rivulet_wire::uuid_text::encode(&uuid_bytes());
        let voter_list = (0..voters)
            .map(|v| format!("{v}@{}:{CONTROLLER_PORT}", PrivateNet::node_addr(v)))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = NetCluster {
            brokers: Vec::new(),
            net,
            dir,
        };
        for id in 0..brokers {
            let mut broker =
                cluster.prepare(id, brokers, voters, &voter_list, &cluster_id, configs)?;
            broker.env = env(id);
            cluster.brokers.push(broker);
            cluster.spawn(id)?;
        }
        cluster.wait_ready()?;
        Ok(cluster)
    }

    fn prepare(
        &self,
        id: usize,
        brokers: usize,
        voters: usize,
        voter_list: &str,
        cluster_id: &str,
        configs: &[(String, String)],
    ) -> Result<NetBroker, String> {
        let home = self.dir.path().join(format!("broker-{id}"));
        let data = home.join("data");
        fs::create_dir_all(&data).map_err(|e| format!("create {}: {e}", data.display()))?;
        let addr = PrivateNet::node_addr(id);
        let listeners =
            format!("PLAINTEXT://{addr}:{KAFKA_PORT},CONTROLLER://{addr}:{CONTROLLER_PORT}");
        let roles = if id < voters {
            "broker,controller"
        } else {
            "broker"
        };
        let replication = brokers.min(3).to_string();
        let mut props: Vec<(String, String)> = [
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
            ("controller.quorum.voters", voter_list.to_string()),
            ("cluster.id", cluster_id.to_string()),
            ("log.dirs", data.display().to_string()),
            ("default.replication.factor", replication.clone()),
            ("offsets.topic.replication.factor", replication.clone()),
            ("transaction.state.log.replication.factor", replication),
            ("min.insync.replicas", brokers.min(2).to_string()),
            (
                "storage.fault.injection.file",
                home.join(DISK_FAULTS).display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (key, value) in configs {
            props.retain(|(k, _)| k != key);
            props.push((key.clone(), value.clone()));
        }
        fs::write(home.join(DISK_FAULTS), "").map_err(|e| format!("write disk faults: {e}"))?;
        let text: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let config_file = home.join("server.properties");
        fs::write(&config_file, text).map_err(|e| format!("write config: {e}"))?;

        let mut format = std::process::Command::new(rivulet_bin());
        // `=`: a cluster id may start with `-`, which would read as a flag.
        format
            .args(["format", "--data-dir"])
            .arg(&data)
            .args(["--node-id", &id.to_string()])
            .arg(format!("--cluster-id={cluster_id}"));
        if id < voters {
            format.args(["--bootstrap", voter_list]);
        }
        let out = run_cmd(&mut format, None, Duration::from_secs(30));
        if !out.status.success() {
            return Err(format!("rivulet format of broker {id}: {}", out.stderr));
        }
        Ok(NetBroker {
            env: Vec::new(),
            config_file,
            log_file: home.join("broker.log"),
            child: None,
            paused: false,
        })
    }

    fn spawn(&mut self, id: usize) -> Result<(), String> {
        let broker = &self.brokers[id];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&broker.log_file)
            .map_err(|e| format!("open {}: {e}", broker.log_file.display()))?;
        let err = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let metrics = format!("{}:{METRICS_PORT}", PrivateNet::node_addr(id));
        let bin = rivulet_bin();
        let child = self
            .net
            .command(id, bin.to_str().expect("utf-8 binary path"))
            .arg("broker")
            .arg("--config-file")
            .arg(&broker.config_file)
            .args(["--metrics-addr", &metrics])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start broker {id}: {e}"))?;
        let broker = &mut self.brokers[id];
        broker.child = Some(child);
        broker.paused = false;
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let n = self.brokers.len();
        for id in 0..n {
            loop {
                let listed = KafkaConn::connect(&self.kafka_addr(id))
                    .and_then(|mut c| c.metadata(Some(&[])))
                    .map(|md| md.brokers.len());
                match listed {
                    Ok(seen) if seen == n => break,
                    _ if Instant::now() >= deadline => {
                        return Err(format!(
                            "broker {id} does not list {n} brokers after {READY_TIMEOUT:?} \
                             (last: {listed:?})\n{}",
                            self.log_tail(id)
                        ))
                    }
                    _ => thread::sleep(Duration::from_millis(200)),
                }
            }
        }
        Ok(())
    }

    /// The network, to inject link faults.
    pub fn net(&self) -> &PrivateNet {
        &self.net
    }

    /// Node ids, ascending (node id = index in the network).
    pub fn ids(&self) -> Vec<usize> {
        (0..self.brokers.len()).collect()
    }

    /// `ADDR:9092,...` of every broker.
    pub fn bootstrap(&self) -> String {
        self.ids()
            .into_iter()
            .map(|id| self.kafka_addr(id))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Broker `id`'s Kafka address.
    pub fn kafka_addr(&self, id: usize) -> String {
        format!("{}:{KAFKA_PORT}", PrivateNet::node_addr(id))
    }

    /// Broker `id`'s metrics URL.
    pub fn metrics_url(&self, id: usize) -> String {
        format!(
            "http://{}:{METRICS_PORT}/metrics",
            PrivateNet::node_addr(id)
        )
    }

    /// A raw connection to broker `id`, retrying for up to `timeout`.
    pub fn client(&self, id: usize, timeout: Duration) -> KafkaConn {
        connect_retry(&self.kafka_addr(id), timeout)
    }

    /// Whether broker `id`'s process is alive (paused counts as alive).
    pub fn is_running(&mut self, id: usize) -> bool {
        match &mut self.brokers[id].child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether broker `id` is stopped with SIGSTOP.
    pub fn is_paused(&self, id: usize) -> bool {
        self.brokers[id].paused
    }

    fn signal(&self, id: usize, signal: i32) {
        if let Some(child) = &self.brokers[id].child {
            // SAFETY: kill() only sends a signal to our own child's pid.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill9(&mut self, id: usize) {
        if let Some(mut child) = self.brokers[id].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.brokers[id].paused = false;
    }

    /// SIGSTOP: sockets stay open, nothing is answered.
    pub fn pause(&mut self, id: usize) {
        self.signal(id, libc::SIGSTOP);
        self.brokers[id].paused = true;
    }

    /// SIGCONT after [`NetCluster::pause`].
    pub fn resume(&mut self, id: usize) {
        self.signal(id, libc::SIGCONT);
        self.brokers[id].paused = false;
    }

    /// Replaces broker `id`'s storage fault rules (the format of the
    /// broker's `storage.fault.injection.file`; empty heals). The broker
    /// applies them within its poll interval.
    pub fn disk_faults(&self, id: usize, rules: &str) -> Result<(), String> {
        let file = self
            .dir
            .path()
            .join(format!("broker-{id}"))
            .join(DISK_FAULTS);
        // Written whole and renamed, so the broker never reads half a rule.
        let staged = file.with_extension("next");
        fs::write(&staged, rules).map_err(|e| format!("write {}: {e}", staged.display()))?;
        fs::rename(&staged, &file).map_err(|e| format!("rename {}: {e}", file.display()))
    }

    /// Starts broker `id` again (killing it first if it still runs).
    pub fn restart(&mut self, id: usize) -> Result<(), String> {
        self.kill9(id);
        self.spawn(id)
    }

    /// The last lines of broker `id`'s log.
    pub fn log_tail(&self, id: usize) -> String {
        let text = fs::read_to_string(&self.brokers[id].log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "--- broker {id} log (tail) ---\n{}",
            lines[from..].join("\n")
        )
    }

    /// Everything broker `id` logged, across restarts.
    pub fn log(&self, id: usize) -> String {
        fs::read_to_string(&self.brokers[id].log_file).unwrap_or_default()
    }

    /// The cluster's working directory (configs, data, logs).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Keeps the working directory after the cluster is dropped.
    pub fn keep_dir(self) -> PathBuf {
        let NetCluster { brokers, net, dir } = self;
        drop(brokers);
        drop(net);
        dir.keep()
    }
}

impl Drop for NetBroker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            if self.paused {
                // SAFETY: signals our own child.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGCONT);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sixteen bytes for a cluster id, from the clock and pid (ids only need to
/// differ between runs).
fn uuid_bytes() -> [u8; 16] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mixed = nanos ^ (u128::from(std::process::id()) << 64);
    mixed.to_le_bytes()
}
