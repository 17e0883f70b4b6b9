//! `rivulet group`: list, describe and delete consumer groups and reset
//! their committed offsets, like Kafka's `kafka-consumer-groups.sh`.
//!
//! Everything goes through the Kafka group admin APIs of
//! `rivulet_wire::client`, so it works against any Kafka-compatible cluster.
//! Offsets are reset with an admin commit (no member id), which brokers
//! allow only while a group has no active members; `reset-offsets` checks
//! that first and, as in Kafka, only prints its plan unless `--execute` is
//! given. The pieces that decide what to print or commit (`--topic` specs,
//! datetimes, the reset plan, the describe table) are pure functions.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use clap::ArgGroup;
use rivulet_wire::{
    client::{Client, CommittedOffset, GroupDescription},
    ClientError,
};

use super::ConnectArgs;

/// `rivulet group ...`
#[derive(clap::Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(clap::Subcommand, Debug)]
enum GroupCommand {
    /// List groups, one per line, with their state.
    List,
    /// Show a group's state, members, committed offsets and lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Delete a group without active members, with its committed offsets.
    Delete {
        /// Group id.
        group: String,
    },
    /// Plan new committed offsets for an inactive group; commit them with --execute.
    ResetOffsets(ResetArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(ArgGroup::new("scope").required(true).args(["topic", "all_topics"])))]
#[command(group(
    ArgGroup::new("strategy")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "to_timestamp", "shift_by"])
))]
struct ResetArgs {
    /// Group id.
    group: String,
    /// A topic, or some of its partitions: TOPIC or TOPIC:P,P,... (repeatable).
    #[arg(long, value_name = "TOPIC[:P,...]")]
    topic: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    /// The earliest offset still in the log.
    #[arg(long)]
    to_earliest: bool,
    /// The log end offset.
    #[arg(long)]
    to_latest: bool,
    /// This offset (clamped to the partition's earliest..latest).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// The first record at or after this time, UTC unless a zone is given.
    #[arg(long, value_name = "YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM]")]
    to_datetime: Option<String>,
    /// The first record at or after this time, in ms since the epoch.
    #[arg(long, value_name = "MS")]
    to_timestamp: Option<i64>,
    /// The committed offset moved by N (negative: back), clamped to the log.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// Commit the new offsets (without it, only the plan is printed).
    #[arg(long)]
    execute: bool,
    /// Only print the plan (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
}

/// Where `reset-offsets` moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The log start offset.
    Earliest,
    /// The log end offset.
    Latest,
    /// A given offset, clamped to the log.
    Offset(i64),
    /// The first offset at or after a time (ms since the epoch).
    Timestamp(i64),
    /// The committed offset plus a delta, clamped to the log.
    ShiftBy(i64),
}

/// What the broker knows about one partition, as the plan needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The log start offset.
    pub earliest: i64,
    /// The log end offset.
    pub latest: i64,
    /// The group's committed offset, if any.
    pub committed: Option<i64>,
    /// For [`ResetTo::Timestamp`]: ListOffsets' answer for the time
    /// (negative when no record is that recent).
    pub at_time: Option<i64>,
}

/// Runs `rivulet group`.
pub async fn run(args: GroupArgs) -> anyhow::Result<()> {
    let mut client = args.connect.client().await?;
    match args.command {
        GroupCommand::List => {
            let groups = client.list_groups().await.context("list groups")?;
            let rows: Vec<Vec<String>> = groups
                .into_iter()
                .map(|g| {
                    vec![
                        g.group_id,
                        if g.state.is_empty() {
                            "-".into()
                        } else {
                            g.state
                        },
                    ]
                })
                .collect();
            print!("{}", render_table(None, &rows));
        }
        GroupCommand::Describe { group } => describe(&mut client, &group).await?,
        GroupCommand::Delete { group } => {
            client
                .delete_groups(&[group.as_str()])
                .await
                .map_err(|e| anyhow::anyhow!("cannot delete group `{group}`: {}", explain(&e)))?;
            println!("Deleted group {group}.");
        }
        GroupCommand::ResetOffsets(reset) => reset_offsets(&mut client, reset).await?,
    }
    Ok(())
}

/// A client error with a hint for the group errors users meet most.
fn explain(e: &ClientError) -> String {
    let hint = match e.kafka_code() {
        Some(68) => " (the group still has active members: stop its consumers first)",
        Some(69) => " (no such group)",
        Some(25 | 27) => " (the group has active members: stop its consumers first)",
        Some(86) => " (the group's members still consume this topic)",
        _ => "",
    };
    format!("{e}{hint}")
}

/// Describes `group`, failing if the coordinator reported an error.
async fn describe_one(client: &mut Client, group: &str) -> anyhow::Result<GroupDescription> {
    let desc = client
        .describe_groups(&[group])
        .await
        .with_context(|| format!("describe group `{group}`"))?
        .pop()
        .with_context(|| format!("no description of group `{group}`"))?;
    if desc.error_code != 0 && desc.exists() {
        let e = ClientError::kafka(desc.error_code, None);
        bail!("describe group `{group}`: {}", explain(&e));
    }
    Ok(desc)
}

async fn describe(client: &mut Client, group: &str) -> anyhow::Result<()> {
    let desc = describe_one(client, group).await?;
    let committed = client
        .fetch_committed_offsets(group)
        .await
        .with_context(|| format!("fetch committed offsets of `{group}`"))?;
    if !desc.exists() && committed.is_empty() {
        bail!("consumer group `{group}` does not exist");
    }
    let mut partitions: BTreeSet<(String, i32)> = committed.keys().cloned().collect();
    for m in &desc.members {
        for (topic, ps) in &m.assignment {
            partitions.extend(ps.iter().map(|&p| (topic.clone(), p)));
        }
    }
    let mut log_end = BTreeMap::new();
    for (topic, p) in partitions {
        match client.list_offsets(&topic, p, -1).await {
            Ok((offset, _)) => {
                log_end.insert((topic, p), offset);
            }
            Err(e) => eprintln!("warning: no log end offset for {topic}-{p}: {e}"),
        }
    }
    let state = if desc.exists() {
        desc.state.as_str()
    } else {
        "Empty"
    };
    println!(
        "Consumer group '{group}': state {state}, {} member{}{}",
        desc.members.len(),
        if desc.members.len() == 1 { "" } else { "s" },
        if desc.protocol.is_empty() {
            String::new()
        } else {
            format!(", assignor {}", desc.protocol)
        }
    );
    let rows = describe_rows(group, &desc, &committed, &log_end);
    if !rows.is_empty() {
        println!();
        print!("{}", render_table(Some(&DESCRIBE_HEADER), &rows));
    }
    Ok(())
}

/// The columns of `rivulet group describe`, as `kafka-consumer-groups.sh` prints them.
pub const DESCRIBE_HEADER: [&str; 9] = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
];

/// The rows of `rivulet group describe`: every assigned or committed
/// partition, ordered by topic and partition, then members that have no
/// partitions. Unknown values are `-`.
pub fn describe_rows(
    group: &str,
    desc: &GroupDescription,
    committed: &BTreeMap<(String, i32), CommittedOffset>,
    log_end: &BTreeMap<(String, i32), i64>,
) -> Vec<Vec<String>> {
    let dash = || "-".to_string();
    // (topic, partition) -> (consumer id, host, client id)
    let mut owners: BTreeMap<(String, i32), [String; 3]> = BTreeMap::new();
    let mut idle = Vec::new();
    for m in &desc.members {
        let who = [
            m.member_id.clone(),
            m.client_host.clone(),
            m.client_id.clone(),
        ];
        let mut any = false;
        for (topic, ps) in &m.assignment {
            for &p in ps {
                owners.insert((topic.clone(), p), who.clone());
                any = true;
            }
        }
        if !any {
            idle.push(who);
        }
    }
    let keys: BTreeSet<&(String, i32)> = owners.keys().chain(committed.keys()).collect();
    let mut rows: Vec<Vec<String>> = keys
        .into_iter()
        .map(|key| {
            let current = committed.get(key).map(|c| c.offset);
            let end = log_end.get(key).copied();
            let lag = match (current, end) {
                (Some(c), Some(e)) => (e - c).max(0).to_string(),
                _ => dash(),
            };
            let who = owners
                .get(key)
                .cloned()
                .unwrap_or_else(|| [dash(), dash(), dash()]);
            let [id, host, client] = who;
            vec![
                group.to_string(),
                key.0.clone(),
                key.1.to_string(),
                current.map_or_else(dash, |c| c.to_string()),
                end.map_or_else(dash, |e| e.to_string()),
                lag,
                id,
                host,
                client,
            ]
        })
        .collect();
    for [id, host, client] in idle {
        rows.push(vec![
            group.to_string(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            id,
            host,
            client,
        ]);
    }
    rows
}

/// Renders rows as left-aligned columns separated by at least one space,
/// with an optional header line and no trailing spaces.
pub fn render_table(header: Option<&[&str]>, rows: &[Vec<String>]) -> String {
    let header: Option<Vec<String>> = header.map(|h| h.iter().map(|s| s.to_string()).collect());
    let all: Vec<&Vec<String>> = header.iter().chain(rows).collect();
    let columns = all.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            all.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in all {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push(' ');
            }
            line.push_str(cell);
            if c + 1 < row.len() {
                line.extend(std::iter::repeat_n(' ', widths[c] - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Parses a `--topic` value: `TOPIC` (all partitions) or `TOPIC:P,P,...`.
pub fn parse_topic_spec(spec: &str) -> anyhow::Result<(String, Option<Vec<i32>>)> {
    let (topic, partitions) = match spec.split_once(':') {
        Some((t, ps)) => (t, Some(ps)),
        None => (spec, None),
    };
    if topic.is_empty() {
        bail!("--topic `{spec}`: the topic name is empty");
    }
    let Some(list) = partitions else {
        return Ok((topic.to_string(), None));
    };
    let mut parsed = BTreeSet::new();
    for p in list.split(',') {
        let p = p.trim();
        match p.parse::<i32>() {
            Ok(n) if n >= 0 => {
                parsed.insert(n);
            }
            _ => bail!("--topic `{spec}`: `{p}` is not a partition number"),
        }
    }
    Ok((topic.to_string(), Some(parsed.into_iter().collect())))
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction][Z|+HH:MM|-HH:MM]` to ms since the
/// epoch. Without a zone the time is UTC (Kafka's tool would use local time).
pub fn parse_datetime(text: &str) -> anyhow::Result<i64> {
    let fail =
        |why: &str| anyhow::anyhow!("`{text}` is not YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM]: {why}");
    let b = text.as_bytes();
    let digits = |from: usize, n: usize| -> Option<i64> {
        let part = b.get(from..from + n)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
        })
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return Err(fail("wrong layout"));
    }
    let field = |from, n| digits(from, n).ok_or_else(|| fail("expected digits"));
    let (year, month, day) = (field(0, 4)?, field(5, 2)?, field(8, 2)?);
    let (hour, minute, second) = (field(11, 2)?, field(14, 2)?, field(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(fail("no such date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(fail("no such time"));
    }
    let mut pos = 19;
    let mut millis = 0;
    if sep(pos, b'.') {
        let start = pos + 1;
        pos = start;
        while b.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        let n = pos - start;
        if n == 0 || n > 9 {
            return Err(fail("the fraction needs 1 to 9 digits"));
        }
        // Milliseconds: the first three digits, padded.
        let first = digits(start, n.min(3)).ok_or_else(|| fail("bad fraction"))?;
        millis = first * 10i64.pow(3 - n.min(3) as u32);
    }
    let offset_minutes = match &b[pos..] {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (field(pos + 1, 2)?, field(pos + 4, 2)?);
            if h > 23 || m > 59 {
                return Err(fail("no such zone offset"));
            }
            if *sign == b'+' {
                h * 60 + m
            } else {
                -(h * 60 + m)
            }
        }
        _ => return Err(fail("unexpected text after the time")),
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date. Counting years from
/// March makes the leap day the last day of its year, so whole 400-year
/// cycles (146097 days) and a linear day-of-year formula suffice.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let cycle = y.div_euclid(400);
    let year_of_cycle = y - cycle * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_cycle = year_of_cycle * 365 + year_of_cycle / 4 - year_of_cycle / 100 + day_of_year;
    // 719468: days from 0000-03-01 to 1970-01-01.
    cycle * 146_097 + day_of_cycle - 719_468
}

/// The new offset of one partition, clamped to the log like Kafka's tool.
pub fn plan_offset(to: ResetTo, p: &PartitionOffsets) -> Result<i64, String> {
    let clamp = |o: i64| o.clamp(p.earliest, p.latest.max(p.earliest));
    match to {
        ResetTo::Earliest => Ok(p.earliest),
        ResetTo::Latest => Ok(p.latest),
        ResetTo::Offset(o) => Ok(clamp(o)),
        // No record that recent: the end of the log.
        ResetTo::Timestamp(_) => Ok(p.at_time.filter(|&o| o >= 0).unwrap_or(p.latest)),
        ResetTo::ShiftBy(n) => match p.committed {
            Some(c) => Ok(clamp(c.saturating_add(n))),
            None => Err("no committed offset to shift".to_string()),
        },
    }
}

/// The new offsets of all partitions, or the first partition that has none.
pub fn plan(
    to: ResetTo,
    partitions: &BTreeMap<(String, i32), PartitionOffsets>,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    partitions
        .iter()
        .map(|((topic, p), offsets)| match plan_offset(to, offsets) {
            Ok(o) => Ok(((topic.clone(), *p), o)),
            Err(why) => Err(anyhow::anyhow!("cannot reset {topic}-{p}: {why}")),
        })
        .collect()
}

fn reset_to(args: &ResetArgs) -> anyhow::Result<ResetTo> {
    Ok(if args.to_earliest {
        ResetTo::Earliest
    } else if args.to_latest {
        ResetTo::Latest
    } else if let Some(o) = args.to_offset {
        ResetTo::Offset(o)
    } else if let Some(text) = &args.to_datetime {
        ResetTo::Timestamp(parse_datetime(text).context("--to-datetime")?)
    } else if let Some(ms) = args.to_timestamp {
        ResetTo::Timestamp(ms)
    } else if let Some(n) = args.shift_by {
        ResetTo::ShiftBy(n)
    } else {
        bail!("give one of --to-earliest, --to-latest, --to-offset, --to-datetime, --to-timestamp, --shift-by")
    })
}

async fn reset_offsets(client: &mut Client, args: ResetArgs) -> anyhow::Result<()> {
    let to = reset_to(&args)?;
    let specs: Vec<(String, Option<Vec<i32>>)> = args
        .topic
        .iter()
        .map(|s| parse_topic_spec(s))
        .collect::<anyhow::Result<_>>()?;
    let group = args.group.as_str();
    let desc = describe_one(client, group).await?;
    if desc.exists() && desc.state != "Empty" {
        bail!(
            "cannot reset offsets of group `{group}`: it is {} with {} member(s); offsets can only be reset \
             while the group is inactive (stop its consumers first)",
            desc.state,
            desc.members.len()
        );
    }
    let committed = client
        .fetch_committed_offsets(group)
        .await
        .with_context(|| format!("fetch committed offsets of `{group}`"))?;

    let mut targets: BTreeSet<(String, i32)> = BTreeSet::new();
    if args.all_topics {
        if committed.is_empty() {
            bail!("group `{group}` has no committed offsets; name topics with --topic");
        }
        targets.extend(committed.keys().cloned());
    } else {
        let names: Vec<String> = specs.iter().map(|(t, _)| t.clone()).collect();
        let meta = client
            .metadata(Some(names))
            .await
            .context("look up topics")?;
        for (topic, wanted) in &specs {
            let t = meta
                .topics
                .iter()
                .find(|t| &t.name == topic)
                .with_context(|| format!("no metadata for `{topic}`"))?;
            if t.error_code != 0 {
                bail!("topic `{topic}`: {}", super::code_name(t.error_code));
            }
            let have: BTreeSet<i32> = t.partitions.iter().map(|p| p.partition).collect();
            match wanted {
                None => targets.extend(have.iter().map(|&p| (topic.clone(), p))),
                Some(ps) => {
                    for &p in ps {
                        if !have.contains(&p) {
                            bail!("topic `{topic}` has no partition {p}");
                        }
                        targets.insert((topic.clone(), p));
                    }
                }
            }
        }
    }

    let mut offsets = BTreeMap::new();
    for (topic, p) in targets {
        let lookup = |what: &str| format!("{what} offset of {topic}-{p}");
        let earliest = client
            .list_offsets(&topic, p, -2)
            .await
            .with_context(|| lookup("earliest"))?
            .0;
        let latest = client
            .list_offsets(&topic, p, -1)
            .await
            .with_context(|| lookup("latest"))?
            .0;
        let at_time = match to {
            ResetTo::Timestamp(ts) => Some(
                client
                    .list_offsets(&topic, p, ts)
                    .await
                    .with_context(|| lookup("timed"))?
                    .0,
            ),
            _ => None,
        };
        let current = committed.get(&(topic.clone(), p)).map(|c| c.offset);
        offsets.insert(
            (topic, p),
            PartitionOffsets {
                earliest,
                latest,
                committed: current,
                at_time,
            },
        );
    }
    let planned = plan(to, &offsets)?;
    if args.execute {
        client.commit_offsets(group, &planned).await.map_err(|e| {
            anyhow::anyhow!("cannot commit offsets of group `{group}`: {}", explain(&e))
        })?;
    }
    let rows: Vec<Vec<String>> = planned
        .iter()
        .map(|((topic, p), o)| {
            vec![
                group.to_string(),
                topic.clone(),
                p.to_string(),
                o.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(Some(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]), &rows)
    );
    if !args.execute {
        eprintln!("Dry run: nothing was changed. Add --execute to commit these offsets.");
    }
    Ok(())
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
