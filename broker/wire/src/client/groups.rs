//! Consumer group administration: FindCoordinator, ListGroups,
//! DescribeGroups, DeleteGroups, OffsetFetch, OffsetCommit and OffsetDelete.
//!
//! What `kafka-consumer-groups.sh` and Kafka's AdminClient do, for the CLI
//! and the tests. Group requests go to the group's coordinator, looked up
//! with FindCoordinator before each call: admin tools make few calls, and a
//! fresh lookup never acts on a stale answer. A NOT_COORDINATOR answer (or a
//! failed connection to the coordinator) reloads metadata and retries once;
//! while the coordinator is loading or not yet elected, calls are retried
//! with backoff for a bounded time ([`COORDINATOR_WAIT`]).
//!
//! Offsets are committed as an admin, like AdminClient's
//! `alterConsumerGroupOffsets`: generation -1 and no member id, which a
//! broker accepts only while the group has no active members.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use kafka_protocol::{
    messages::{
        describe_groups_response::{DescribedGroup, DescribedGroupMember},
        offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
        offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic},
        offset_fetch_request::OffsetFetchRequestGroup,
        ApiKey, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
        ListGroupsRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, TopicName,
    },
    protocol::{Message, StrBytes, VersionRange},
};

use super::{BrokerInfo, Client};
use crate::error::ClientError;

/// COORDINATOR_LOAD_IN_PROGRESS: the coordinator is still reading its log.
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
/// COORDINATOR_NOT_AVAILABLE: no coordinator yet (e.g. `__consumer_offsets`
/// has no leader).
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// NOT_COORDINATOR: the broker asked is not (or no longer) the coordinator.
const NOT_COORDINATOR: i16 = 16;
/// GROUP_ID_NOT_FOUND: DescribeGroups v6+ and DeleteGroups for unknown groups.
const GROUP_ID_NOT_FOUND: i16 = 69;

/// How long a call keeps retrying while the coordinator is loading or not
/// available, before it gives up with that error.
pub const COORDINATOR_WAIT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// FindCoordinator's key type for consumer groups.
const KEY_TYPE_GROUP: i8 = 0;
/// FindCoordinator's key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;
/// The first FindCoordinator version with batched `coordinator_keys`.
const FIRST_BATCHED_FIND_COORDINATOR: i16 = 4;
/// The first OffsetFetch version with the batched `groups` form.
const FIRST_BATCHED_OFFSET_FETCH: i16 = 8;
/// OffsetFetch v1 cannot ask for "all topics" (a null topic list).
const FIRST_OFFSET_FETCH_ALL_TOPICS: i16 = 2;

/// The protocol type of groups formed by Kafka consumers: the only kind
/// whose member assignments have a format this client knows.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// `consumer` for Kafka consumers, `connect` for Kafka Connect, ...;
    /// empty for a group that only has committed offsets.
    pub protocol_type: String,
    /// Kafka's group state (`Empty`, `Stable`, `PreparingRebalance`, ...);
    /// empty when the broker answered ListGroups older than v4.
    pub state: String,
}

/// One group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// Kafka error code for this group (0 if none), e.g. 69 GROUP_ID_NOT_FOUND.
    pub error_code: i16,
    /// Kafka's group state; `Dead` for a group that does not exist.
    pub state: String,
    /// The protocol type, e.g. `consumer`.
    pub protocol_type: String,
    /// The chosen protocol, e.g. the assignor `range`.
    pub protocol: String,
    /// Current members.
    pub members: Vec<MemberDescription>,
}

impl GroupDescription {
    /// Whether the coordinator knows the group (it is not `Dead` and not
    /// reported as GROUP_ID_NOT_FOUND).
    pub fn exists(&self) -> bool {
        self.error_code != GROUP_ID_NOT_FOUND && self.state != "Dead"
    }
}

/// One group member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id the coordinator assigned.
    pub member_id: String,
    /// The static member id (`group.instance.id`), if any.
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// Where the member connects from, as the broker saw it (`/127.0.0.1`).
    pub client_host: String,
    /// Assigned partitions by topic, decoded from the consumer protocol;
    /// empty for groups of another protocol type or before the first sync.
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// A committed offset as OffsetFetch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset the group will consume.
    pub offset: i64,
    /// The leader epoch of the committed record, -1 if unknown.
    pub leader_epoch: i32,
    /// The metadata string committed with the offset.
    pub metadata: Option<String>,
}

/// Bounded exponential backoff while a coordinator is loading.
struct Backoff {
    started: Instant,
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            started: Instant::now(),
            next: FIRST_BACKOFF,
        }
    }

    /// Sleeps before the next attempt; `false` (without sleeping) once
    /// [`COORDINATOR_WAIT`] is used up.
    async fn pause(&mut self) -> bool {
        if self.started.elapsed() >= COORDINATOR_WAIT {
            return false;
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        true
    }
}

/// Whether the coordinator is coming up: worth waiting for.
fn coordinator_loading(err: &ClientError) -> bool {
    matches!(
        err.kafka_code(),
        Some(COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE)
    )
}

/// Whether the coordinator moved or could not be reached: worth one
/// fresh lookup.
fn coordinator_moved(err: &ClientError) -> bool {
    match err {
        ClientError::Kafka { code, .. } => *code == NOT_COORDINATOR,
        ClientError::Send(_)
        | ClientError::Receive(_)
        | ClientError::Closed
        | ClientError::Connect { .. }
        | ClientError::Timeout => true,
        _ => false,
    }
}

/// Whether a per-group or per-partition error code is about the
/// coordinator rather than the group, so the whole call should be retried.
fn is_coordinator_code(code: i16) -> bool {
    matches!(
        code,
        COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
    )
}

/// Runs `$call` against the coordinator of `$group` (bound to `$node`):
/// after NOT_COORDINATOR or a connection failure it reloads metadata, looks
/// the coordinator up again and retries once; while the coordinator is
/// loading it retries with backoff for at most [`COORDINATOR_WAIT`].
macro_rules! at_coordinator {
    ($self:ident, $group:expr, |$node:ident| $call:expr) => {{
        let mut refreshed = false;
        let mut backoff = Backoff::new();
        loop {
            let $node = $self.find_coordinator($group).await?;
            // The call runs in its own async block so that `?` inside it
            // yields an error here instead of returning from the method.
            match async { $call }.await {
                Err(e) if !refreshed && coordinator_moved(&e) => {
                    tracing::debug!(group = %$group, error = %e, "looking up the coordinator again");
                    refreshed = true;
                    $self.metadata(Some(Vec::new())).await?;
                }
                Err(e) if coordinator_loading(&e) => {
                    if !backoff.pause().await {
                        break Err(e);
                    }
                }
                other => break other,
            }
        }
    }};
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn group_id(s: &str) -> GroupId {
    GroupId(str_bytes(s))
}

/// A Kafka error for `code` that names the group (and partition) it is about.
fn group_error(code: i16, group: &str, partition: Option<(&str, i32)>) -> ClientError {
    let what = match partition {
        Some((topic, p)) => format!("group `{group}`, partition {topic}-{p}"),
        None => format!("group `{group}`"),
    };
    ClientError::kafka(code, Some(&what))
}

/// `Ok` for 0, else [`group_error`].
fn check_group(code: i16, group: &str, partition: Option<(&str, i32)>) -> Result<(), ClientError> {
    if code == 0 {
        Ok(())
    } else {
        Err(group_error(code, group, partition))
    }
}

impl Client {
    /// The node id of `group`'s coordinator. Waits (bounded by
    /// [`COORDINATOR_WAIT`]) while the broker answers
    /// COORDINATOR_NOT_AVAILABLE or COORDINATOR_LOAD_IN_PROGRESS. A
    /// coordinator missing from the cached metadata is learnt from the
    /// answer, so the next request can reach it.
    pub async fn find_coordinator(&mut self, group: &str) -> Result<i32, ClientError> {
        self.find_coordinator_of(group, KEY_TYPE_GROUP).await
    }

    /// The node id of transactional id `id`'s transaction coordinator
    /// (waits like [`Client::find_coordinator`]).
    pub async fn find_transaction_coordinator(&mut self, id: &str) -> Result<i32, ClientError> {
        self.find_coordinator_of(id, KEY_TYPE_TRANSACTION).await
    }

    async fn find_coordinator_of(&mut self, group: &str, key_type: i8) -> Result<i32, ClientError> {
        let mut backoff = Backoff::new();
        loop {
            match self.find_coordinator_once(group, key_type).await {
                Err(e) if coordinator_loading(&e) => {
                    tracing::debug!(%group, error = %e, "coordinator not ready");
                    if !backoff.pause().await {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    async fn find_coordinator_once(
        &mut self,
        group: &str,
        key_type: i8,
    ) -> Result<i32, ClientError> {
        let conn = self.any_connection().await?;
        let version = conn.version_for::<FindCoordinatorRequest>()?;
        let mut request = FindCoordinatorRequest::default();
        // v4 replaced `key` with the batched `coordinator_keys`; the encoder
        // refuses a field its version does not have, so set only one.
        if version >= FIRST_BATCHED_FIND_COORDINATOR {
            request.coordinator_keys = vec![str_bytes(group)];
        } else {
            request.key = str_bytes(group);
        }
        if version >= 1 {
            request.key_type = key_type;
        } else if key_type != KEY_TYPE_GROUP {
            return Err(ClientError::Protocol(
                "FindCoordinator v0 finds only group coordinators".into(),
            ));
        }
        let response = conn.send_with_version(request, version).await?;
        let (node_id, host, port) = if version >= FIRST_BATCHED_FIND_COORDINATOR {
            let c = response
                .coordinators
                .into_iter()
                .find(|c| c.key.as_str() == group)
                .ok_or_else(|| {
                    ClientError::Protocol(format!("FindCoordinator: no answer for group {group}"))
                })?;
            ClientError::check(c.error_code, c.error_message.as_deref())?;
            (c.node_id.0, c.host.to_string(), c.port)
        } else {
            ClientError::check(response.error_code, response.error_message.as_deref())?;
            (response.node_id.0, response.host.to_string(), response.port)
        };
        if node_id < 0 {
            return Err(ClientError::kafka(
                COORDINATOR_NOT_AVAILABLE,
                Some("FindCoordinator named no node"),
            ));
        }
        self.learn_broker(BrokerInfo {
            node_id,
            host,
            port,
            rack: None,
        });
        Ok(node_id)
    }

    /// Remembers a broker named outside Metadata (by FindCoordinator), so
    /// that [`Client::connection`] can dial it. A broker whose address
    /// changed gets a fresh connection.
    fn learn_broker(&mut self, broker: BrokerInfo) {
        let known = self.brokers.get(&broker.node_id);
        if known.is_some_and(|b| b.addr() == broker.addr()) {
            return;
        }
        self.conns.remove(&broker.node_id);
        let broker = match known {
            Some(b) => BrokerInfo {
                rack: b.rack.clone(),
                ..broker
            },
            None => broker,
        };
        self.brokers.insert(broker.node_id, broker);
    }

    /// All groups of the cluster, asking every broker in the metadata (each
    /// knows only the groups it coordinates), ordered by group id.
    pub async fn list_groups(&mut self) -> Result<Vec<GroupListing>, ClientError> {
        self.metadata(Some(Vec::new())).await?;
        let nodes: Vec<i32> = self.brokers.keys().copied().collect();
        let mut groups = BTreeMap::new();
        for node in nodes {
            let mut backoff = Backoff::new();
            let response = loop {
                let response = self.send_to(node, ListGroupsRequest::default()).await?;
                match ClientError::check(response.error_code, None) {
                    Ok(()) => break response,
                    Err(e) if coordinator_loading(&e) => {
                        if !backoff.pause().await {
                            return Err(e);
                        }
                    }
                    Err(e) => return Err(e),
                }
            };
            for g in response.groups {
                let listing = GroupListing {
                    group_id: g.group_id.0.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state: g.group_state.to_string(),
                };
                groups.insert(listing.group_id.clone(), listing);
            }
        }
        Ok(groups.into_values().collect())
    }

    /// Describes groups, in the order asked. A group that does not exist
    /// comes back with state `Dead` (or error GROUP_ID_NOT_FOUND), not as an
    /// error: see [`GroupDescription::exists`]. Member assignments of
    /// `consumer` groups are decoded; a malformed one is logged and left empty.
    pub async fn describe_groups(
        &mut self,
        groups: &[&str],
    ) -> Result<Vec<GroupDescription>, ClientError> {
        let mut out = Vec::with_capacity(groups.len());
        // One request per group: each group may have its own coordinator.
        for &group in groups {
            let described = at_coordinator!(self, group, |node| {
                let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
                let response = self.send_to(node, request).await?;
                let g = response
                    .groups
                    .into_iter()
                    .find(|g| g.group_id.0.as_str() == group)
                    .ok_or_else(|| {
                        ClientError::Protocol(format!(
                            "DescribeGroups: no answer for group {group}"
                        ))
                    })?;
                if is_coordinator_code(g.error_code) {
                    Err(group_error(g.error_code, group, None))
                } else {
                    Ok(g)
                }
            })?;
            out.push(describe(described));
        }
        Ok(out)
    }

    /// Deletes groups (with their committed offsets). Fails with the first
    /// group's error, naming the group, e.g. NON_EMPTY_GROUP (68) while it
    /// has members or GROUP_ID_NOT_FOUND (69); groups before it are deleted.
    pub async fn delete_groups(&mut self, groups: &[&str]) -> Result<(), ClientError> {
        for &group in groups {
            at_coordinator!(self, group, |node| {
                let request =
                    DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
                let response = self.send_to(node, request).await?;
                let r = response
                    .results
                    .iter()
                    .find(|r| r.group_id.0.as_str() == group)
                    .ok_or_else(|| {
                        ClientError::Protocol(format!("DeleteGroups: no answer for group {group}"))
                    })?;
                check_group(r.error_code, group, None)
            })?;
        }
        Ok(())
    }

    /// Every committed offset of `group`, by (topic, partition). A group
    /// without commits (or unknown) yields an empty map. Partitions the
    /// broker reports an error for are skipped with a warning, as Kafka's
    /// AdminClient does.
    pub async fn fetch_committed_offsets(
        &mut self,
        group: &str,
    ) -> Result<BTreeMap<(String, i32), CommittedOffset>, ClientError> {
        at_coordinator!(self, group, |node| {
            self.fetch_committed_offsets_at(node, group).await
        })
    }

    async fn fetch_committed_offsets_at(
        &mut self,
        node: i32,
        group: &str,
    ) -> Result<BTreeMap<(String, i32), CommittedOffset>, ClientError> {
        let conn = self.connection(node).await?;
        let range = VersionRange {
            min: FIRST_OFFSET_FETCH_ALL_TOPICS,
            max: OffsetFetchRequest::VERSIONS.max,
        };
        let version = conn.negotiate(ApiKey::OffsetFetch, range)?;
        // `topics: None` means every topic the group has offsets for.
        let request = if version >= FIRST_BATCHED_OFFSET_FETCH {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(group_id(group))
                .with_topics(None)])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(group_id(group))
                .with_topics(None)
        };
        let response = conn.send_with_version(request, version).await?;
        // Flatten both response forms to (topic, partition, offset, epoch,
        // metadata, error).
        let mut entries = Vec::new();
        if version >= FIRST_BATCHED_OFFSET_FETCH {
            let g = response
                .groups
                .into_iter()
                .find(|g| g.group_id.0.as_str() == group)
                .ok_or_else(|| {
                    ClientError::Protocol(format!("OffsetFetch: no answer for group {group}"))
                })?;
            check_group(g.error_code, group, None)?;
            for t in g.topics {
                for p in t.partitions {
                    entries.push((
                        t.name.0.to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata,
                        p.error_code,
                    ));
                }
            }
        } else {
            check_group(response.error_code, group, None)?;
            for t in response.topics {
                for p in t.partitions {
                    entries.push((
                        t.name.0.to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata,
                        p.error_code,
                    ));
                }
            }
        }
        let mut offsets = BTreeMap::new();
        for (topic, partition, offset, leader_epoch, metadata, code) in entries {
            if is_coordinator_code(code) {
                return Err(group_error(code, group, Some((&topic, partition))));
            }
            if code != 0 {
                let e = ClientError::kafka(code, None);
                tracing::warn!(%group, %topic, partition, error = %e, "skipping committed offset");
                continue;
            }
            // -1: no commit (only returned when partitions are named).
            if offset < 0 {
                continue;
            }
            offsets.insert(
                (topic, partition),
                CommittedOffset {
                    offset,
                    leader_epoch,
                    metadata: metadata.map(|m| m.to_string()),
                },
            );
        }
        Ok(offsets)
    }

    /// Commits `offsets` for `group` as an admin (generation -1, no member
    /// id), like AdminClient's `alterConsumerGroupOffsets`. Brokers allow
    /// this only while the group has no active members and answer
    /// UNKNOWN_MEMBER_ID (25) or REBALANCE_IN_PROGRESS (27) otherwise.
    /// Fails with the first partition's error, naming group and partition.
    pub async fn commit_offsets(
        &mut self,
        group: &str,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), &offset) in offsets {
            by_topic.entry(topic).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(StrBytes::default())),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(TopicName(str_bytes(topic)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        at_coordinator!(self, group, |node| {
            let response = self.send_to(node, request.clone()).await?;
            response.topics.iter().try_for_each(|t| {
                t.partitions.iter().try_for_each(|p| {
                    check_group(p.error_code, group, Some((&t.name.0, p.partition_index)))
                })
            })
        })
    }

    /// Deletes the committed offsets of `partitions` from `group`. Fails
    /// with the group's error (e.g. GROUP_ID_NOT_FOUND) or the first
    /// partition's, e.g. GROUP_SUBSCRIBED_TO_TOPIC (86) while members of the
    /// group consume that topic.
    pub async fn delete_committed_offsets(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<(), ClientError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<&str, Vec<OffsetDeleteRequestPartition>> = BTreeMap::new();
        for (topic, partition) in partitions {
            by_topic
                .entry(topic)
                .or_default()
                .push(OffsetDeleteRequestPartition::default().with_partition_index(*partition));
        }
        let request = OffsetDeleteRequest::default()
            .with_group_id(group_id(group))
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetDeleteRequestTopic::default()
                            .with_name(TopicName(str_bytes(topic)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        at_coordinator!(self, group, |node| {
            let response = self.send_to(node, request.clone()).await?;
            check_group(response.error_code, group, None)?;
            response.topics.iter().try_for_each(|t| {
                t.partitions.iter().try_for_each(|p| {
                    check_group(p.error_code, group, Some((&t.name.0, p.partition_index)))
                })
            })
        })
    }
}

/// Turns a DescribeGroups entry into a [`GroupDescription`].
fn describe(g: DescribedGroup) -> GroupDescription {
    let protocol_type = g.protocol_type.to_string();
    let consumer = protocol_type == CONSUMER_PROTOCOL_TYPE;
    let group = g.group_id.0.to_string();
    let members = g
        .members
        .into_iter()
        .map(|m| member(&group, consumer, m))
        .collect();
    GroupDescription {
        group_id: group,
        error_code: g.error_code,
        state: g.group_state.to_string(),
        protocol_type,
        protocol: g.protocol_data.to_string(),
        members,
    }
}

fn member(group: &str, consumer: bool, m: DescribedGroupMember) -> MemberDescription {
    let member_id = m.member_id.to_string();
    // Empty bytes: the member joined but the group has not synced yet.
    let assignment = if consumer && !m.member_assignment.is_empty() {
        decode_consumer_assignment(&m.member_assignment).unwrap_or_else(|e| {
            tracing::warn!(%group, member = %member_id, error = %e, "undecodable member assignment");
            Vec::new()
        })
    } else {
        Vec::new()
    };
    MemberDescription {
        member_id,
        group_instance_id: m.group_instance_id.map(|s| s.to_string()),
        client_id: m.client_id.to_string(),
        client_host: m.client_host.to_string(),
        assignment,
    }
}

/// Decodes a member assignment in Kafka's ConsumerProtocolAssignment
/// format: `version: i16`, then an array (i32 count) of `(topic: string
/// with i16 length, partitions: array of i32)`, then nullable bytes
/// `user_data` (i32 length, -1 for null). Versions 0-3 share exactly this
/// layout; a later version is read by the same prefix, as Kafka's consumer
/// does, ignoring whatever follows `user_data`.
///
/// Counts and lengths are checked against the bytes that remain before
/// anything is allocated, so hostile input fails fast and cheaply.
pub fn decode_consumer_assignment(bytes: &[u8]) -> Result<Vec<(String, Vec<i32>)>, ClientError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let version = r.i16()?;
    if version < 0 {
        return Err(r.fail(&format!("negative version {version}")));
    }
    // A topic takes at least its i16 name length and i32 partition count.
    let topics = r.count(2 + 4)?;
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        let topic = r.string()?;
        let n = r.count(4)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            partitions.push(r.i32()?);
        }
        out.push((topic, partitions));
    }
    // user_data: not kept, but it must be there and fit.
    let len = r.i32()?;
    if len < -1 {
        return Err(r.fail(&format!("invalid user_data length {len}")));
    }
    if len > 0 {
        r.take(len as usize)?;
    }
    Ok(out)
}

/// A bounds-checked big-endian reader over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn fail(&self, what: &str) -> ClientError {
        ClientError::Protocol(format!(
            "malformed consumer assignment at byte {} of {}: {what}",
            self.pos,
            self.buf.len()
        ))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ClientError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.fail(&format!("{n} bytes needed, truncated")))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn i16(&mut self) -> Result<i16, ClientError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, ClientError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An array count whose elements take at least `min_size` bytes each,
    /// refused if the remaining bytes cannot hold that many.
    fn count(&mut self, min_size: usize) -> Result<usize, ClientError> {
        let n = self.i32()?;
        let remaining = self.buf.len() - self.pos;
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(min_size) <= remaining => Ok(n),
            Ok(n) => Err(self.fail(&format!("array of {n} does not fit in {remaining} bytes"))),
            Err(_) => Err(self.fail(&format!("invalid array length {n}"))),
        }
    }

    fn string(&mut self) -> Result<String, ClientError> {
        let len = self.i16()?;
        let len =
            usize::try_from(len).map_err(|_| self.fail(&format!("invalid string length {len}")))?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| self.fail("topic name is not UTF-8"))
    }
}

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;
