//! DescribeCluster: the cluster id, the controller and the brokers.

use kafka_protocol::{
    messages::{
        describe_cluster_response::DescribeClusterBroker, BrokerId, DescribeClusterRequest,
        DescribeClusterResponse,
    },
    protocol::StrBytes,
};

use crate::broker::Broker;

/// Answers DescribeCluster.
pub fn handle(
    broker: &Broker,
    _req: DescribeClusterRequest,
    listener: &str,
) -> DescribeClusterResponse {
    if let Some(cluster) = broker.cluster() {
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
        return DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_string(cluster.cluster_id.clone()))
            .with_controller_id(BrokerId(cluster.controller_id().unwrap_or(-1)))
            .with_cluster_authorized_operations(i32::MIN)
            .with_brokers(brokers);
    }
    let (host, port) = broker.advertised(listener);
    let node = BrokerId(broker.config.node_id);
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(node)
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(node)
            .with_host(StrBytes::from_string(host))
            .with_port(port as i32)
            .with_rack(broker.config.rack.clone().map(StrBytes::from_string))])
}
