//! A real `rivulet broker` process for one test.
//!
//! Each [`BrokerProcess`] gets its own loopback ports and (unless told
//! otherwise) its own temporary data directory, so tests run in parallel.
//! Its stdout and stderr go to a log file that is printed when the test fails.
//! Restarts reuse the ports and the data directory, which is what crash and
//! recovery tests need.

use std::{
    fs::OpenOptions,
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::{
    kafka::{connect_retry, KafkaConn},
    tools::rivulet_bin,
};

/// How long a broker may take to accept TCP connections after it starts.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`BrokerProcess::terminate`] waits after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a first start is retried when the picked ports were taken
/// by someone else between picking and binding.
const PORT_RETRIES: usize = 3;

/// Options for a broker before it starts.
#[derive(Debug, Default)]
pub struct BrokerBuilder {
    data_dir: Option<PathBuf>,
    configs: Vec<String>,
    node_id: u32,
    listeners: Vec<(String, String)>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl BrokerBuilder {
    /// Sets an environment variable of the broker process (kept across
    /// restarts).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Uses `dir` as the data directory instead of a fresh temporary one.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Adds a `--config key=value` broker config.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.configs.push(format!("{key}={value}"));
        self
    }

    /// Adds a listener `name` of security `protocol` on its own loopback
    /// port, beside the PLAINTEXT one every test broker has.
    pub fn listener(mut self, name: &str, protocol: &str) -> Self {
        self.listeners
            .push((name.to_string(), protocol.to_string()));
        self
    }

    /// Adds a command-line argument of `rivulet broker`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Sets `--node-id` (default 0).
    pub fn node_id(mut self, id: u32) -> Self {
        self.node_id = id;
        self
    }

    /// Starts the broker and waits until its Kafka port accepts connections.
    pub fn start(self) -> BrokerProcess {
        let workdir = tempfile::Builder::new()
            .prefix("rivulet-test-")
            .tempdir()
            .expect("create a temporary directory");
        let data_dir = self.data_dir.unwrap_or_else(|| workdir.path().join("data"));
        let mut last_log = String::new();
        for _ in 0..PORT_RETRIES {
            let [kafka_port, metrics_port] = free_ports();
            let listeners = self
                .listeners
                .iter()
                .map(|(name, protocol)| (name.clone(), protocol.clone(), free_port()))
                .collect();
            let mut broker = BrokerProcess {
                child: None,
                kafka_port,
                metrics_port,
                listeners,
                extra_args: self.args.clone(),
                env: self.env.clone(),
                node_id: self.node_id,
                data_dir: data_dir.clone(),
                configs: self.configs.clone(),
                log_path: workdir.path().join("broker.log"),
                workdir: None,
                starts: 0,
            };
            match broker.spawn_and_wait() {
                Ok(()) => {
                    broker.workdir = Some(workdir);
                    return broker;
                }
                Err(StartError::PortTaken(log)) => last_log = log,
                Err(StartError::Failed(msg)) => panic!("{msg}"),
            }
        }
        panic!("the broker could not bind its ports in {PORT_RETRIES} tries\n{last_log}");
    }
}

enum StartError {
    /// The process exited because a port was in use: try other ports.
    PortTaken(String),
    /// Anything else: the test fails with this message.
    Failed(String),
}

/// A running (or stopped, between restarts) `rivulet broker`.
pub struct BrokerProcess {
    child: Option<Child>,
    kafka_port: u16,
    metrics_port: u16,
    /// Listeners besides PLAINTEXT: (name, protocol, port).
    listeners: Vec<(String, String, u16)>,
    extra_args: Vec<String>,
    /// Extra environment of the process.
    env: Vec<(String, String)>,
    node_id: u32,
    data_dir: PathBuf,
    configs: Vec<String>,
    log_path: PathBuf,
    /// Holds the log file and the default data directory; removed on drop.
    workdir: Option<TempDir>,
    /// How many times the process was spawned, to mark restarts in the log.
    starts: u32,
}

impl BrokerProcess {
    /// A builder, for data directories or configs of the test's choosing.
    pub fn builder() -> BrokerBuilder {
        BrokerBuilder::default()
    }

    /// Starts a broker with default settings on a fresh data directory.
    pub fn start() -> BrokerProcess {
        BrokerBuilder::default().start()
    }

    /// `127.0.0.1:PORT` of the Kafka listener.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// The Kafka listener's address.
    pub fn kafka_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.kafka_port))
    }

    /// The Kafka listener's port.
    pub fn kafka_port(&self) -> u16 {
        self.kafka_port
    }

    /// A raw Kafka connection to this broker (retrying for up to 15 s).
    pub fn client(&self) -> KafkaConn {
        connect_retry(&self.bootstrap(), Duration::from_secs(15))
    }

    /// Creates a topic (replication factor 1) or fails the test.
    pub fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        self.client()
            .create_topic(name, partitions, configs)
            .unwrap_or_else(|e| panic!("creating topic {name}: {e:#}"));
    }

    /// `127.0.0.1:PORT` of the metrics HTTP server.
    pub fn metrics_addr(&self) -> String {
        format!("127.0.0.1:{}", self.metrics_port)
    }

    /// `http://127.0.0.1:PORT/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr())
    }

    /// The broker's data directory (`--data-dir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A scratch directory that lives as long as this broker, for the test's
    /// own files.
    pub fn scratch_dir(&self) -> &Path {
        self.workdir
            .as_ref()
            .expect("the broker has a work directory")
            .path()
    }

    /// Everything the broker printed so far, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// What the broker printed since its latest (re)start.
    pub fn log_since_last_start(&self) -> String {
        let log = self.log();
        let marker = start_marker(self.starts);
        match log.rfind(&marker) {
            Some(at) => log[at..].to_string(),
            None => log,
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Panics with the log unless the process is still running.
    pub fn assert_alive(&mut self) {
        let child = self
            .child
            .as_mut()
            .expect("the broker was stopped by the test");
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the broker died ({status})\n{}",
                log_excerpt(&self.log_path)
            );
        }
    }

    /// Kills the broker with SIGKILL and reaps it, like a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to exit (at most
    /// [`STOP_TIMEOUT`]; past that it is killed and the test fails).
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the broker is not running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped,
        // so it cannot have been reused) and a valid signal number.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the broker did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    log_excerpt(&self.log_path)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same ports and data directory (killing
    /// it first if it still runs) and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.kill9();
        // The old process is gone, but its listening port may need a moment;
        // retry briefly instead of failing on a transient EADDRINUSE.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(StartError::PortTaken(log)) if Instant::now() >= deadline => {
                    panic!("the broker could not re-bind its ports\n{log}")
                }
                Err(StartError::PortTaken(_)) => thread::sleep(Duration::from_millis(300)),
                Err(StartError::Failed(msg)) => panic!("{msg}"),
            }
        }
    }

    /// `127.0.0.1:PORT` of the listener added as `name`.
    pub fn listener_bootstrap(&self, name: &str) -> String {
        let (_, _, port) = self
            .listeners
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no listener {name}"));
        format!("127.0.0.1:{port}")
    }

    fn args(&self) -> Vec<String> {
        let mut listeners = format!("PLAINTEXT://127.0.0.1:{}", self.kafka_port);
        let mut map = "PLAINTEXT:PLAINTEXT".to_string();
        for (name, protocol, port) in &self.listeners {
            listeners.push_str(&format!(",{name}://127.0.0.1:{port}"));
            map.push_str(&format!(",{name}:{protocol}"));
        }
        let mut args = vec![
            "broker".to_string(),
            "--node-id".to_string(),
            self.node_id.to_string(),
            "--listeners".to_string(),
            listeners,
            "--data-dir".to_string(),
            self.data_dir.display().to_string(),
            "--metrics-addr".to_string(),
            self.metrics_addr(),
        ];
        if !self.listeners.is_empty() {
            args.push("--config".to_string());
            args.push(format!("listener.security.protocol.map={map}"));
        }
        for kv in &self.configs {
            args.push("--config".to_string());
            args.push(kv.clone());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let bin = rivulet_bin();
        let args = self.args();
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open broker log");
        let _ = writeln!(
            log,
            "{}\n$ {} {}",
            start_marker(self.starts),
            bin.display(),
            args.join(" ")
        );
        let stderr = log.try_clone().expect("clone log handle");
        let mut cmd = Command::new(&bin);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .env("RUST_BACKTRACE", "1");
        // Don't let a developer's RIVULET_* settings change what is tested.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RIVULET_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .spawn()
            .map_err(|e| StartError::Failed(format!("cannot start {}: {e}", bin.display())))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), StartError> {
        let started = Instant::now();
        let addr = self.kafka_addr();
        loop {
            let child = self.child.as_mut().expect("just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let log = log_excerpt(&self.log_path);
                let msg = format!("the broker exited during start-up ({status})\n{log}");
                return Err(if log.contains("in use") {
                    StartError::PortTaken(msg)
                } else {
                    StartError::Failed(msg)
                });
            }
            // Ready means answering Kafka requests: a broker accepts
            // connections into its backlog before it serves them.
            if TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok()
                && crate::KafkaConn::connect(&addr.to_string()).is_ok()
            {
                return Ok(());
            }
            if started.elapsed() >= START_TIMEOUT {
                self.kill9();
                return Err(StartError::Failed(format!(
                    "the broker did not accept connections on {addr} within {START_TIMEOUT:?}\n{}",
                    log_excerpt(&self.log_path)
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "=== broker log ({}) ===\n{}=== end of broker log ===",
                self.log_path.display(),
                log_excerpt(&self.log_path)
            );
            if std::env::var_os("RIVULET_TEST_KEEP").is_some() {
                if let Some(dir) = self.workdir.take() {
                    let kept = dir.keep();
                    let _ = writeln!(std::io::stderr(), "kept {}", kept.display());
                }
            }
        }
    }
}

fn start_marker(n: u32) -> String {
    format!("=== rivulet-tests: broker start #{n} ===")
}

/// The last 300 lines of the log, enough to see why a broker failed without
/// flooding the test output.
pub(crate) fn log_excerpt(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})\n"));
    let text = strip_ansi(&text);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(300);
    let mut out = String::new();
    if skip > 0 {
        out.push_str(&format!("... ({skip} earlier lines)\n"));
    }
    for line in &lines[skip..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Removes terminal colour sequences (`ESC [ ... letter`), which make a log
/// file hard to read in test output.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A loopback port that was free a moment ago: bind port 0, read, release.
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` distinct loopback ports that were free a moment ago. All are held
/// until all are picked, so the kernel cannot hand out the same one twice.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local addr").port())
}

#[cfg(test)]
mod tests {
    use super::strip_ansi;

    #[test]
    fn strips_colour_codes() {
        assert_eq!(
            strip_ansi("\u{1b}[2mtime\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x"),
            "time  INFO x"
        );
    }
}
