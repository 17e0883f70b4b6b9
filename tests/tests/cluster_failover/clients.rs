//! The confluent-kafka side of the failover tests: `tests/py/cluster_failover_clients.py`
//! run in the foreground or background, and what its summaries say.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use rivulet_tests::{cluster_checks::poll_until, process::Background, py_command, run_py};
use serde_json::Value;

use super::FAILOVER_BOUND;

const SCRIPT: &str = "cluster_failover_clients.py";

/// One acknowledged record: (partition, offset, value).
pub type Acked = (i32, i64, String);

/// Runs a subcommand of the script and returns its JSON summary.
pub fn run(args: &[&str]) -> Value {
    summary(&run_py(SCRIPT, args))
}

/// The script as a background process.
pub fn spawn(args: &[&str], dir: &Path, name: &str) -> Background {
    Background::spawn(&mut py_command(SCRIPT, args), dir, name)
}

/// The JSON summary a script printed last.
pub fn summary(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON summary in {stdout:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
}

/// `[[partition, offset, value], ...]` from a summary.
pub fn records_of(v: &Value) -> Vec<Acked> {
    v.as_array()
        .expect("a list of records")
        .iter()
        .map(|r| {
            let partition = r[0].as_i64().and_then(|p| i32::try_from(p).ok());
            (
                partition.expect("partition"),
                r[1].as_i64().expect("offset"),
                r[2].as_str().expect("value").to_string(),
            )
        })
        .collect()
}

/// `{"partition": offset, ...}` from a summary.
pub fn offsets_of(v: &Value) -> BTreeMap<i32, i64> {
    v.as_object()
        .expect("an object of offsets")
        .iter()
        .map(|(p, o)| (p.parse().expect("partition"), o.as_i64().expect("offset")))
        .collect()
}

/// Acknowledgements a producer wrote so far (a last line without its
/// newline is still being written and skipped).
fn read_acked(path: &Path) -> Vec<Acked> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| {
            let mut f = l.split_whitespace();
            let mut next = || f.next().unwrap_or_else(|| panic!("bad acked line {l:?}"));
            let p = next().parse().expect("partition");
            let o = next().parse().expect("offset");
            (p, o, next().to_string())
        })
        .collect()
}

/// Reads every partition of `topic` and checks it holds exactly the
/// records the producers acknowledged, at their offsets, in order.
pub fn verify(bootstrap: &str, topic: &str, partitions: i32, producers: &[&StreamProducer]) {
    let partitions = partitions.to_string();
    let mut args = vec!["verify", bootstrap, topic, &partitions];
    args.extend(
        producers
            .iter()
            .map(|p| p.acked.to_str().expect("utf-8 path")),
    );
    eprintln!("verified: {}", run(&args));
}

/// An idempotent acks=all producer running in the background, from the
/// first acknowledgement it writes to [`StreamProducer::finish`].
pub struct StreamProducer {
    bg: Option<Background>,
    acked: PathBuf,
    stop: PathBuf,
}

impl StreamProducer {
    /// Starts producing `v<first_seq>`, `v<first_seq + 1>`, ... to `topic`.
    pub fn start(bootstrap: &str, topic: &str, first_seq: u64, dir: &Path, name: &str) -> Self {
        let acked = dir.join(format!("{name}.acked"));
        let stop = dir.join(format!("{name}.stop"));
        let first = first_seq.to_string();
        let args = [
            "stream",
            bootstrap,
            topic,
            &first,
            acked.to_str().expect("utf-8 path"),
            stop.to_str().expect("utf-8 path"),
        ];
        StreamProducer {
            bg: Some(spawn(&args, dir, name)),
            acked,
            stop,
        }
    }

    fn bg(&self) -> &Background {
        self.bg.as_ref().expect("the producer runs")
    }

    /// Waits until `enough` holds for the acknowledgements so far.
    fn wait_acked(&self, what: &str, enough: impl Fn(&[Acked]) -> bool) {
        poll_until(FAILOVER_BOUND, what, || {
            let acked = read_acked(&self.acked);
            if enough(&acked) {
                return Ok(());
            }
            let mut per_partition = BTreeMap::new();
            for (p, _, _) in &acked {
                *per_partition.entry(*p).or_insert(0) += 1;
            }
            Err(format!(
                "acknowledged per partition {per_partition:?}\n--- producer stderr ---\n{}",
                self.bg().stderr()
            ))
        });
    }

    /// Waits for `n` acknowledgements covering all `partitions` partitions.
    pub fn wait_everywhere(&self, partitions: i32, n: usize) {
        self.wait_acked("acknowledgements on every partition", |acked| {
            let parts: BTreeSet<i32> = acked.iter().map(|a| a.0).collect();
            acked.len() >= n && parts.len() == partitions as usize
        });
    }

    /// The highest acknowledged offset of each partition so far.
    pub fn last_offsets(&self) -> BTreeMap<i32, i64> {
        let mut last = BTreeMap::new();
        for (p, o, _) in read_acked(&self.acked) {
            let e = last.entry(p).or_insert(o);
            *e = (*e).max(o);
        }
        last
    }

    /// Waits for `n` acknowledgements above `after` on each of `partitions`:
    /// more than any in-flight window the old leader could still have
    /// answered, so they came from new leaders.
    pub fn wait_beyond(&self, partitions: &[i32], after: &BTreeMap<i32, i64>, n: usize) {
        self.wait_acked("acknowledgements from the new leaders", |acked| {
            partitions.iter().all(|p| {
                let floor = after.get(p).copied().unwrap_or(-1);
                acked
                    .iter()
                    .filter(|(ap, o, _)| ap == p && *o > floor)
                    .count()
                    >= n
            })
        });
    }

    /// Stops producing, waits for the last delivery reports and returns the
    /// summary, after checking that no delivery failed.
    pub fn finish(&mut self) -> Value {
        std::fs::write(&self.stop, b"").expect("create the stop file");
        let mut bg = self.bg.take().expect("the producer runs");
        let status = bg.wait(Duration::from_secs(60));
        let out = bg.stdout();
        assert!(
            status.success(),
            "producer failed ({status})\n{out}\n{}",
            bg.stderr()
        );
        let s = summary(&out);
        eprintln!(
            "producer: {} produced, {} acknowledged, {} failed, leaders seen {}, client errors {}",
            s["produced"], s["acked"], s["failed"], s["leaders"], s["client_errors"]
        );
        assert_eq!(
            (&s["failed"], &s["undelivered"], &s["fatal"]),
            (&Value::from(0), &Value::from(0), &Value::Null),
            "the producer lost deliveries: {s}\n--- stderr ---\n{}",
            bg.stderr()
        );
        assert_eq!(s["acked"], s["produced"], "{s}");
        s
    }
}

/// The distinct leaders one partition had, in order, as the producer's own
/// statistics reported them.
pub fn producer_leaders(summary: &Value, partition: i32) -> Vec<i32> {
    summary["leaders"][partition.to_string()]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_i64().and_then(|l| i32::try_from(l).ok()))
                .collect()
        })
        .unwrap_or_default()
}
