//! A small async Kafka client for Rivulet's own tools.
//!
//! Used by the CLI, the operator, tests and benchmarks: a [`Connection`]
//! speaks to one broker; a [`Client`] knows the cluster from Metadata, keeps
//! one connection per broker, and routes partition requests to the leader.
//! Kafka error codes come back as [`ClientError::Kafka`]. It is not a
//! production producer/consumer: no batching across calls, no pipelining,
//! no group membership (it can administer groups, not join them).

mod admin;
mod connection;
mod data;
#[cfg(test)]
mod fake_broker;
mod groups;
mod quorum;
mod quotas;
mod reassign;
mod records;
mod sasl;
mod security;

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::{
    messages::{metadata_request::MetadataRequestTopic, MetadataRequest, TopicName},
    protocol::{Request, StrBytes},
};
use uuid::Uuid;

pub use self::{
    admin::{scram_upsertion, ConfigValue, CONFIG_SOURCE_DEFAULT},
    connection::{
        decode_response, encode_request, Connection, DEFAULT_CLIENT_ID, DEFAULT_REQUEST_TIMEOUT,
        MAX_RESPONSE_SIZE,
    },
    data::FetchResult,
    groups::{
        decode_consumer_assignment, CommittedOffset, GroupDescription, GroupListing,
        MemberDescription, CONSUMER_PROTOCOL_TYPE, COORDINATOR_WAIT,
    },
    quorum::{QuorumDescription, QuorumListener, QuorumReplica, METADATA_TOPIC},
    quotas::{QuotaComponent, QuotaEntry, QuotaMatch},
    reassign::{OngoingReassignment, ReassignTarget, ReassignmentResult},
    records::{decode_records, encode_batch, next_fetch_offset, OwnedRecord},
    security::{ClientSecurity, SaslLogin, SecurityPropertyError},
};
use crate::error::ClientError;

/// Kafka error codes after which partition routing is refreshed once.
const STALE_ROUTING: [i16; 3] = [
    3, // UNKNOWN_TOPIC_OR_PARTITION
    5, // LEADER_NOT_AVAILABLE
    6, // NOT_LEADER_OR_FOLLOWER
];

/// A broker as listed in Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker's node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, if configured.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`, ready to dial.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition as listed in Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Kafka error code for this partition (0 if none).
    pub error_code: i16,
    /// Leader node id, -1 if none.
    pub leader: i32,
    /// Leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// All replicas.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Replicas that are offline.
    pub offline_replicas: Vec<i32>,
}

/// One topic as listed in Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic id (nil if the broker predates topic ids).
    pub topic_id: Uuid,
    /// Kafka error code for this topic (0 if none), e.g. 3 when it does not exist.
    pub error_code: i16,
    /// Whether this is an internal topic such as `__consumer_offsets`.
    pub is_internal: bool,
    /// Partitions, ordered by index.
    pub partitions: Vec<PartitionInfo>,
}

/// The result of a Metadata request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// Cluster id, if the broker reports one.
    pub cluster_id: Option<String>,
    /// The active controller's node id, -1 if unknown.
    pub controller_id: i32,
    /// Live brokers.
    pub brokers: Vec<BrokerInfo>,
    /// Topics, in the order the broker listed them.
    pub topics: Vec<TopicInfo>,
}

/// A cluster client over a bootstrap list.
#[derive(Debug)]
pub struct Client {
    bootstrap: Vec<String>,
    client_id: String,
    /// TLS and SASL for every connection.
    security: ClientSecurity,
    /// Connections by broker node id, opened on first use.
    conns: HashMap<i32, Connection>,
    /// A connection to a bootstrap address, used until Metadata names the
    /// brokers (it may be to a broker that is also in `conns`).
    bootstrap_conn: Option<Connection>,
    brokers: BTreeMap<i32, BrokerInfo>,
    controller_id: i32,
    /// Routing cache: topic -> (id, partition -> leader).
    topics: BTreeMap<String, (Uuid, BTreeMap<i32, i32>)>,
}

impl Client {
    /// Connects to the first reachable broker of `bootstrap`
    /// (`host:port,host:port`) and loads cluster metadata.
    pub async fn connect(bootstrap: &str) -> Result<Self, ClientError> {
        Self::connect_with_client_id(bootstrap, DEFAULT_CLIENT_ID).await
    }

    /// Like [`Client::connect`], with a chosen `client.id`.
    pub async fn connect_with_client_id(
        bootstrap: &str,
        client_id: &str,
    ) -> Result<Self, ClientError> {
        Self::connect_secure(bootstrap, client_id, ClientSecurity::default()).await
    }

    /// Like [`Client::connect_with_client_id`], every connection secured as
    /// `security` says (TLS, SASL).
    pub async fn connect_secure(
        bootstrap: &str,
        client_id: &str,
        security: ClientSecurity,
    ) -> Result<Self, ClientError> {
        let list: Vec<String> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if list.is_empty() {
            return Err(ClientError::NoBroker(bootstrap.to_owned()));
        }
        let mut client = Client {
            bootstrap: list,
            client_id: client_id.to_owned(),
            security,
            conns: HashMap::new(),
            bootstrap_conn: None,
            brokers: BTreeMap::new(),
            controller_id: -1,
            topics: BTreeMap::new(),
        };
        client.metadata(Some(Vec::new())).await?;
        Ok(client)
    }

    /// Brokers known from the last Metadata response.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values()
    }

    /// The controller's node id from the last Metadata response.
    pub fn controller_id(&self) -> i32 {
        self.controller_id
    }

    /// Fetches metadata for `topics` (`None`: all topics) and refreshes the
    /// broker list and routing cache. Does not create topics.
    pub async fn metadata(
        &mut self,
        topics: Option<Vec<String>>,
    ) -> Result<ClusterMetadata, ClientError> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .into_iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let response = self.send_any(request).await?;
        ClientError::check(response.error_code, None)?;
        let md = ClusterMetadata {
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            controller_id: response.controller_id.0,
            brokers: response
                .brokers
                .into_iter()
                .map(|b| BrokerInfo {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                })
                .collect(),
            topics: response
                .topics
                .into_iter()
                .map(|t| {
                    let mut partitions: Vec<PartitionInfo> = t
                        .partitions
                        .into_iter()
                        .map(|p| PartitionInfo {
                            partition: p.partition_index,
                            error_code: p.error_code,
                            leader: p.leader_id.0,
                            leader_epoch: p.leader_epoch,
                            replicas: p.replica_nodes.into_iter().map(|b| b.0).collect(),
                            isr: p.isr_nodes.into_iter().map(|b| b.0).collect(),
                            offline_replicas: p.offline_replicas.into_iter().map(|b| b.0).collect(),
                        })
                        .collect();
                    partitions.sort_by_key(|p| p.partition);
                    TopicInfo {
                        name: t.name.map(|n| n.0.to_string()).unwrap_or_default(),
                        topic_id: t.topic_id,
                        error_code: t.error_code,
                        is_internal: t.is_internal,
                        partitions,
                    }
                })
                .collect(),
        };
        self.absorb(&md);
        Ok(md)
    }

    /// Updates brokers and routing from a Metadata result, dropping
    /// connections to brokers that left.
    fn absorb(&mut self, md: &ClusterMetadata) {
        if !md.brokers.is_empty() {
            self.brokers = md.brokers.iter().map(|b| (b.node_id, b.clone())).collect();
            let brokers = &self.brokers;
            self.conns
                .retain(|id, c| brokers.get(id).is_some_and(|b| b.addr() == c.addr()));
        }
        self.controller_id = md.controller_id;
        for t in &md.topics {
            if t.error_code == 0 {
                let leaders = t
                    .partitions
                    .iter()
                    .map(|p| (p.partition, p.leader))
                    .collect();
                self.topics.insert(t.name.clone(), (t.topic_id, leaders));
            } else {
                self.topics.remove(&t.name);
            }
        }
    }

    /// Forgets cached routing for `topic`, e.g. after deleting or growing it.
    fn forget(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// The connection to broker `node_id`, opened if needed.
    pub async fn connection(&mut self, node_id: i32) -> Result<&mut Connection, ClientError> {
        if self.conns.get(&node_id).is_some_and(Connection::is_broken) {
            self.conns.remove(&node_id);
        }
        if !self.conns.contains_key(&node_id) {
            let broker = self.brokers.get(&node_id).ok_or_else(|| {
                ClientError::Protocol(format!("broker {node_id} is not in the cluster metadata"))
            })?;
            let conn =
                Connection::connect_secure(&broker.addr(), &self.client_id, &self.security).await?;
            self.conns.insert(node_id, conn);
        }
        Ok(self.conns.get_mut(&node_id).expect("inserted above"))
    }

    /// A connection to any live broker: an open one if there is one,
    /// otherwise the first known broker or bootstrap address that answers.
    pub async fn any_connection(&mut self) -> Result<&mut Connection, ClientError> {
        self.conns.retain(|_, c| !c.is_broken());
        if self
            .bootstrap_conn
            .as_ref()
            .is_some_and(Connection::is_broken)
        {
            self.bootstrap_conn = None;
        }
        if let Some(id) = self.conns.keys().next().copied() {
            return Ok(self.conns.get_mut(&id).expect("key just seen"));
        }
        // `if let Some(c) = &mut ...` would be the idiom, but returning that
        // borrow conditionally is rejected by today's borrow checker.
        #[allow(clippy::unnecessary_unwrap)]
        if self.bootstrap_conn.is_some() {
            return Ok(self.bootstrap_conn.as_mut().expect("checked above"));
        }
        let mut last_err = None;
        for id in self.brokers.keys().copied().collect::<Vec<_>>() {
            match self.connection(id).await {
                Ok(_) => return Ok(self.conns.get_mut(&id).expect("just connected")),
                Err(e) => last_err = Some(e),
            }
        }
        for addr in &self.bootstrap {
            match Connection::connect_secure(addr, &self.client_id, &self.security).await {
                Ok(c) => return Ok(self.bootstrap_conn.insert(c)),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "bootstrap broker unreachable");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ClientError::NoBroker(self.bootstrap.join(","))))
    }

    /// Sends `req` to any broker at the highest common version.
    pub async fn send_any<R: Request>(&mut self, req: R) -> Result<R::Response, ClientError> {
        self.any_connection().await?.send(req).await
    }

    /// Sends `req` to broker `node_id` at the highest common version.
    pub async fn send_to<R: Request>(
        &mut self,
        node_id: i32,
        req: R,
    ) -> Result<R::Response, ClientError> {
        self.connection(node_id).await?.send(req).await
    }

    /// Sends an admin request to the controller if Metadata named one we can
    /// reach, else to any broker (KRaft brokers forward admin requests).
    async fn send_admin<R: Request>(&mut self, req: R) -> Result<R::Response, ClientError> {
        let controller = self.controller_id;
        if self.brokers.contains_key(&controller) {
            if let Ok(conn) = self.connection(controller).await {
                return conn.send(req).await;
            }
        }
        self.send_any(req).await
    }

    /// The leader and topic id for a partition, loading metadata if the
    /// routing cache does not have it.
    async fn route(&mut self, topic: &str, partition: i32) -> Result<(i32, Uuid), ClientError> {
        if !self.topics.contains_key(topic) {
            let md = self.metadata(Some(vec![topic.to_owned()])).await?;
            if let Some(t) = md.topics.iter().find(|t| t.name == topic) {
                ClientError::check(t.error_code, None)?;
            }
        }
        let (id, leaders) = self
            .topics
            .get(topic)
            .ok_or_else(|| ClientError::Protocol(format!("no metadata for topic {topic}")))?;
        match leaders.get(&partition) {
            Some(&leader) if leader >= 0 => Ok((leader, *id)),
            Some(_) => Err(ClientError::kafka(5, Some("partition has no leader"))),
            None => Err(ClientError::kafka(3, Some("no such partition"))),
        }
    }

    /// Whether a failed partition request deserves one metadata refresh and
    /// retry: the leader moved, or the connection to it failed.
    fn is_stale(err: &ClientError) -> bool {
        match err {
            ClientError::Kafka { code, .. } => STALE_ROUTING.contains(code),
            ClientError::Send(_)
            | ClientError::Receive(_)
            | ClientError::Closed
            | ClientError::Connect { .. }
            | ClientError::Timeout => true,
            _ => false,
        }
    }
}
