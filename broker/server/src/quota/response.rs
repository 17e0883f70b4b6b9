//! What throttling does to a response: its `throttle_time_ms`, the empty
//! answer Kafka gives a throttled fetch, and whether the client throttles
//! itself (KIP-219) or must get its answer late.

use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind};

/// Sets `throttle_time_ms` of every response type that has one.
pub fn set_throttle_time(body: &mut ResponseKind, ms: i32) {
    macro_rules! set {
        ($($variant:ident),* $(,)?) => {
            match body {
                $(ResponseKind::$variant(r) => r.throttle_time_ms = r.throttle_time_ms.max(ms),)*
                _ => {}
            }
        };
    }
    set!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        InitProducerId,
        DescribeConfigs,
        AlterConfigs,
        CreatePartitions,
        DeleteRecords,
        IncrementalAlterConfigs,
        DescribeCluster,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetCommit,
        OffsetFetch,
        ListGroups,
        DescribeGroups,
        DeleteGroups,
        OffsetDelete,
        OffsetForLeaderEpoch,
        ElectLeaders,
        AlterPartitionReassignments,
        ListPartitionReassignments,
        AddRaftVoter,
        RemoveRaftVoter,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        DescribeClientQuotas,
        AlterClientQuotas,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
    );
}

/// The record bytes a fetch response carries (what the consumer byte
/// rate counts).
pub fn fetch_bytes(response: &FetchResponse) -> usize {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .filter_map(|p| p.records.as_ref())
        .map(|r| r.len())
        .sum()
}

/// Kafka's answer to a fetch that would break the quota: no partitions at
/// all, only the throttle time (`FetchContext.getThrottledResponse`).
pub fn empty_fetch(response: &mut FetchResponse) {
    response.responses.clear();
}

/// Whether a client of this response version throttles itself after a
/// throttled answer (KIP-219); older clients get the answer only after
/// the throttle time instead. Versions are Kafka's, per response type.
pub fn client_throttles(api: ApiKey, version: i16) -> bool {
    let first = match api {
        ApiKey::Produce => 6,
        ApiKey::Fetch => 8,
        ApiKey::ListOffsets => 3,
        ApiKey::Metadata => 6,
        ApiKey::OffsetCommit => 4,
        ApiKey::OffsetFetch => 4,
        ApiKey::FindCoordinator => 2,
        ApiKey::JoinGroup => 3,
        ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::SyncGroup
        | ApiKey::DescribeGroups
        | ApiKey::ListGroups
        | ApiKey::ApiVersions
        | ApiKey::DeleteTopics
        | ApiKey::DescribeConfigs => 2,
        ApiKey::CreateTopics | ApiKey::OffsetForLeaderEpoch => 3,
        ApiKey::DeleteRecords
        | ApiKey::InitProducerId
        | ApiKey::AlterConfigs
        | ApiKey::CreatePartitions
        | ApiKey::DeleteGroups
        | ApiKey::ElectLeaders
        | ApiKey::DescribeAcls
        | ApiKey::CreateAcls
        | ApiKey::DeleteAcls => 1,
        _ => 0,
    };
    version >= first
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{
        fetch_response::{FetchableTopicResponse, PartitionData},
        ProduceResponse,
    };

    use super::*;

    #[test]
    fn throttle_time_is_set_and_never_lowered() {
        let mut body = ResponseKind::Produce(ProduceResponse::default());
        set_throttle_time(&mut body, 250);
        set_throttle_time(&mut body, 100);
        let ResponseKind::Produce(r) = body else {
            unreachable!()
        };
        assert_eq!(r.throttle_time_ms, 250);
    }

    #[test]
    fn a_throttled_fetch_is_empty() {
        let partition = |n: usize| {
            PartitionData::default().with_records(Some(bytes::Bytes::from(vec![0u8; n])))
        };
        let mut response = FetchResponse::default()
            .with_responses(vec![FetchableTopicResponse::default()
                .with_partitions(vec![partition(10), partition(5)])]);
        assert_eq!(fetch_bytes(&response), 15);
        empty_fetch(&mut response);
        assert_eq!(fetch_bytes(&response), 0);
        assert!(response.responses.is_empty());
    }

    #[test]
    fn kip_219_versions() {
        assert!(!client_throttles(ApiKey::Produce, 5));
        assert!(client_throttles(ApiKey::Produce, 6));
        assert!(!client_throttles(ApiKey::Fetch, 7));
        assert!(client_throttles(ApiKey::Fetch, 8));
        assert!(client_throttles(ApiKey::DescribeClientQuotas, 0));
    }
}
