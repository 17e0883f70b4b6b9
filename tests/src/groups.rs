//! Looking at consumer groups from the outside with raw requests: a group's
//! committed offsets (OffsetFetch) and its state, members and assignments
//! (DescribeGroups), plus bounded waits on them.
//!
//! The group tests drive real clients (kcat, confluent-kafka, kafka-python,
//! aiokafka) and use these to check what the coordinator recorded, without
//! trusting the client under test to report it.

use std::{
    collections::{BTreeMap, BTreeSet},
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, ensure, Context, Result};
use bytes::Buf;
use kafka_protocol::{
    messages::{
        offset_fetch_request::OffsetFetchRequestTopic, ConsumerProtocolAssignment,
        DescribeGroupsRequest, GroupId, OffsetFetchRequest,
    },
    protocol::{Decodable, StrBytes},
};

use crate::{
    kafka::{topic_name, KafkaConn},
    process::Background,
};

/// One member of a group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The coordinator-assigned member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// Topic -> partitions, decoded from the consumer protocol assignment.
    pub assignment: BTreeMap<String, BTreeSet<i32>>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Error code of the group's entry (0 when described).
    pub error_code: i16,
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable` or `Dead`.
    pub state: String,
    /// The chosen assignor (`range`, `cooperative-sticky`, ...).
    pub protocol: String,
    /// The members, in the order the broker lists them.
    pub members: Vec<MemberInfo>,
}

impl GroupInfo {
    /// The partitions of `topic` assigned to any member, with how many
    /// members each is assigned to.
    pub fn owners(&self, topic: &str) -> BTreeMap<i32, usize> {
        let mut out = BTreeMap::new();
        for m in &self.members {
            for p in m.assignment.get(topic).into_iter().flatten() {
                *out.entry(*p).or_insert(0) += 1;
            }
        }
        out
    }

    /// True when the group is `Stable` with `members` members and every one
    /// of `partitions` partitions of `topic` is assigned to exactly one member.
    pub fn is_balanced(&self, topic: &str, members: usize, partitions: i32) -> bool {
        let owners = self.owners(topic);
        self.state == "Stable"
            && self.members.len() == members
            && owners.len() == partitions as usize
            && (0..partitions).all(|p| owners.get(&p) == Some(&1))
    }
}

/// DescribeGroups for one group.
pub fn describe_group(conn: &mut KafkaConn, group: &str) -> Result<GroupInfo> {
    let req = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    let resp = conn.call(&req, 5).context("DescribeGroups")?;
    let g = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("empty DescribeGroups response"))?;
    let mut members = Vec::new();
    for m in g.members {
        let assignment = decode_assignment(&m.member_assignment)
            .with_context(|| format!("assignment of member {}", m.member_id.as_str()))?;
        members.push(MemberInfo {
            member_id: m.member_id.to_string(),
            instance_id: m.group_instance_id.map(|s| s.to_string()),
            client_id: m.client_id.to_string(),
            assignment,
        });
    }
    Ok(GroupInfo {
        error_code: g.error_code,
        state: g.group_state.to_string(),
        protocol: g.protocol_data.to_string(),
        members,
    })
}

/// Decodes a consumer protocol assignment (`version: i16` then the struct);
/// an empty blob is an empty assignment.
pub fn decode_assignment(bytes: &[u8]) -> Result<BTreeMap<String, BTreeSet<i32>>> {
    let mut out = BTreeMap::new();
    if bytes.is_empty() {
        return Ok(out);
    }
    let mut buf = bytes::Bytes::copy_from_slice(bytes);
    ensure!(buf.remaining() >= 2, "assignment of {} bytes", bytes.len());
    let version = buf.get_i16().clamp(0, 3);
    let a = ConsumerProtocolAssignment::decode(&mut buf, version)?;
    for tp in a.assigned_partitions {
        out.entry(tp.topic.to_string())
            .or_insert_with(BTreeSet::new)
            .extend(tp.partitions);
    }
    Ok(out)
}

/// The committed offsets of `group` for `partitions` partitions of `topic`
/// (OffsetFetch): partition -> offset, partitions without a commit left out.
pub fn committed_offsets(
    conn: &mut KafkaConn,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, i64>> {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partition_indexes((0..partitions).collect())]));
    // v7 is the last version with a single group and named topics.
    let resp = conn.call(&req, 7).context("OffsetFetch")?;
    ensure!(
        resp.error_code == 0,
        "OffsetFetch {group}: error code {}",
        resp.error_code
    );
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            ensure!(
                p.error_code == 0,
                "OffsetFetch {group} {topic}-{}: error code {}",
                p.partition_index,
                p.error_code
            );
            if p.committed_offset >= 0 {
                out.insert(p.partition_index, p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// Polls DescribeGroups until `done` holds (returning that description) or
/// `timeout` passes (panicking with the last description and `what`).
pub fn wait_for_group(
    conn: &mut KafkaConn,
    group: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&GroupInfo) -> bool,
) -> GroupInfo {
    let deadline = Instant::now() + timeout;
    loop {
        let info = describe_group(conn, group)
            .unwrap_or_else(|e| panic!("describing group {group}: {e:#}"));
        if done(&info) {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "group {group}: {what} not reached within {timeout:?}; last seen {info:#?}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the background process has printed a complete JSON line on
/// stdout and returns it parsed; panics after `timeout` with its output.
pub fn wait_json_line(bg: &Background, timeout: Duration, what: &str) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let out = bg.stdout();
        if let Some(line) = out
            .lines()
            .zip(out.split_inclusive('\n'))
            .filter(|(_, raw)| raw.ends_with('\n'))
            .map(|(l, _)| l.trim())
            .find(|l| l.starts_with('{'))
        {
            return serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what}: bad JSON line {line:?}: {e}"));
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no JSON line within {timeout:?}\n--- stdout ---\n{out}\n--- stderr ---\n{}",
            bg.stderr()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// [`crate::run_py`], also passing the script's stderr (its progress
/// lines) on to the test's stderr, so `--nocapture` shows what happened.
#[track_caller]
pub fn run_py_logged(script: &str, args: &[&str]) -> String {
    let out = crate::run_cmd(
        &mut crate::py_command(script, args),
        None,
        crate::PY_TIMEOUT,
    );
    eprint!("{}", out.stderr);
    out.assert_success(&format!("python script {script} {args:?}"));
    out.stdout
}
