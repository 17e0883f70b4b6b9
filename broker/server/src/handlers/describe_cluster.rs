//! DescribeCluster: the cluster id, the controller and the brokers.

use kafka_protocol::{
    messages::{
        describe_cluster_response::DescribeClusterBroker, BrokerId, DescribeClusterRequest,
        DescribeClusterResponse,
    },
    protocol::StrBytes,
};

use super::Node;

/// Answers DescribeCluster.
pub fn handle(
    broker: &Node,
    _req: DescribeClusterRequest,
    listener: &str,
) -> DescribeClusterResponse {
    let cluster = &broker.cluster;
    {
        let brokers = cluster
            .live_endpoints(listener)
            .into_iter()
            .map(|(id, e, rack)| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(id))
                    .with_host(StrBytes::from_string(e.host))
                    .with_port(i32::from(e.port))
                    .with_rack(rack.map(StrBytes::from_string))
            })
            .collect();
        DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_string(cluster.cluster_id.clone()))
            .with_controller_id(BrokerId(cluster.controller_id().unwrap_or(-1)))
            .with_cluster_authorized_operations(i32::MIN)
            .with_brokers(brokers)
    }
}
