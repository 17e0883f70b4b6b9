//! The controller quorum's voter set (KIP-853): DescribeQuorum,
//! AddRaftVoter and RemoveRaftVoter. Any broker answers; each goes to the
//! quorum's leader (over the quorum's own transport), which alone knows
//! how far each member has replicated and alone changes the voter set.

use std::time::Duration;

use kafka_protocol::{
    messages::{
        describe_quorum_response::{self, PartitionData, ReplicaState, TopicData},
        AddRaftVoterRequest, AddRaftVoterResponse, BrokerId, DescribeQuorumRequest,
        DescribeQuorumResponse, RemoveRaftVoterRequest, RemoveRaftVoterResponse, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use rivulet_quorum::{
    network::{MemberState, VotersRefused},
    QuorumError,
};

use super::Node;
use crate::identity::METADATA_DIR;

/// The metadata log's topic name, as Kafka's tools ask for it.
const METADATA_TOPIC: &str = METADATA_DIR;

/// A Kafka error code and message.
type Refusal = (ResponseError, String);

/// Answers DescribeQuorum.
pub async fn describe(
    broker: &Node,
    req: DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let asks_metadata_log = req.topics.iter().any(|t| {
        t.topic_name.0.as_str() == METADATA_TOPIC
            && t.partitions.iter().any(|p| p.partition_index == 0)
    });
    let response = DescribeQuorumResponse::default();
    if !asks_metadata_log {
        return response
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "DescribeQuorum describes __cluster_metadata partition 0 only",
            )));
    }
    let Some(quorum) = broker.cluster.quorum() else {
        return refuse_describe(
            response,
            (ResponseError::BrokerNotAvailable, "no quorum".into()),
        );
    };
    let state = match quorum.describe_quorum().await {
        Ok(state) => state,
        Err(e) => return refuse_describe(response, refusal(&e)),
    };
    let replica = |m: &MemberState| {
        let mut r = ReplicaState::default()
            .with_replica_id(BrokerId(m.node_id as i32))
            .with_log_end_offset(m.log_end.map_or(-1, |i| i as i64 + 1))
            .with_last_fetch_timestamp(-1)
            .with_last_caught_up_timestamp(-1);
        if version >= 2 {
            r = r.with_replica_directory_id(m.directory_id.unwrap_or_default());
        }
        r
    };
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(state.leader_id as i32))
        .with_leader_epoch(i32::try_from(state.term).unwrap_or(i32::MAX))
        .with_high_watermark(state.commit_index as i64 + 1)
        .with_current_voters(state.voters.iter().map(replica).collect())
        .with_observers(state.observers.iter().map(replica).collect());
    let mut response = response.with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![partition])]);
    if version >= 2 {
        response = response.with_nodes(
            state
                .voters
                .iter()
                .chain(&state.observers)
                .map(|m| {
                    let (host, port) = m.addr.rsplit_once(':').unwrap_or((&m.addr, "0"));
                    describe_quorum_response::Node::default()
                        .with_node_id(BrokerId(m.node_id as i32))
                        .with_listeners(vec![describe_quorum_response::Listener::default()
                            .with_name(StrBytes::from_static_str("CONTROLLER"))
                            .with_host(StrBytes::from_string(host.to_owned()))
                            .with_port(port.parse().unwrap_or(0))])
                })
                .collect(),
        );
    }
    response
}

/// Answers AddRaftVoter: promotes a broker that follows the metadata log.
pub async fn add_voter(broker: &Node, req: AddRaftVoterRequest) -> AddRaftVoterResponse {
    let voter = (req.voter_id, req.voter_directory_id);
    let (code, message) = error_fields(
        change(
            broker,
            req.cluster_id.as_deref(),
            voter,
            true,
            req.timeout_ms,
        )
        .await,
    );
    AddRaftVoterResponse::default()
        .with_error_code(code)
        .with_error_message(message)
}

/// Answers RemoveRaftVoter: demotes a voter; its broker keeps following.
pub async fn remove_voter(broker: &Node, req: RemoveRaftVoterRequest) -> RemoveRaftVoterResponse {
    let voter = (req.voter_id, req.voter_directory_id);
    let (code, message) =
        error_fields(change(broker, req.cluster_id.as_deref(), voter, false, 30_000).await);
    RemoveRaftVoterResponse::default()
        .with_error_code(code)
        .with_error_message(message)
}

/// A response's error code and message.
fn error_fields(outcome: Result<(), Refusal>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((code, message)) => (code.code(), Some(StrBytes::from_string(message))),
    }
}

/// Adds or removes voter `id`; an AddRaftVoter for a learner still
/// catching up is retried until `timeout_ms`.
async fn change(
    broker: &Node,
    cluster_id: Option<&str>,
    (id, directory): (i32, uuid::Uuid),
    add: bool,
    timeout_ms: i32,
) -> Result<(), Refusal> {
    let ours = &broker.cluster.cluster_id;
    if let Some(theirs) = cluster_id.filter(|c| c != ours) {
        return Err((
            ResponseError::InconsistentClusterId,
            format!("this broker belongs to cluster {ours}, not {theirs}"),
        ));
    }
    let Some(quorum) = broker.cluster.quorum() else {
        return Err((ResponseError::BrokerNotAvailable, "no quorum".into()));
    };
    let Ok(node_id) = u64::try_from(id) else {
        return Err((ResponseError::InvalidRequest, format!("voter id {id}")));
    };
    let directory = (!directory.is_nil()).then_some(directory);
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0).max(1000));
    loop {
        let done = if add {
            quorum.add_voter(node_id, directory).await
        } else {
            quorum.remove_voter(node_id, directory).await
        };
        match done {
            Ok(()) => {
                tracing::info!(voter = id, add, "changed the voter set");
                return Ok(());
            }
            Err(QuorumError::Voters(VotersRefused::NotCaughtUp { .. }))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(refusal(&e)),
        }
    }
}

fn refusal(error: &QuorumError) -> Refusal {
    let message = error.to_string();
    let code = match error {
        QuorumError::Voters(refused) => match refused {
            VotersRefused::NotLeader { .. } | VotersRefused::Unavailable(_) => {
                ResponseError::RequestTimedOut
            }
            VotersRefused::UnknownNode(_) | VotersRefused::NotAVoter(_) => {
                ResponseError::VoterNotFound
            }
            VotersRefused::DirectoryMismatch { .. } => ResponseError::InvalidVoterKey,
            VotersRefused::NotCaughtUp { .. } => ResponseError::RequestTimedOut,
            VotersRefused::LastVoter(_) => ResponseError::InvalidRequest,
        },
        _ => ResponseError::RequestTimedOut,
    };
    (code, message)
}

fn refuse_describe(
    response: DescribeQuorumResponse,
    (code, message): Refusal,
) -> DescribeQuorumResponse {
    response
        .with_error_code(code.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}
