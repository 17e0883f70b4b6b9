//! DeleteGroups: removes empty groups with their offsets (tombstones in
//! `__consumer_offsets`); groups with members are NON_EMPTY_GROUP.

use kafka_protocol::{
    messages::{
        delete_groups_response::DeletableGroupResult, DeleteGroupsRequest, DeleteGroupsResponse,
    },
    ResponseError,
};

use super::Node;

/// Answers DeleteGroups.
pub async fn handle(broker: &Node, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for group_id in req.groups_names {
        let result = if group_id.is_empty() {
            Err(ResponseError::InvalidGroupId)
        } else {
            broker.groups.delete_group(&group_id).await
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(super::code(result.err())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
