//! Which cluster the brokers belong to, decided purely from their answers.
//!
//! The operator generates a KafkaCluster's id when it creates it
//! ([`new_cluster_id`]), records it in `status.clusterId` before any broker
//! exists, and starts every broker with it. From then on an admin answer is
//! only acted on when it provably comes from that cluster: [`verify`] turns
//! one reconcile's [`Observation`] (a Metadata answer, the quorum's
//! description and each ready broker's own cluster id) into a [`View`] to
//! act on, or a [`Doubt`] that stops every destructive step (restart,
//! shrink, reassignment). A broker that reports another id is the
//! signature of a split brain, where a broker that lost its disk founded a
//! new cluster of its own; a broker that cannot be asked, or an answer
//! that leaves out a ready broker, is a partial view that could hide one.

use std::collections::BTreeMap;

use rivulet_wire::client::QuorumDescription;

use super::kafka::ClusterSnapshot;

/// Kafka's form of a cluster id: the 16 bytes of a random (version 4)
/// UUID in URL-safe base64 without padding, 22 characters. Like Kafka, an
/// id that would start with `-` (and read as a command-line flag) is
/// drawn again.
pub fn new_cluster_id() -> String {
    loop {
        let id = cluster_id_from(*uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// `bytes` in URL-safe base64 without padding.
pub fn cluster_id_from(bytes: [u8; 16]) -> String {
    rivulet_wire::uuid_text::encode(&bytes)
}

/// What one reconcile heard from the brokers, each answer as it came.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Metadata through the bootstrap address.
    pub snapshot: Result<ClusterSnapshot, String>,
    /// DescribeQuorum through the bootstrap address.
    pub quorum: Result<QuorumDescription, String>,
    /// The cluster id each ready broker reports on its own address.
    pub probes: BTreeMap<i32, Result<Option<String>, String>>,
}

/// Answers that provably come from the cluster in `status.clusterId`.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// Brokers, controller and partitions.
    pub snapshot: ClusterSnapshot,
    /// The controller quorum; it has a leader.
    pub quorum: QuorumDescription,
}

/// Why the brokers' answers cannot be acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doubt {
    /// Some broker reports another cluster id than `status.clusterId`.
    Mismatch(String),
    /// The brokers could not be asked, or not all of them, or the quorum
    /// has no leader.
    Unreachable(String),
}

impl Doubt {
    /// The reason of the Degraded condition it causes.
    pub fn reason(&self) -> &'static str {
        match self {
            Doubt::Mismatch(_) => "ClusterIdMismatch",
            Doubt::Unreachable(_) => "BrokersUnreachable",
        }
    }

    /// What is wrong, for people.
    pub fn message(&self) -> &str {
        match self {
            Doubt::Mismatch(m) | Doubt::Unreachable(m) => m,
        }
    }
}

impl std::fmt::Display for Doubt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

fn reported(id: Option<&str>) -> String {
    id.map_or_else(
        || "no cluster id".to_string(),
        |id| format!("cluster id {id}"),
    )
}

/// Checks that every answer in `observation` comes from cluster `expected`
/// and covers every broker in `ready` (the brokers whose pods are ready,
/// which must be registered and answer for themselves). A mismatch
/// anywhere wins over unreachable brokers: it is the more urgent news.
pub fn verify(expected: &str, ready: &[i32], observation: Observation) -> Result<View, Doubt> {
    let mut mismatches = Vec::new();
    let mut missing = Vec::new();
    for (id, probe) in &observation.probes {
        match probe {
            Ok(reported_id) if reported_id.as_deref() == Some(expected) => {}
            Ok(other) => mismatches.push(format!(
                "broker {id} reports {}",
                reported(other.as_deref())
            )),
            Err(error) => missing.push(format!("broker {id} cannot be asked ({error})")),
        }
    }
    for id in ready
        .iter()
        .filter(|id| !observation.probes.contains_key(id))
    {
        missing.push(format!("broker {id} was not asked"));
    }
    let snapshot = match observation.snapshot {
        Ok(s) if s.cluster_id.as_deref() == Some(expected) => Some(s),
        Ok(s) => {
            mismatches.push(format!(
                "the bootstrap address answers with {}",
                reported(s.cluster_id.as_deref())
            ));
            None
        }
        Err(error) => {
            missing.push(format!("cannot read the cluster metadata ({error})"));
            None
        }
    };
    if !mismatches.is_empty() {
        return Err(Doubt::Mismatch(format!(
            "the cluster's id is {expected}, but {}; nothing is restarted, shrunk or moved until every broker belongs to this cluster",
            mismatches.join(", ")
        )));
    }
    if let Some(s) = &snapshot {
        let unregistered: Vec<String> = ready
            .iter()
            .filter(|id| !s.brokers.contains(id))
            .map(i32::to_string)
            .collect();
        if !unregistered.is_empty() {
            missing.push(format!(
                "ready brokers {} are not registered with the controller",
                unregistered.join(", ")
            ));
        }
    }
    let quorum = match observation.quorum {
        Ok(q) if q.leader_id >= 0 => Some(q),
        Ok(_) => {
            missing.push("the controller quorum has no leader".into());
            None
        }
        Err(error) => {
            missing.push(format!("cannot describe the controller quorum ({error})"));
            None
        }
    };
    match (snapshot, quorum) {
        (Some(snapshot), Some(quorum)) if missing.is_empty() => Ok(View { snapshot, quorum }),
        _ => Err(Doubt::Unreachable(format!(
            "{}; nothing is restarted, shrunk or moved without a full view",
            missing.join("; ")
        ))),
    }
}

/// Whether the quorum of cluster `expected` has formed: the brokers answer
/// with that id and the quorum has a leader. Until then new brokers may
/// found it; afterwards they must join it.
pub fn formed(expected: &str, observation: &Observation) -> bool {
    let same_cluster = observation
        .snapshot
        .as_ref()
        .is_ok_and(|s| s.cluster_id.as_deref() == Some(expected));
    let led = observation.quorum.as_ref().is_ok_and(|q| q.leader_id >= 0);
    same_cluster && led
}

/// The id to record for a cluster created before the operator generated
/// ids: the one the brokers report, if every broker that answered agrees.
pub fn adoptable(observation: &Observation) -> Result<String, Doubt> {
    let Ok(snapshot) = &observation.snapshot else {
        return Err(Doubt::Unreachable(
            "the cluster id is not known yet: the brokers have not answered".into(),
        ));
    };
    let Some(id) = snapshot.cluster_id.clone() else {
        return Err(Doubt::Mismatch(
            "the brokers report no cluster id to record".into(),
        ));
    };
    let others: Vec<String> = observation
        .probes
        .iter()
        .filter_map(|(broker, probe)| match probe {
            Ok(reported_id) if reported_id.as_deref() != Some(id.as_str()) => Some(format!(
                "broker {broker} reports {}",
                reported(reported_id.as_deref())
            )),
            _ => None,
        })
        .collect();
    if others.is_empty() {
        Ok(id)
    } else {
        Err(Doubt::Mismatch(format!(
            "the brokers disagree about the cluster id (the bootstrap address says {id}, {}); none is recorded",
            others.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use rivulet_wire::client::QuorumReplica;

    use super::*;

    const ID: &str = "MkU3OEVBNTcwNTJENDM2Qk";

    #[test]
    fn cluster_ids_have_kafkas_form() {
        // Kafka's Uuid.toString of these bytes (base64url, no padding).
        assert_eq!(cluster_id_from([0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(cluster_id_from([0xff; 16]), "_____________________w");
        let bytes = *b"2E78EA57052D436B";
        assert_eq!(cluster_id_from(bytes), "MkU3OEVBNTcwNTJENDM2Qg");
        for _ in 0..200 {
            let id = new_cluster_id();
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with('-'), "{id}");
            assert!(id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        }
        assert_ne!(new_cluster_id(), new_cluster_id());
    }

    fn voter(id: i32) -> QuorumReplica {
        QuorumReplica {
            node_id: id,
            directory_id: uuid::Uuid::from_bytes([1; 16]),
            log_end_offset: 10,
            last_fetch_timestamp: -1,
            last_caught_up_timestamp: -1,
        }
    }

    /// Brokers 0-2 registered, all of cluster `ID`, quorum led by 0.
    fn healthy() -> Observation {
        Observation {
            snapshot: Ok(ClusterSnapshot {
                cluster_id: Some(ID.into()),
                controller: Some(0),
                brokers: vec![0, 1, 2],
                ..ClusterSnapshot::default()
            }),
            quorum: Ok(QuorumDescription {
                leader_id: 0,
                leader_epoch: 1,
                high_watermark: 10,
                voters: vec![voter(0)],
                observers: vec![],
                nodes: vec![],
            }),
            probes: (0..3).map(|id| (id, Ok(Some(ID.to_string())))).collect(),
        }
    }

    #[test]
    fn answers_of_this_cluster_make_a_view() {
        let view = verify(ID, &[0, 1, 2], healthy()).unwrap();
        assert_eq!(view.snapshot.brokers, [0, 1, 2]);
        assert_eq!(view.quorum.leader_id, 0);
        assert!(formed(ID, &healthy()));
        assert_eq!(adoptable(&healthy()), Ok(ID.to_string()));
    }

    #[test]
    fn a_broker_of_another_cluster_is_a_mismatch() {
        let mut o = healthy();
        o.probes
            .insert(0, Ok(Some("b3RoZXItY2x1c3Rlci0xMg".into())));
        o.probes.insert(2, Err("timed out".into()));
        let Err(Doubt::Mismatch(message)) = verify(ID, &[0, 1, 2], o.clone()) else {
            panic!("a mismatch wins over an unreachable broker")
        };
        assert!(
            message.contains("broker 0 reports cluster id b3RoZXItY2x1c3Rlci0xMg"),
            "{message}"
        );
        assert!(matches!(adoptable(&o), Err(Doubt::Mismatch(_))));

        // The bootstrap answer itself from another cluster (say, a broker
        // that founded its own): its empty partition list proves nothing.
        let mut o = healthy();
        if let Ok(s) = &mut o.snapshot {
            s.cluster_id = Some("b3RoZXItY2x1c3Rlci0xMg".into());
        }
        let doubt = verify(ID, &[0, 1, 2], o.clone()).unwrap_err();
        assert_eq!(doubt.reason(), "ClusterIdMismatch");
        assert!(!formed(ID, &o));
        // No id at all is no proof either.
        let mut o = healthy();
        o.probes.insert(1, Ok(None));
        assert!(verify(ID, &[0, 1, 2], o)
            .unwrap_err()
            .message()
            .contains("broker 1 reports no cluster id"));
    }

    #[test]
    fn a_partial_view_is_unreachable() {
        // A ready broker that does not answer for itself.
        let mut o = healthy();
        o.probes.insert(1, Err("connection refused".into()));
        let doubt = verify(ID, &[0, 1, 2], o).unwrap_err();
        assert_eq!(doubt.reason(), "BrokersUnreachable");
        assert!(
            doubt.message().contains("broker 1 cannot be asked"),
            "{doubt}"
        );

        // A ready broker the controller does not list.
        let mut o = healthy();
        if let Ok(s) = &mut o.snapshot {
            s.brokers = vec![0, 1];
        }
        assert!(verify(ID, &[0, 1, 2], o)
            .unwrap_err()
            .message()
            .contains("ready brokers 2 are not registered"));

        // A ready broker nobody asked.
        let mut o = healthy();
        o.probes.remove(&2);
        assert!(matches!(
            verify(ID, &[0, 1, 2], o),
            Err(Doubt::Unreachable(_))
        ));

        // No metadata, no quorum, a quorum without a leader.
        let mut o = healthy();
        o.snapshot = Err("timed out".into());
        assert!(matches!(
            verify(ID, &[0, 1, 2], o.clone()),
            Err(Doubt::Unreachable(_))
        ));
        assert!(matches!(adoptable(&o), Err(Doubt::Unreachable(_))));
        let mut o = healthy();
        o.quorum = Err("unsupported".into());
        assert!(matches!(
            verify(ID, &[0, 1, 2], o),
            Err(Doubt::Unreachable(_))
        ));
        let mut o = healthy();
        if let Ok(q) = &mut o.quorum {
            q.leader_id = -1;
        }
        assert!(!formed(ID, &o));
        assert!(verify(ID, &[0, 1, 2], o)
            .unwrap_err()
            .message()
            .contains("no leader"));
    }
}
