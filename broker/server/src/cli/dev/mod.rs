//! `rivulet dev`: a whole multi-broker cluster on one machine, each broker its
//! own `rivulet broker` process, for trying a real cluster without Kubernetes
//! and for black-box tests.
//!
//! One pass, each stage doing one job: flags are validated into a [`DevPlan`]
//! (pure) -> ports are chosen (fresh, or the ones an earlier run recorded in
//! `cluster.json`, because the controller quorum remembers its members'
//! addresses) -> each broker's `server.properties` is written -> the brokers
//! are spawned and recorded in `cluster.json` -> `dev` waits until every broker
//! lists every broker in Metadata -> the bootstrap string goes to stdout ->
//! supervision until SIGINT or SIGTERM, which stops the brokers.
//!
//! A broker that dies is reported, never restarted: fault tests kill brokers
//! on purpose and restart them themselves from the `args` in `cluster.json`.
//!
//! [`layout`] decides what goes where (ports, configs, files), `fleet`
//! runs and watches the processes and `prometheus` writes a scrape config
//! for them; this file is the sequence.

mod fleet;
pub mod layout;
mod prometheus;

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};

use self::{
    fleet::{spawn_broker, supervise, wait_ready, Fleet, Signals},
    layout::{
        bootstrap, check_free, fresh_ports, prepare_broker, read_cluster_file, reuse_ports,
        write_cluster_file, BrokerRecord, ClusterFile, DevPlan, CLUSTER_FILE,
    },
};

/// `rivulet dev`
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// How many brokers to run, each its own process.
    #[arg(
        long,
        env = "RIVULET_DEV_BROKERS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub brokers: u32,
    /// Controller quorum voters: the first V brokers; 1, 3 or 5, at most
    /// --brokers [default: 1 with fewer than 3 brokers, else 3].
    #[arg(long, env = "RIVULET_DEV_VOTERS")]
    pub voters: Option<u32>,
    /// Where the brokers' configs, data and logs live, and `cluster.json`.
    /// Running again on the same directory restarts the same cluster.
    #[arg(long, env = "RIVULET_DEV_DATA_DIR", default_value = "./rivulet-dev")]
    pub data_dir: PathBuf,
    /// Address every broker listens on and advertises.
    #[arg(long, env = "RIVULET_DEV_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// A broker config for every broker, Kafka's names (repeatable); wins over
    /// the configs `dev` generates.
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub configs: Vec<String>,
    /// A SCRAM credential for the first admin, as `rivulet broker
    /// --add-scram` takes it (repeatable; passed to every broker, stored
    /// once while the cluster has no credential).
    #[arg(long = "add-scram", value_name = "MECHANISM=[name=..,password=..]")]
    pub add_scram: Vec<String>,
    /// Client properties (`security.protocol`, `ssl.*`, `sasl.*`) with which
    /// `dev` checks that the brokers are ready, when their first listener is
    /// secured (as other commands' --command-config).
    #[arg(long = "command-config", value_name = "FILE")]
    pub command_config: Option<PathBuf>,
    /// Seconds to wait for every broker to see the whole cluster.
    #[arg(
        long,
        env = "RIVULET_DEV_READY_TIMEOUT",
        default_value_t = 60,
        value_name = "SECONDS"
    )]
    pub ready_timeout: u64,
}

/// Runs the cluster until SIGINT or SIGTERM.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let dir = std::path::absolute(&args.data_dir)
        .with_context(|| format!("resolve {}", args.data_dir.display()))?;
    let mut plan = DevPlan::new(&args, dir)?;
    match plan.existing_cluster_id()? {
        Some(id) => {
            plan.cluster_id = id;
            plan.new_cluster = false;
        }
        None => plan.cluster_id = crate::identity::random_cluster_id(),
    }
    fs::create_dir_all(&plan.dir).with_context(|| format!("create {}", plan.dir.display()))?;
    // Installed before any broker starts, so an early Ctrl-C still stops them.
    let mut signals = Signals::new()?;
    let previous = read_cluster_file(&plan.dir)?;
    let ports = match &previous {
        Some(previous) => {
            let ports = reuse_ports(&plan, previous)?;
            check_free(&plan, &ports)?;
            ports
        }
        None => fresh_ports(&plan)?,
    };
    let mut records = Vec::with_capacity(ports.len());
    for id in 0..plan.brokers {
        records.push(prepare_broker(&plan, id, &ports)?);
    }
    let exe = std::env::current_exe().context("find the rivulet binary")?;
    let bootstrap = bootstrap(&plan, &ports);
    let mut fleet = Fleet::default();
    let started = start(
        &plan,
        &exe,
        &bootstrap,
        &mut records,
        &mut fleet,
        &mut signals,
    )
    .await
    .and_then(|()| announce(&bootstrap));
    if started.is_ok() {
        describe(&plan, &records);
        supervise(&mut fleet, &mut signals).await;
    }
    fleet.stop(&mut signals).await;
    started
}

/// The one line on stdout, flushed at once: whoever started `dev` waits for it.
fn announce(bootstrap: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{bootstrap}")
        .and_then(|()| stdout.flush())
        .context("write the bootstrap string to stdout")
}

/// Spawns every broker, records them, and waits until the cluster is whole.
async fn start(
    plan: &DevPlan,
    exe: &Path,
    bootstrap: &str,
    records: &mut [BrokerRecord],
    fleet: &mut Fleet,
    signals: &mut Signals,
) -> anyhow::Result<()> {
    for record in records.iter_mut() {
        let child = spawn_broker(exe, record)?;
        record.pid = child.id().context("a just-spawned broker has a pid")?;
        fleet.children.insert(record.id, child);
    }
    let file = ClusterFile {
        bootstrap: bootstrap.to_string(),
        brokers: records.to_vec(),
    };
    write_cluster_file(&plan.dir, &file)?;
    let scrape = plan.dir.join(prometheus::PROMETHEUS_FILE);
    fs::write(&scrape, prometheus::prometheus_config(plan, records))
        .with_context(|| format!("write {}", scrape.display()))?;
    eprintln!(
        "rivulet dev: started {} in {}, waiting for every broker to list every broker",
        brokers(plan.brokers),
        plan.dir.display()
    );
    tokio::select! {
        ready = wait_ready(plan, records, fleet) => ready,
        sig = signals.recv() => bail!("{sig} before the cluster was ready"),
    }
}

/// Tells the person at the terminal what runs where (stdout carries only
/// the bootstrap string).
fn describe(plan: &DevPlan, records: &[BrokerRecord]) {
    let voters: Vec<String> = (0..plan.voters).map(|v| v.to_string()).collect();
    eprintln!(
        "rivulet dev: {} ready; controller quorum voters: {}",
        brokers(plan.brokers),
        voters.join(", ")
    );
    for r in records {
        eprintln!(
            "  broker {id}{voter}: kafka {kafka}  controller {ctrl}  metrics http://{metrics}/metrics  \
             pid {pid}  log {log}",
            id = r.id,
            voter = if r.voter { " (voter)" } else { "" },
            kafka = plan.addr(r.kafka_port),
            ctrl = plan.addr(r.controller_port),
            metrics = plan.addr(r.metrics_port),
            pid = r.pid,
            log = r.log_file.display(),
        );
    }
    eprintln!(
        "  cluster description: {}",
        plan.dir.join(CLUSTER_FILE).display()
    );
    eprintln!(
        "  Prometheus scrape config: {} (docs/monitoring.md)",
        plan.dir.join(prometheus::PROMETHEUS_FILE).display()
    );
    eprintln!("Ctrl-C to stop.");
}

/// `1 broker`, `3 brokers`.
fn brokers(n: u32) -> String {
    format!("{n} broker{}", if n == 1 { "" } else { "s" })
}
