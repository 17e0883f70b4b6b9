//! The record formats of `__consumer_offsets`, byte-compatible with Kafka's
//! (the coordinator-common message schemas): `OffsetCommitKey` v1 /
//! `OffsetCommitValue` v3 for committed offsets and `GroupMetadataKey` v2 /
//! `GroupMetadataValue` v3 for group metadata. A record without a value
//! (a tombstone) deletes what its key names.
//!
//! The schemas are small and not flexible at these versions, so they are
//! encoded by hand: int16 version prefix, then big-endian fields, strings as
//! int16 length + UTF-8 (-1 for null), byte arrays as int32 length + bytes.
//! Decoders accept every older value version too, so logs written by older
//! Kafka-style writers load.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// What a record key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// A committed offset of one partition for one group.
    Offset {
        /// The group id.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// A group's metadata.
    Group {
        /// The group id.
        group: String,
    },
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record (-1 unknown).
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When the commit was made (ms since the epoch).
    pub commit_timestamp: i64,
    /// Explicit expiry (only value v1 carries one; -1 none).
    pub expire_timestamp: i64,
}

/// One member of a stored group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any.
    pub group_instance_id: Option<String>,
    /// The client id.
    pub client_id: String,
    /// The client host.
    pub client_host: String,
    /// The rebalance timeout (ms).
    pub rebalance_timeout_ms: i32,
    /// The session timeout (ms).
    pub session_timeout_ms: i32,
    /// The member's metadata for the selected protocol.
    pub subscription: Bytes,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// A group's metadata as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// The protocol type (`consumer`, `connect`, ...).
    pub protocol_type: String,
    /// The generation.
    pub generation: i32,
    /// The selected protocol, if any.
    pub protocol: Option<String>,
    /// The leader's member id, if any.
    pub leader: Option<String>,
    /// When the group entered its current state (ms; -1 unknown).
    pub current_state_timestamp: i64,
    /// The members.
    pub members: Vec<MemberValue>,
}

/// A record that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes end before the schema does.
    #[error("record truncated")]
    Truncated,
    /// A version this broker does not know.
    #[error("unknown {what} version {version}")]
    UnknownVersion {
        /// Key or value.
        what: &'static str,
        /// The version found.
        version: i16,
    },
    /// A string that is not UTF-8.
    #[error("string is not UTF-8")]
    BadString,
}

/// Version written for offset commit keys.
const OFFSET_KEY_VERSION: i16 = 1;
/// Version written for offset commit values.
const OFFSET_VALUE_VERSION: i16 = 3;
/// Version written for group metadata keys.
const GROUP_KEY_VERSION: i16 = 2;
/// Version written for group metadata values.
const GROUP_VALUE_VERSION: i16 = 3;

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn put_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

/// A cursor over a record's bytes that fails instead of panicking.
struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), RecordError> {
        if self.0.remaining() < n {
            Err(RecordError::Truncated)
        } else {
            Ok(())
        }
    }

    fn i16(&mut self) -> Result<i16, RecordError> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }

    fn nullable_str(&mut self) -> Result<Option<String>, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        self.need(len as usize)?;
        let raw = self.0.split_to(len as usize);
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| RecordError::BadString)
    }

    fn str(&mut self) -> Result<String, RecordError> {
        Ok(self.nullable_str()?.unwrap_or_default())
    }

    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        self.need(len as usize)?;
        Ok(self.0.split_to(len as usize))
    }
}

impl RecordKey {
    /// The group the key belongs to.
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }

    /// Encodes the key (OffsetCommitKey v1 or GroupMetadataKey v2).
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(64);
        match self {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                buf.put_i16(OFFSET_KEY_VERSION);
                put_str(&mut buf, group);
                put_str(&mut buf, topic);
                buf.put_i32(*partition);
            }
            RecordKey::Group { group } => {
                buf.put_i16(GROUP_KEY_VERSION);
                put_str(&mut buf, group);
            }
        }
        buf.freeze()
    }

    /// Decodes a key; versions 0 and 1 are offset commits, 2 group metadata.
    pub fn decode(bytes: Bytes) -> Result<Self, RecordError> {
        let mut r = Reader(bytes);
        match r.i16()? {
            0 | 1 => Ok(RecordKey::Offset {
                group: r.str()?,
                topic: r.str()?,
                partition: r.i32()?,
            }),
            2 => Ok(RecordKey::Group { group: r.str()? }),
            version => Err(RecordError::UnknownVersion {
                what: "key",
                version,
            }),
        }
    }
}

impl OffsetValue {
    /// Encodes as OffsetCommitValue v3.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(32 + self.metadata.len());
        buf.put_i16(OFFSET_VALUE_VERSION);
        buf.put_i64(self.offset);
        buf.put_i32(self.leader_epoch);
        put_str(&mut buf, &self.metadata);
        buf.put_i64(self.commit_timestamp);
        buf.freeze()
    }

    /// Decodes OffsetCommitValue v0-v3.
    pub fn decode(bytes: Bytes) -> Result<Self, RecordError> {
        let mut r = Reader(bytes);
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return Err(RecordError::UnknownVersion {
                what: "offset value",
                version,
            });
        }
        let offset = r.i64()?;
        let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
        let metadata = r.str()?;
        let commit_timestamp = r.i64()?;
        let expire_timestamp = if version == 1 { r.i64()? } else { -1 };
        Ok(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
            expire_timestamp,
        })
    }
}

impl GroupValue {
    /// Encodes as GroupMetadataValue v3.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(128);
        buf.put_i16(GROUP_VALUE_VERSION);
        put_str(&mut buf, &self.protocol_type);
        buf.put_i32(self.generation);
        put_nullable_str(&mut buf, self.protocol.as_deref());
        put_nullable_str(&mut buf, self.leader.as_deref());
        buf.put_i64(self.current_state_timestamp);
        buf.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut buf, &m.member_id);
            put_nullable_str(&mut buf, m.group_instance_id.as_deref());
            put_str(&mut buf, &m.client_id);
            put_str(&mut buf, &m.client_host);
            buf.put_i32(m.rebalance_timeout_ms);
            buf.put_i32(m.session_timeout_ms);
            put_bytes(&mut buf, &m.subscription);
            put_bytes(&mut buf, &m.assignment);
        }
        buf.freeze()
    }

    /// Decodes GroupMetadataValue v0-v3.
    pub fn decode(bytes: Bytes) -> Result<Self, RecordError> {
        let mut r = Reader(bytes);
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return Err(RecordError::UnknownVersion {
                what: "group value",
                version,
            });
        }
        let protocol_type = r.str()?;
        let generation = r.i32()?;
        let protocol = r.nullable_str()?;
        let leader = r.nullable_str()?;
        let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
        let count = r.i32()?.max(0);
        let mut members = Vec::new();
        for _ in 0..count {
            let member_id = r.str()?;
            let group_instance_id = if version >= 3 {
                r.nullable_str()?
            } else {
                None
            };
            let client_id = r.str()?;
            let client_host = r.str()?;
            let session_first = version == 0;
            let (rebalance_timeout_ms, session_timeout_ms) = if session_first {
                let s = r.i32()?;
                (s, s)
            } else {
                (r.i32()?, r.i32()?)
            };
            let subscription = r.bytes()?;
            let assignment = r.bytes()?;
            members.push(MemberValue {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription,
                assignment,
            });
        }
        Ok(GroupValue {
            protocol_type,
            generation,
            protocol,
            leader,
            current_state_timestamp,
            members,
        })
    }
}

/// The topics of a `consumer` protocol subscription (ConsumerProtocolSubscription,
/// any version: the topic list always comes first), or `None` if it does not parse.
pub fn subscribed_topics(metadata: &Bytes) -> Option<Vec<String>> {
    let mut r = Reader(metadata.clone());
    let _version = r.i16().ok()?;
    let count = r.i32().ok()?;
    if count < 0 || count as usize > metadata.len() {
        return None;
    }
    (0..count).map(|_| r.str().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_key_and_value_round_trip() {
        let key = RecordKey::Offset {
            group: "g".into(),
            topic: "orders".into(),
            partition: 7,
        };
        let bytes = key.encode();
        // int16 version 1, "g", "orders", partition 7.
        assert_eq!(
            &bytes[..],
            b"\x00\x01\x00\x01g\x00\x06orders\x00\x00\x00\x07"
        );
        assert_eq!(RecordKey::decode(bytes).unwrap(), key);
        let value = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp: 1_700_000_000_000,
            expire_timestamp: -1,
        };
        let bytes = value.encode();
        assert_eq!(&bytes[..2], &[0, 3]);
        assert_eq!(OffsetValue::decode(bytes).unwrap(), value);
    }

    #[test]
    fn group_key_and_value_round_trip() {
        let key = RecordKey::Group {
            group: "grp".into(),
        };
        assert_eq!(&key.encode()[..], b"\x00\x02\x00\x03grp");
        assert_eq!(RecordKey::decode(key.encode()).unwrap(), key);
        let value = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp: 123,
            members: vec![
                MemberValue {
                    member_id: "m1".into(),
                    group_instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                },
                MemberValue {
                    member_id: "m2".into(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "".into(),
                    rebalance_timeout_ms: 1,
                    session_timeout_ms: 2,
                    subscription: Bytes::new(),
                    assignment: Bytes::new(),
                },
            ],
        };
        assert_eq!(GroupValue::decode(value.encode()).unwrap(), value);
        let empty = GroupValue {
            protocol: None,
            leader: None,
            members: vec![],
            ..value
        };
        assert_eq!(GroupValue::decode(empty.encode()).unwrap(), empty);
    }

    #[test]
    fn old_value_versions_decode() {
        // OffsetCommitValue v1: offset, metadata, commit ts, expire ts.
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        buf.put_i64(10);
        put_str(&mut buf, "m");
        buf.put_i64(100);
        buf.put_i64(200);
        let v = OffsetValue::decode(buf.freeze()).unwrap();
        assert_eq!(
            (
                v.offset,
                v.leader_epoch,
                v.commit_timestamp,
                v.expire_timestamp
            ),
            (10, -1, 100, 200)
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(
            RecordKey::decode(Bytes::from_static(b"\x00")),
            Err(RecordError::Truncated)
        );
        assert!(matches!(
            RecordKey::decode(Bytes::from_static(b"\x00\x09")),
            Err(RecordError::UnknownVersion { .. })
        ));
        assert_eq!(
            OffsetValue::decode(Bytes::from_static(b"\x00\x03\x00\x00")),
            Err(RecordError::Truncated)
        );
        assert!(GroupValue::decode(Bytes::from_static(b"\x00\x03\x7f\xff")).is_err());
    }

    #[test]
    fn consumer_subscription_topics() {
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        buf.put_i32(2);
        put_str(&mut buf, "a");
        put_str(&mut buf, "b");
        buf.put_i32(-1); // user data
        assert_eq!(
            subscribed_topics(&buf.freeze()),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(subscribed_topics(&Bytes::from_static(b"\x00")), None);
    }
}
