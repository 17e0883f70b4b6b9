//! `rivulet-chaos`: the fault campaign from the command line.
//!
//! ```text
//! cargo build -j2 --bins && cargo run -p rivulet-tests --bin rivulet-chaos -- \
//!     --brokers 3 --runs 100 --duration 60 [--seed N] [--partitions 6] \
//!     [--max-minutes N] [--config key=value ...] [--only isolate-controller]
//! ```
//!
//! Runs `--runs` seeded runs (seeds `N, N+1, ...`; `N` random unless
//! given), each with faults injected for `--duration` seconds, and prints a
//! line per run and a Markdown summary table (the one in
//! docs/reliability.md). A run that breaks a promise keeps its directory
//! and prints its seed; replay it with `--seed SEED --runs 1`. Needs root.
//!
//! `--config` sets a broker setting over the harness's own (repeatable);
//! `--only isolate-controller` (or `isolate-leader`, `isolate-bystander`)
//! replaces the random faults with that one, held 10 s every 14 s, to
//! measure one failover.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use rivulet_tests::{
    chaos::{
        faults::{Fault, Step},
        run, RunOptions, RunReport, Schedule,
    },
    cluster_faults::fault_seed,
    netns::PrivateNet,
};

struct Args {
    brokers: usize,
    runs: u64,
    duration: u64,
    partitions: i32,
    seed: Option<u64>,
    verbose: bool,
    /// Start no new run after this many minutes.
    max_minutes: Option<u64>,
    /// Broker settings over the harness's own.
    configs: Vec<(String, String)>,
    /// One fault kind instead of random ones.
    only: Option<Fault>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        brokers: 3,
        runs: 1,
        duration: 60,
        partitions: 6,
        seed: None,
        verbose: false,
        max_minutes: None,
        configs: Vec::new(),
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--verbose" || flag == "-v" {
            args.verbose = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag} {value}: not a number"))
        };
        match flag.as_str() {
            "--brokers" => args.brokers = number()? as usize,
            "--runs" => args.runs = number()?,
            "--duration" => args.duration = number()?,
            "--partitions" => args.partitions = number()? as i32,
            "--seed" => args.seed = Some(number()?),
            "--max-minutes" => args.max_minutes = Some(number()?),
            "--config" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--config {value}: expected key=value"))?;
                args.configs.push((k.to_string(), v.to_string()));
            }
            "--only" => {
                args.only = Some(match value.as_str() {
                    "isolate-controller" => Fault::IsolateController,
                    "isolate-leader" => Fault::IsolateLeader { partition: 0 },
                    "isolate-bystander" => Fault::IsolateBystander,
                    other => return Err(format!("--only {other}: not a fault this can repeat")),
                })
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if !(3..=7).contains(&args.brokers) {
        return Err("--brokers must be 3 to 7".to_string());
    }
    Ok(args)
}

/// `fault` held 10 s after a 4 s gap, as often as `duration` seconds allow.
fn repeated(fault: &Fault, duration: u64) -> Schedule {
    let step = Step {
        gap: Duration::from_secs(4),
        fault: fault.clone(),
        hold: Duration::from_secs(10),
    };
    Schedule {
        steps: vec![step; (duration / 14).max(1) as usize],
    }
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rivulet-chaos: {e}\nusage: rivulet-chaos [--brokers N] [--runs N] [--duration SECONDS] [--partitions N] [--seed N] [--max-minutes N] [--verbose]");
            std::process::exit(2);
        }
    };
    if let Err(why) = PrivateNet::available() {
        eprintln!("rivulet-chaos: {why}");
        std::process::exit(2);
    }
    let first = args.seed.unwrap_or_else(fault_seed);
    let started = Instant::now();
    let mut reports = Vec::new();
    for n in 0..args.runs {
        if args
            .max_minutes
            .is_some_and(|m| started.elapsed() >= Duration::from_secs(m * 60))
        {
            println!(
                "time budget of {} minutes used up after {n} runs",
                args.max_minutes.unwrap_or(0)
            );
            break;
        }
        let opts = RunOptions {
            brokers: args.brokers,
            partitions: args.partitions,
            duration: Duration::from_secs(args.duration),
            seed: first.wrapping_add(n),
            verbose: args.verbose,
            schedule: args
                .only
                .as_ref()
                .map(|fault| repeated(fault, args.duration)),
            broker_configs: args.configs.clone(),
        };
        // Each run in its own thread: its private network namespace goes
        // with the thread, and a harness panic ends only this run.
        let outcome = std::thread::spawn(move || run(&opts))
            .join()
            .map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".to_string())
            });
        let report = match outcome {
            Ok(Ok(report)) => report,
            Ok(Err(e)) | Err(e) => RunReport {
                seed: first.wrapping_add(n),
                violations: vec![format!("harness: {e}")],
                ..RunReport::default()
            },
        };
        println!("{}", line(n + 1, &report));
        reports.push(report);
    }
    println!("\n{}", summary(&args, &reports, started.elapsed()));
    if reports.iter().any(|r| !r.violations.is_empty()) {
        std::process::exit(1);
    }
}

fn line(n: u64, r: &RunReport) -> String {
    let faults: Vec<String> = r.faults.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut text = format!(
        "run {n} seed {}: {:.0} s, faults [{}], acknowledged {}, failed {}, read {}, \
         transactions {}, converged in {}",
        r.seed,
        r.elapsed.as_secs_f64(),
        faults.join(" "),
        r.acked,
        r.failed,
        r.read,
        r.transactions,
        r.converged_in
            .map_or("-".to_string(), |d| format!("{:.1} s", d.as_secs_f64())),
    );
    for a in &r.availability {
        text.push_str(&format!("\n    {a}"));
    }
    for c in &r.stale_claims {
        text.push_str(&format!("\n    STALE: {c}"));
    }
    for v in &r.violations {
        text.push_str(&format!("\n    VIOLATION: {v}"));
    }
    if let Some(dir) = &r.kept {
        text.push_str(&format!("\n    files kept in {}", dir.display()));
    }
    text
}

/// Percentile `q` of sorted `values`.
fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let i = ((values.len() - 1) as f64 * q).round() as usize;
    Some(values[i])
}

fn summary(args: &Args, reports: &[RunReport], took: Duration) -> String {
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    let mut disk_effects: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reports {
        for (k, v) in &r.faults {
            *faults.entry(k).or_default() += v;
        }
        for (k, v) in &r.disk_effects {
            *disk_effects.entry(k).or_default() += v;
        }
    }
    let acked: u64 = reports.iter().map(|r| r.acked).sum();
    let txns = |state: &str| -> u64 {
        reports
            .iter()
            .map(|r| r.transactions[state].as_u64().unwrap_or(0))
            .sum()
    };
    let failed_runs: Vec<String> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| r.seed.to_string())
        .collect();
    let gaps = |kinds: &[&str]| {
        let mut g: Vec<f64> = reports
            .iter()
            .flat_map(|r| &r.availability)
            .filter(|a| kinds.contains(&a.kind))
            .filter_map(|a| a.gap)
            .collect();
        g.sort_by(f64::total_cmp);
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} s"));
        format!(
            "{} cuts: median {}, p95 {}, max {}",
            g.len(),
            fmt(percentile(&g, 0.5)),
            fmt(percentile(&g, 0.95)),
            fmt(g.last().copied())
        )
    };
    let rejoins: Vec<_> = reports.iter().flat_map(|r| &r.rejoins).collect();
    let disturbed = rejoins
        .iter()
        .filter(|w| w.without > 0 || w.seen.len() > 1)
        .count();
    let longest = rejoins
        .iter()
        .map(|w| w.longest_gap)
        .max()
        .unwrap_or_default();
    let stale: usize = reports.iter().map(|r| r.stale_claims.len()).sum();
    let mut t = String::new();
    t.push_str(&format!(
        "| {} brokers, {} runs of {} s (seeds {}..) | |\n|---|---|\n",
        args.brokers,
        reports.len(),
        args.duration,
        reports.first().map_or(0, |r| r.seed)
    ));
    for kind in Fault::KINDS {
        let injected = faults.get(kind).copied().unwrap_or(0);
        // For disk faults: how many the broker's log shows it met.
        let seen = match kind {
            "disk-full" | "disk-eio" => format!(
                " ({} seen by the broker)",
                disk_effects.get(kind).copied().unwrap_or(0)
            ),
            _ => String::new(),
        };
        t.push_str(&format!("| faults: {kind} | {injected}{seen} |\n"));
    }
    t.push_str(&format!("| records acknowledged | {acked} |\n"));
    t.push_str(&format!(
        "| transactions committed / aborted / outcome unknown to the client | {} / {} / {} |\n",
        txns("committed"),
        txns("aborted"),
        txns("unknown")
    ));
    t.push_str(&format!(
        "| runs with violations | {} {:?} |\n",
        failed_runs.len(),
        failed_runs
    ));
    t.push_str(&format!(
        "| leader cut off (not the controller): cut to first ack on its partitions | {} |\n",
        gaps(&["isolate-leader"])
    ));
    t.push_str(&format!(
        "| controller cut off: cut to first ack on the partitions it led | {} |\n",
        gaps(&["isolate-controller"])
    ));
    t.push_str(&format!(
        "| isolated brokers still claiming leadership after 2 session timeouts | {stale} |\n"
    ));
    t.push_str(&format!(
        "| rejoins that disturbed the controller | {disturbed} of {} (longest gap {:.1} s) |\n",
        rejoins.len(),
        longest.as_secs_f64()
    ));
    t.push_str(&format!(
        "| campaign wall time | {:.0} min |\n",
        took.as_secs_f64() / 60.0
    ));
    t
}
