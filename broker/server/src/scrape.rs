//! Fills the scrape-time families ([`crate::series::ScrapeSeries`]) from the
//! node's state just before `/metrics` renders: the process, the runtime,
//! the log directory, the partitions this broker leads (as Kafka Exporter
//! and Kafka's partition MBeans report them), the controller's counts, the
//! Raft quorum and the listeners' certificates.
//!
//! Cluster-wide series follow Kafka's rule so sums over brokers are right:
//! per-partition series come from the partition's leader, global counts
//! from the active controller only. Rates and idle ratios are over the time
//! since the previous scrape, which [`Scraper`] remembers.

use std::{
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use rivulet_quorum::metadata::ClusterMetadata;
use rivulet_wire::process::ProcessStats;

use crate::{
    handlers::Node,
    metrics::Metrics,
    security::tls::certificate_expiry,
    series::{advance, advance_f64, ScrapeSeries},
};

/// What a rate needs from the previous scrape.
#[derive(Default)]
struct Previous {
    at: Option<Instant>,
    busy: Duration,
    raft_log_index: u64,
    commits: u64,
    commit_seconds: f64,
}

/// Fills the scrape-time families; one per HTTP endpoint.
#[derive(Default)]
pub struct Scraper {
    previous: Mutex<Previous>,
}

impl Scraper {
    /// Brings every scrape-time family up to date.
    pub fn refresh(&self, node: &Node) {
        let series = &node.metrics.series;
        let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let elapsed = previous.at.map(|at| now - at);
        process(series);
        runtime(series, &mut previous.busy, elapsed);
        log_dir(node, series);
        let image = node.cluster.image();
        partitions(node, &image, series);
        controller(&node.metrics, &image, series);
        raft(node, series, &mut previous, elapsed);
        certificates(node, series);
        previous.at = Some(now);
    }
}

fn process(s: &ScrapeSeries) {
    let Some(p) = ProcessStats::read() else {
        return;
    };
    advance_f64(&s.cpu_seconds, p.cpu_seconds);
    s.resident_bytes.set(clamp(p.resident_bytes));
    s.virtual_bytes.set(clamp(p.virtual_bytes));
    s.open_fds.set(clamp(p.open_fds));
    s.max_fds.set(clamp(p.max_fds));
    s.threads.set(clamp(p.threads));
    s.start_time.set(p.start_time_seconds);
    s.disk_read_bytes.set(clamp(p.disk_read_bytes));
    s.disk_write_bytes.set(clamp(p.disk_write_bytes));
}

/// The runtime's workers both serve sockets and handle requests (a
/// connection's task does both), so Kafka's network-processor and
/// request-handler idle ratios are the same number here.
fn runtime(s: &ScrapeSeries, last_busy: &mut Duration, elapsed: Option<Duration>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let metrics = handle.metrics();
    let workers = metrics.num_workers();
    let busy: Duration = (0..workers)
        .map(|w| metrics.worker_total_busy_duration(w))
        .sum();
    s.workers.set(workers as i64);
    advance_f64(&s.worker_busy, busy.as_secs_f64());
    if let Some(elapsed) = elapsed.filter(|e| !e.is_zero() && workers > 0) {
        let used = busy.saturating_sub(*last_busy).as_secs_f64();
        let idle = 1.0 - used / (elapsed.as_secs_f64() * workers as f64);
        s.handler_idle.set(idle.clamp(0.0, 1.0));
        s.network_idle.set(idle.clamp(0.0, 1.0));
    } else {
        s.handler_idle.set(1.0);
        s.network_idle.set(1.0);
    }
    *last_busy = busy;
}

fn log_dir(node: &Node, s: &ScrapeSeries) {
    let dir = &node.config.data_dir;
    let label = dir.display().to_string();
    let size: u64 = node
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| p.read_log().size_bytes())
        .sum();
    s.log_dir_size.with_label_values(&[&label]).set(clamp(size));
    // Offline: taken offline after an I/O error (`log_dir.rs`), or its
    // file system cannot even be asked for its size.
    match filesystem_space(dir) {
        Some((free, total)) => {
            s.log_dir_free.with_label_values(&[&label]).set(clamp(free));
            s.log_dir_total
                .with_label_values(&[&label])
                .set(clamp(total));
            s.offline_log_dirs.set(i64::from(node.log_dir.is_offline()));
        }
        None => s.offline_log_dirs.set(1),
    }
}

/// (bytes available to unprivileged users, filesystem size) of `dir`.
fn filesystem_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string that outlives the call and
    // `stat` is writable memory of the right type; it is read only when
    // statvfs reports success, which means it filled it in.
    let stat = unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    let block = stat.f_frsize as u64;
    Some((stat.f_bavail as u64 * block, stat.f_blocks as u64 * block))
}

/// The per-partition series of the partitions this broker leads, up to
/// `metrics.partition.series.max`, and the reassignment gauges.
fn partitions(node: &Node, image: &ClusterMetadata, s: &ScrapeSeries) {
    let me = node.config.node_id;
    let max = node.metrics.partition_series_max();
    s.partition.reset();
    s.broker_info.reset();
    if let Some(b) = image.brokers.get(&me) {
        let address = b
            .endpoints
            .values()
            .next()
            .map(|e| format!("{}:{}", e.host, e.port))
            .unwrap_or_default();
        s.broker_info
            .with_label_values(&[&me.to_string(), &address])
            .set(1);
    }
    let (mut exported, mut reassigning, mut pending) = (0usize, 0i64, 0i64);
    for (name, topic) in &image.topics {
        let local = node.topic(name);
        for (index, state) in &topic.partitions {
            if state.leader != Some(me) {
                continue;
            }
            if let Some(r) = &state.reassignment {
                reassigning += 1;
                pending += r.adding.iter().filter(|b| !state.isr.contains(b)).count() as i64;
            }
            if exported >= max {
                continue;
            }
            exported += 1;
            let p = index.to_string();
            let l = [name.as_str(), p.as_str()];
            let ps = &s.partition;
            let (replicas, isr) = (state.replicas.len() as i64, state.isr.len() as i64);
            let under = i64::from(isr < replicas);
            ps.replicas.with_label_values(&l).set(replicas);
            ps.replicas_count.with_label_values(&l).set(replicas);
            ps.in_sync.with_label_values(&l).set(isr);
            ps.in_sync_count.with_label_values(&l).set(isr);
            ps.under_replicated.with_label_values(&l).set(under);
            ps.cluster_under_replicated.with_label_values(&l).set(under);
            ps.leader.with_label_values(&l).set(i64::from(me));
            ps.leader_is_preferred
                .with_label_values(&l)
                .set(i64::from(state.preferred_leader() == Some(me)));
            let hosted = local.as_ref().and_then(|t| Some((t, t.partition(*index)?)));
            if let Some((t, partition)) = hosted {
                let min_isr = t.min_insync_replicas(state.replicas.len());
                ps.under_min_isr
                    .with_label_values(&l)
                    .set(i64::from(isr < min_isr));
                ps.at_min_isr
                    .with_label_values(&l)
                    .set(i64::from(isr == min_isr));
                ps.current_offset
                    .with_label_values(&l)
                    .set(partition.high_watermark());
                ps.oldest_offset
                    .with_label_values(&l)
                    .set(partition.read_log().log_start_offset());
            }
        }
    }
    s.reassigning.set(reassigning);
    s.reassignment_pending.set(pending);
    let led = image
        .topics
        .values()
        .flat_map(|t| t.partitions.values())
        .filter(|p| p.leader == Some(me))
        .count();
    s.partition_series_dropped
        .set(i64::try_from(led.saturating_sub(exported)).unwrap_or(i64::MAX));
}

/// Cluster-wide counts, on the active controller only.
fn controller(metrics: &Metrics, image: &ClusterMetadata, s: &ScrapeSeries) {
    s.topic_partitions.reset();
    if metrics.active_controller.get() != 1 {
        for g in [
            &s.active_brokers,
            &s.global_topics,
            &s.global_partitions,
            &s.preferred_imbalance,
        ] {
            g.set(0);
        }
        return;
    }
    let partitions = || image.topics.values().flat_map(|t| t.partitions.values());
    s.active_brokers.set(image.live_brokers().count() as i64);
    s.global_topics.set(image.topics.len() as i64);
    s.global_partitions.set(partitions().count() as i64);
    s.preferred_imbalance.set(
        partitions()
            .filter(|p| p.leader.is_some() && p.leader != p.preferred_leader())
            .count() as i64,
    );
    for (name, topic) in &image.topics {
        s.topic_partitions
            .with_label_values(&[name])
            .set(topic.partitions.len() as i64);
    }
}

fn raft(node: &Node, s: &ScrapeSeries, previous: &mut Previous, elapsed: Option<Duration>) {
    let r = &s.raft;
    let (requests, responses, bytes_out, bytes_in) =
        rivulet_quorum::network::CHANNEL_STATS.totals();
    advance(&r.requests, requests);
    advance(&r.responses, responses);
    advance(&r.bytes_out, bytes_out);
    advance(&r.bytes_in, bytes_in);
    let (commits, commit_seconds, commit_max) = rivulet_quorum::COMMIT_LATENCY.totals();
    let new_commits = commits.saturating_sub(previous.commits);
    if new_commits > 0 {
        let took = commit_seconds - previous.commit_seconds;
        r.commit_latency_avg.set(took / new_commits as f64 * 1000.0);
    }
    r.commit_latency_max.set(commit_max * 1000.0);
    previous.commits = commits;
    previous.commit_seconds = commit_seconds;
    let Some(quorum) = node.cluster.quorum() else {
        r.current_leader.set(i64::from(node.config.node_id));
        r.current_vote.set(i64::from(node.config.node_id));
        r.voters.set(1);
        return;
    };
    let m = quorum.metrics();
    let id = |n: Option<u64>| n.and_then(|n| i64::try_from(n).ok()).unwrap_or(-1);
    r.current_leader.set(id(m.leader_id));
    r.current_vote.set(id(m.voted_for));
    r.voters.set(m.voters.len() as i64);
    let appended = m.last_log_index.saturating_sub(previous.raft_log_index);
    let rate = elapsed
        .filter(|e| !e.is_zero())
        .map_or(0.0, |e| appended as f64 / e.as_secs_f64());
    let leading = m.role == rivulet_quorum::QuorumRole::Leader;
    r.append_rate.set(if leading { rate } else { 0.0 });
    r.fetch_rate.set(if leading { 0.0 } else { rate });
    previous.raft_log_index = m.last_log_index;
}

fn certificates(node: &Node, s: &ScrapeSeries) {
    for l in &node.config.listeners {
        let security = node.config.security.listener(&l.name);
        let Some(tls) = &security.tls else { continue };
        match certificate_expiry(tls) {
            Some(at) => s.tls_expiry.with_label_values(&[&l.name]).set(at as f64),
            None => {
                let _ = s.tls_expiry.remove_label_values(&[&l.name]);
            }
        }
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
