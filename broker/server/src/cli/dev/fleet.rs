//! The broker processes of `rivulet dev`: spawning them, waiting until they
//! form one cluster, watching for exits, and stopping them on a signal.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, OpenOptions},
    io::Write,
    path::Path,
    process::{ExitStatus, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context};
use rivulet_wire::client::{Client, ClientSecurity, DEFAULT_CLIENT_ID};
use tokio::{
    process::{Child, Command},
    signal::unix::{signal, Signal, SignalKind},
};

use super::layout::{BrokerRecord, DevPlan};

/// How often start-up readiness and broker exits are checked.
const POLL: Duration = Duration::from_millis(200);

/// How long one readiness probe of one broker may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long brokers get to exit after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of a broker's log shown when it fails to start.
const LOG_TAIL_LINES: usize = 40;

/// Starts one broker in dev's own process group (so a terminal's Ctrl-C
/// reaches it too), output appended to its log file.
pub(super) fn spawn_broker(exe: &Path, record: &BrokerRecord) -> anyhow::Result<Child> {
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&record.log_file)
            .with_context(|| format!("open {}", record.log_file.display()))
    };
    let mut log = open()?;
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    writeln!(
        log,
        "=== rivulet dev: broker {} starting (unix time {since_epoch}) ===\n$ {} {}",
        record.id,
        exe.display(),
        record.args.join(" ")
    )
    .with_context(|| format!("write {}", record.log_file.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(&record.args)
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(log);
    // The broker reads RIVULET_* as flags, which would win over its config
    // file (one RIVULET_DATA_DIR would give every broker the same data).
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RIVULET_") {
            cmd.env_remove(key);
        }
    }
    cmd.spawn()
        .with_context(|| format!("start broker {} ({})", record.id, exe.display()))
}

/// Polls until every broker answers Metadata listing all broker ids; fails on
/// a broker exit or at the timeout, with the culprit's log tail.
pub(super) async fn wait_ready(
    plan: &DevPlan,
    records: &[BrokerRecord],
    fleet: &mut Fleet,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + plan.ready_timeout;
    let security =
        ClientSecurity::from_properties(&plan.client_properties).context("--command-config")?;
    let want: BTreeSet<u32> = (0..plan.brokers).collect();
    let mut last_seen: BTreeMap<u32, String> = BTreeMap::new();
    let mut waiting: BTreeSet<u32> = want.clone();
    loop {
        if let Some((id, status)) = fleet.reap().into_iter().next() {
            let record = &records[id as usize];
            bail!(
                "broker {id} exited during start-up ({status}); the end of {}:\n{}",
                record.log_file.display(),
                log_tail(&record.log_file)
            );
        }
        for id in waiting.clone() {
            let addr = plan.addr(records[id as usize].kafka_port);
            match probe(&addr, &security).await {
                Ok(seen) if seen.is_superset(&want) => {
                    waiting.remove(&id);
                }
                Ok(seen) => {
                    last_seen.insert(id, format!("lists brokers {seen:?}"));
                }
                Err(e) => {
                    last_seen.insert(id, e);
                }
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let mut msg = format!(
                "the cluster was not ready within {}s (--ready-timeout): every broker must \
                 list brokers {want:?} in Metadata",
                plan.ready_timeout.as_secs()
            );
            for id in &waiting {
                let record = &records[*id as usize];
                let seen = last_seen.get(id).map_or("no answer yet", String::as_str);
                msg.push_str(&format!(
                    "\nbroker {id} ({addr}): {seen}; the end of {log}:\n{tail}",
                    addr = plan.addr(record.kafka_port),
                    log = record.log_file.display(),
                    tail = log_tail(&record.log_file)
                ));
            }
            bail!(msg);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The broker ids that the broker at `addr` lists in Metadata.
async fn probe(addr: &str, security: &ClientSecurity) -> Result<BTreeSet<u32>, String> {
    let connect = Client::connect_secure(addr, DEFAULT_CLIENT_ID, security.clone());
    match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
        Ok(Ok(client)) => Ok(client
            .brokers()
            .filter_map(|b| u32::try_from(b.node_id).ok())
            .collect()),
        Ok(Err(e)) => Err(format!("Metadata failed: {e}")),
        Err(_) => Err(format!("no Metadata answer within {PROBE_TIMEOUT:?}")),
    }
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &Path) -> String {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return format!("(cannot read it: {e})"),
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Reports brokers that exit on their own until a stop signal arrives.
pub(super) async fn supervise(fleet: &mut Fleet, signals: &mut Signals) {
    loop {
        tokio::select! {
            sig = signals.recv() => {
                eprintln!("rivulet dev: {sig}, stopping the brokers");
                return;
            }
            _ = tokio::time::sleep(POLL) => {
                for (id, status) in fleet.reap() {
                    eprintln!("rivulet dev: broker {id} exited ({status}); not restarting it");
                }
            }
        }
    }
}

/// SIGINT and SIGTERM, the two ways to stop `dev`.
pub(super) struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    pub(super) fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("install a SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("install a SIGTERM handler")?,
        })
    }

    /// Waits for either signal and names it.
    pub(super) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// The broker processes `dev` started and has not yet seen exit.
#[derive(Default)]
pub(super) struct Fleet {
    pub(super) children: BTreeMap<u32, Child>,
}

impl Fleet {
    /// Brokers that exited since the last call, reaped and forgotten.
    pub(super) fn reap(&mut self) -> Vec<(u32, ExitStatus)> {
        let mut exited = Vec::new();
        self.children.retain(|id, child| match child.try_wait() {
            Ok(Some(status)) => {
                exited.push((*id, status));
                false
            }
            Ok(None) => true,
            Err(e) => {
                eprintln!("rivulet dev: cannot check on broker {id}: {e}");
                true
            }
        });
        exited
    }

    /// Sends `sig` to every broker still running.
    fn signal_all(&self, sig: libc::c_int) {
        for child in self.children.values() {
            // `id()` is None once the child is reaped, so the pid cannot
            // belong to another process yet.
            let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) else {
                continue;
            };
            // SAFETY: kill(2) on a child we spawned and have not reaped, with
            // a valid signal number; it touches no memory of ours.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// SIGTERM to every broker, up to [`STOP_TIMEOUT`] for them to exit,
    /// then SIGKILL; a second signal to `dev` kills at once.
    pub(super) async fn stop(&mut self, signals: &mut Signals) {
        if self.children.is_empty() {
            return;
        }
        self.signal_all(libc::SIGTERM);
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        loop {
            for (id, status) in self.reap() {
                eprintln!("rivulet dev: broker {id} stopped ({status})");
            }
            if self.children.is_empty() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    eprintln!(
                        "rivulet dev: brokers {:?} still running {STOP_TIMEOUT:?} after SIGTERM; killing them",
                        self.children.keys().collect::<Vec<_>>()
                    );
                    break;
                }
                sig = signals.recv() => {
                    eprintln!("rivulet dev: {sig} again, killing the brokers");
                    break;
                }
            }
        }
        self.signal_all(libc::SIGKILL);
        for (id, mut child) in std::mem::take(&mut self.children) {
            match child.wait().await {
                Ok(status) => eprintln!("rivulet dev: broker {id} killed ({status})"),
                Err(e) => eprintln!("rivulet dev: cannot reap broker {id}: {e}"),
            }
        }
    }
}
