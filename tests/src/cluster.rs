//! A whole `rivulet dev` cluster for one test, with the handles fault tests
//! need: kill, pause, resume, terminate and restart single brokers.
//!
//! [`DevCluster`] runs `rivulet dev` in a temporary directory, waits for the
//! bootstrap line it prints once every broker sees every other, and reads
//! `cluster.json` for each broker's ports, pid, log and exact arguments.
//! `dev` owns the brokers it started (it reaps them and logs their exits but
//! never restarts them); a broker this harness restarts is the harness's own
//! child from then on. Dropping the cluster kills everything left, so a
//! failing test leaves no process behind.

use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use tempfile::TempDir;

use crate::{
    broker::{log_excerpt, START_TIMEOUT, STOP_TIMEOUT},
    kafka::{connect_retry, KafkaConn},
    tools::rivulet_bin,
};

/// How long `rivulet dev` may take to report a ready cluster by default.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times a first start is retried when a port `dev` picked was
/// taken by someone else before its broker bound it.
const PORT_RETRIES: usize = 3;

/// Options for a cluster before it starts.
#[derive(Debug, Clone)]
pub struct DevClusterBuilder {
    brokers: usize,
    voters: Option<usize>,
    configs: Vec<String>,
    args: Vec<String>,
    ready_timeout: Duration,
}

impl DevClusterBuilder {
    /// Sets `--voters` (default: `dev`'s, 1 below three brokers, else 3).
    pub fn voters(mut self, voters: usize) -> Self {
        self.voters = Some(voters);
        self
    }

    /// Adds a `--config key=value` for every broker.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.configs.push(format!("{key}={value}"));
        self
    }

    /// Adds a `dev` argument (e.g. `--add-scram`, `--command-config`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Sets `--ready-timeout` (default [`READY_TIMEOUT`]).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts `rivulet dev` and waits until it reports the cluster ready;
    /// panics with `dev`'s output and the brokers' logs if it does not.
    pub fn start(self) -> DevCluster {
        let mut last = String::new();
        for _ in 0..PORT_RETRIES {
            let slot = ClusterSlot::acquire();
            let workdir = tempfile::Builder::new()
                .prefix("rivulet-dev-test-")
                .tempdir()
                .expect("create a temporary directory");
            let mut cluster = DevCluster {
                options: self.clone(),
                dir: workdir.path().join("cluster"),
                dev_stderr: workdir.path().join("dev.stderr"),
                workdir: Some(workdir),
                dev: None,
                bootstrap: String::new(),
                brokers: BTreeMap::new(),
                _slot: slot,
            };
            match cluster.launch() {
                Ok(()) => return cluster,
                Err(_) if cluster.dev_stderr().contains("in use") => {
                    last = cluster.dev_stderr();
                }
                Err(failure) => cluster.fail(&failure),
            }
        }
        panic!("rivulet dev could not bind its ports in {PORT_RETRIES} tries\n{last}");
    }
}

/// One broker as `cluster.json` describes it, plus what the harness did to it.
struct Broker {
    pid: u32,
    kafka_port: u16,
    metrics_port: u16,
    log_file: PathBuf,
    args: Vec<String>,
    /// The process, once the harness restarted this broker itself.
    owned: Option<Child>,
    /// Stopped with SIGSTOP and not yet continued.
    paused: bool,
}

/// A running `rivulet dev` cluster; see the module docs.
pub struct DevCluster {
    options: DevClusterBuilder,
    /// `dev`'s `--data-dir`.
    dir: PathBuf,
    /// `dev`'s stderr, appended across `dev` runs.
    dev_stderr: PathBuf,
    /// Holds `dir` and `dev_stderr`; removed on drop.
    workdir: Option<TempDir>,
    dev: Option<Child>,
    bootstrap: String,
    brokers: BTreeMap<i32, Broker>,
    /// This test's share of the machine; released on drop.
    _slot: ClusterSlot,
}

/// How many clusters one test binary runs at once: each is several broker
/// processes plus clients, and timing-based cluster behaviour (heartbeats,
/// ISR lag) degrades when a 2-core machine runs many of them. Override with
/// `RIVULET_TEST_CLUSTERS`.
fn max_clusters() -> usize {
    std::env::var("RIVULET_TEST_CLUSTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2)
}

static RUNNING: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// A permit to run one cluster in this process.
struct ClusterSlot;

impl ClusterSlot {
    fn acquire() -> ClusterSlot {
        let (count, freed) = &RUNNING;
        let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= max_clusters() {
            running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        ClusterSlot
    }
}

impl Drop for ClusterSlot {
    fn drop(&mut self) {
        let (count, freed) = &RUNNING;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

impl DevCluster {
    /// Options for a cluster of `brokers` brokers.
    pub fn builder(brokers: usize) -> DevClusterBuilder {
        DevClusterBuilder {
            brokers,
            voters: None,
            configs: Vec::new(),
            args: Vec::new(),
            ready_timeout: READY_TIMEOUT,
        }
    }

    /// Starts `brokers` brokers with `configs` for each of them.
    pub fn start(brokers: usize, configs: &[(&str, &str)]) -> DevCluster {
        configs
            .iter()
            .fold(Self::builder(brokers), |b, (k, v)| b.config(k, v))
            .start()
    }

    /// The bootstrap string `dev` printed: `127.0.0.1:PORT,...`.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// Node ids of all brokers, ascending.
    pub fn broker_ids(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }

    /// Broker `id`'s Kafka listener.
    pub fn kafka_addr(&self, id: i32) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.broker(id).kafka_port))
    }

    /// A raw Kafka connection to broker `id` (retrying for up to 15 s).
    pub fn client(&self, id: i32) -> KafkaConn {
        connect_retry(&self.kafka_addr(id).to_string(), Duration::from_secs(15))
    }

    /// `http://127.0.0.1:PORT/metrics` of broker `id`.
    pub fn metrics_url(&self, id: i32) -> String {
        format!("http://127.0.0.1:{}/metrics", self.broker(id).metrics_port)
    }

    /// The process id of broker `id`'s latest process (running or not).
    pub fn pid(&self, id: i32) -> u32 {
        self.broker(id).pid
    }

    /// Whether broker `id`'s process is alive (a paused one is).
    pub fn is_running(&mut self, id: i32) -> bool {
        let broker = self.broker_mut(id);
        match &mut broker.owned {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => pid_alive(broker.pid),
        }
    }

    /// Kills broker `id` with SIGKILL, like a crash, and waits until it is
    /// gone. Does nothing if it is not running.
    pub fn kill9(&mut self, id: i32) {
        assert!(
            self.kill(id),
            "broker {id} survived SIGKILL for {STOP_TIMEOUT:?}"
        );
    }

    /// SIGKILL and wait; false if the process is somehow still there.
    fn kill(&mut self, id: i32) -> bool {
        if !self.is_running(id) {
            return true;
        }
        self.send(id, libc::SIGKILL);
        self.broker_mut(id).paused = false;
        self.wait_exit(id, STOP_TIMEOUT)
    }

    /// Stops broker `id` with SIGSTOP: it keeps its sockets but answers
    /// nothing, like a hung machine, until [`DevCluster::resume`].
    pub fn pause(&mut self, id: i32) {
        assert!(self.is_running(id), "broker {id} is not running");
        self.send(id, libc::SIGSTOP);
        self.broker_mut(id).paused = true;
    }

    /// Continues broker `id` after [`DevCluster::pause`].
    pub fn resume(&mut self, id: i32) {
        self.send(id, libc::SIGCONT);
        self.broker_mut(id).paused = false;
    }

    /// Sends SIGTERM to broker `id` and waits for it to exit (at most
    /// [`STOP_TIMEOUT`]; past that it is killed and the test fails).
    pub fn terminate(&mut self, id: i32) {
        assert!(self.is_running(id), "broker {id} is not running");
        if self.broker(id).paused {
            self.resume(id);
        }
        self.send(id, libc::SIGTERM);
        if !self.wait_exit(id, STOP_TIMEOUT) {
            self.kill9(id);
            self.fail(&format!(
                "broker {id} did not exit within {STOP_TIMEOUT:?} of SIGTERM"
            ));
        }
    }

    /// Starts broker `id` again with the arguments `dev` gave it (killing it
    /// first if it still runs), its output appended to the same log, and waits
    /// until its Kafka port accepts connections. The harness owns the new
    /// process: [`DevCluster::stop`] and drop end it.
    pub fn restart(&mut self, id: i32) {
        self.kill9(id);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn_broker(id) {
                Ok(()) => return,
                // The old process is gone, but its port may need a moment.
                Err(log) if log.contains("in use") && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(300))
                }
                Err(log) => self.fail(&format!("broker {id} did not restart\n{log}")),
            }
        }
    }

    /// Everything broker `id` printed, across restarts.
    pub fn log(&self, id: i32) -> String {
        std::fs::read_to_string(&self.broker(id).log_file).unwrap_or_default()
    }

    /// The directory `dev` runs in (`--data-dir`): `cluster.json`, and a
    /// `broker-N/` per broker with its `server.properties`, `data/` and log.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// What `rivulet dev` wrote on stderr so far.
    pub fn dev_stderr(&self) -> String {
        std::fs::read_to_string(&self.dev_stderr).unwrap_or_default()
    }

    /// The process id of `rivulet dev`, while it runs.
    pub fn dev_pid(&self) -> Option<u32> {
        self.dev.as_ref().map(Child::id)
    }

    /// Stops the cluster as a person would: SIGTERM to `dev`, which stops its
    /// brokers; brokers the harness restarted get SIGTERM too. Returns `dev`'s
    /// exit status. The data directory stays, for [`DevCluster::restart_dev`].
    pub fn stop(&mut self) -> ExitStatus {
        for id in self.broker_ids() {
            if self.broker(id).paused {
                self.resume(id);
            }
        }
        let mut dev = self.dev.take().expect("rivulet dev is not running");
        signal(dev.id(), libc::SIGTERM);
        // dev gives its brokers 30 s before killing them.
        let deadline = Instant::now() + STOP_TIMEOUT + Duration::from_secs(15);
        let status = loop {
            if let Ok(Some(status)) = dev.try_wait() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = dev.kill();
                let _ = dev.wait();
                self.fail("rivulet dev did not exit after SIGTERM");
            }
            thread::sleep(Duration::from_millis(20));
        };
        for id in self.broker_ids() {
            if self.broker(id).owned.is_some() && self.is_running(id) {
                self.terminate(id);
            }
        }
        status
    }

    /// Runs `rivulet dev` again on the same directory (stopping the cluster
    /// first if it runs), as a person restarting a whole cluster would.
    pub fn restart_dev(&mut self) {
        if self.dev.is_some() {
            self.stop();
        }
        if let Err(failure) = self.launch() {
            self.fail(&failure);
        }
    }

    fn broker(&self, id: i32) -> &Broker {
        self.brokers
            .get(&id)
            .unwrap_or_else(|| panic!("no broker {id} in this cluster"))
    }

    fn broker_mut(&mut self, id: i32) -> &mut Broker {
        self.brokers
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no broker {id} in this cluster"))
    }

    fn send(&mut self, id: i32, sig: libc::c_int) {
        let broker = self.broker_mut(id);
        // A child of ours is signalled only while unreaped, so its pid is its own.
        if let Some(child) = &mut broker.owned {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
        }
        signal(broker.pid, sig);
    }

    /// Waits until broker `id` has exited; false at the timeout.
    fn wait_exit(&mut self, id: i32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.is_running(id) {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if let Some(mut child) = self.broker_mut(id).owned.take() {
            let _ = child.wait();
        }
        true
    }

    /// Runs `dev`, reads the bootstrap line, loads `cluster.json`. On
    /// failure returns why; `dev`'s stderr has the details (and the failing
    /// broker's log tail when `dev` itself gave up).
    fn launch(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(rivulet_bin());
        cmd.arg("dev")
            .args(["--brokers", &self.options.brokers.to_string()])
            .arg("--data-dir")
            .arg(&self.dir)
            .args([
                "--ready-timeout",
                &self.options.ready_timeout.as_secs().to_string(),
            ]);
        if let Some(voters) = self.options.voters {
            cmd.args(["--voters", &voters.to_string()]);
        }
        for kv in &self.options.configs {
            cmd.args(["--config", kv]);
        }
        cmd.args(&self.options.args);
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.dev_stderr)
            .expect("open dev's stderr file");
        clean_env(&mut cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut dev = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let lines = read_lines(dev.stdout.take().expect("stdout is piped"));
        self.dev = Some(dev);
        // dev enforces --ready-timeout itself; this is a backstop.
        let wait = self.options.ready_timeout + Duration::from_secs(30);
        let deadline = Instant::now() + wait;
        let line = loop {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => break line,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(Duration::from_millis(50))
                }
            }
            let dev = self.dev.as_mut().expect("dev was just started");
            if let Ok(Some(status)) = dev.try_wait() {
                self.dev = None;
                return Err(format!(
                    "rivulet dev exited with {status} before the cluster was ready"
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "rivulet dev printed no bootstrap line within {wait:?}"
                ));
            }
        };
        self.load_cluster_file()?;
        if line.trim() != self.bootstrap {
            return Err(format!(
                "dev printed `{}` but cluster.json says `{}`",
                line.trim(),
                self.bootstrap
            ));
        }
        Ok(())
    }

    /// Reads `cluster.json`; harness-owned processes of an earlier `dev` run
    /// are forgotten only after they were stopped.
    fn load_cluster_file(&mut self) -> Result<(), String> {
        let path = self.dir.join("cluster.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let bad = |what: &str| format!("{}: {what}\n{text}", path.display());
        self.bootstrap = json["bootstrap"]
            .as_str()
            .ok_or_else(|| bad("no bootstrap"))?
            .to_string();
        let mut brokers = BTreeMap::new();
        for b in json["brokers"]
            .as_array()
            .ok_or_else(|| bad("no brokers"))?
        {
            let num = |key: &str| b[key].as_u64().ok_or_else(|| bad(key));
            let port = |key: &str| num(key).and_then(|p| u16::try_from(p).map_err(|_| bad(key)));
            let id = i32::try_from(num("id")?).map_err(|_| bad("id"))?;
            let args = b["args"]
                .as_array()
                .ok_or_else(|| bad("args"))?
                .iter()
                .map(|a| a.as_str().map(str::to_string).ok_or_else(|| bad("args")))
                .collect::<Result<_, _>>()?;
            let broker = Broker {
                pid: u32::try_from(num("pid")?).map_err(|_| bad("pid"))?,
                kafka_port: port("kafka_port")?,
                metrics_port: port("metrics_port")?,
                log_file: PathBuf::from(b["log_file"].as_str().ok_or_else(|| bad("log_file"))?),
                args,
                owned: None,
                paused: false,
            };
            brokers.insert(id, broker);
        }
        self.brokers = brokers;
        Ok(())
    }

    /// Spawns broker `id` from its recorded arguments and waits for its
    /// Kafka port; on failure returns its log excerpt.
    fn spawn_broker(&mut self, id: i32) -> Result<(), String> {
        let broker = self.broker_mut(id);
        let bin = rivulet_bin();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&broker.log_file)
            .expect("open the broker log");
        let _ = writeln!(
            log,
            "=== rivulet-tests: broker {id} restarted by the test ===\n$ {} {}",
            bin.display(),
            broker.args.join(" ")
        );
        let stderr = log.try_clone().expect("clone the log handle");
        let mut cmd = Command::new(&bin);
        cmd.args(&broker.args);
        let child = clean_env(&mut cmd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        broker.pid = child.id();
        broker.owned = Some(child);
        broker.paused = false;
        let addr = SocketAddr::from(([127, 0, 0, 1], broker.kafka_port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = broker.owned.as_mut().expect("just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                broker.owned = None;
                return Err(format!(
                    "exited during start-up ({status})\n{}",
                    log_excerpt(&broker.log_file)
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                broker.owned = None;
                return Err(format!(
                    "no connection on {addr} within {START_TIMEOUT:?}\n{}",
                    log_excerpt(&broker.log_file)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills everything and panics with `why`; drop then prints `dev`'s
    /// stderr and the brokers' logs.
    fn fail(&mut self, why: &str) -> ! {
        self.kill_all();
        panic!("{why} (rivulet dev's stderr and the broker logs follow)");
    }

    /// `dev`'s stderr and every broker's log excerpt.
    fn report(&self) -> String {
        let mut out = format!("=== rivulet dev stderr ===\n{}", self.dev_stderr());
        let mut id = 0;
        loop {
            let log = self.dir.join(format!("broker-{id}")).join("broker.log");
            if !log.exists() {
                return out;
            }
            out.push_str(&format!(
                "=== broker {id} log ({}) ===\n{}",
                log.display(),
                log_excerpt(&log)
            ));
            id += 1;
        }
    }

    /// SIGKILL to every broker and to `dev`, continuing paused ones first.
    fn kill_all(&mut self) {
        for id in self.broker_ids() {
            if self.broker(id).paused {
                self.resume(id);
            }
            self.kill(id);
        }
        if let Some(mut dev) = self.dev.take() {
            let _ = dev.kill();
            let _ = dev.wait();
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.kill_all();
        if thread::panicking() {
            let _ = writeln!(std::io::stderr(), "{}", self.report());
            if std::env::var_os("RIVULET_TEST_KEEP").is_some() {
                if let Some(dir) = self.workdir.take() {
                    let kept = dir.keep();
                    let _ = writeln!(std::io::stderr(), "kept {}", kept.display());
                }
            }
        }
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) if Path::new("/proc/self/stat").exists() => false,
        // No procfs: signal 0 says whether the pid exists (zombies included).
        Err(_) => libc::pid_t::try_from(pid).is_ok_and(|p| {
            // SAFETY: signal 0 only checks that the process exists.
            unsafe { libc::kill(p, 0) == 0 }
        }),
    }
}

/// Sends `sig` to `pid`.
fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) with a valid signal number; it touches no memory of
    // ours. Callers signal only processes they know to be alive.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Drops the caller's `RIVULET_*` settings, which would change what is tested.
fn clean_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RIVULET_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_BACKTRACE", "1")
}

/// Lines of `pipe` as they come; read to the end so the writer never blocks.
fn read_lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    rx
}
