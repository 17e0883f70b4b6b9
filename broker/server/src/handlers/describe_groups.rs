//! DescribeGroups: state, protocol and members of each group; member
//! metadata and assignments only once the group is Stable, as in Kafka.

use kafka_protocol::{
    messages::{
        describe_groups_response::{DescribedGroup, DescribedGroupMember},
        DescribeGroupsRequest, DescribeGroupsResponse,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::Node;

/// Answers DescribeGroups.
pub fn handle(broker: &Node, req: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|group_id| {
            let g = DescribedGroup::default().with_group_id(group_id.clone());
            let g = if version >= 3 {
                g.with_authorized_operations(i32::MIN)
            } else {
                g
            };
            let summary = if group_id.is_empty() {
                Err(ResponseError::InvalidGroupId)
            } else {
                broker.groups.describe(&group_id)
            };
            match summary {
                Err(e) => g.with_error_code(e.code()),
                Ok(s) => {
                    let members = s
                        .members
                        .into_iter()
                        .map(|(id, instance, client_id, host, metadata, assignment)| {
                            DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(id))
                                .with_group_instance_id(if version >= 4 {
                                    instance.map(StrBytes::from_string)
                                } else {
                                    None
                                })
                                .with_client_id(StrBytes::from_string(client_id))
                                .with_client_host(StrBytes::from_string(host))
                                .with_member_metadata(metadata)
                                .with_member_assignment(assignment)
                        })
                        .collect();
                    g.with_group_state(StrBytes::from_static_str(s.state.name()))
                        .with_protocol_type(StrBytes::from_string(s.protocol_type))
                        .with_protocol_data(StrBytes::from_string(s.protocol))
                        .with_members(members)
                }
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
