//! The authorization layer through `dispatch`, over the in-memory harness:
//! what each principal sees and is refused, with Kafka's error codes.

use kafka_protocol::{
    messages::{
        create_acls_request::AclCreation, delete_acls_request::DeleteAclsFilter,
        metadata_request::MetadataRequestTopic, ApiKey, CreateAclsRequest, DeleteAclsRequest,
        DescribeAclsRequest, GroupId, InitProducerIdRequest, JoinGroupRequest, MetadataRequest,
        RequestHeader, RequestKind, ResponseKind,
    },
    protocol::StrBytes,
    ResponseError,
};

use super::super::{
    dispatch,
    tests::{create, harness, name, produce_request, Harness},
    RequestContext,
};
use crate::security::Principal;

const STANDARD: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

fn secured() -> Harness {
    harness(
        &[],
        &[
            ("authorizer.class.name", STANDARD),
            ("super.users", "User:admin"),
            ("group.initial.rebalance.delay.ms", "0"),
        ],
    )
}

async fn call(
    h: &Harness,
    user: &str,
    key: ApiKey,
    version: i16,
    body: RequestKind,
) -> ResponseKind {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version);
    let principal = Principal::user(user);
    let ctx = RequestContext {
        listener: "PLAINTEXT",
        peer: Some("127.0.0.1".parse().unwrap()),
        principal: &principal,
        pipeline: &Default::default(),
    };
    dispatch(&h.node, &header, body, &ctx)
        .await
        .expect("a response")
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// An ALLOW (or DENY) ACL from the admin.
async fn grant(
    h: &Harness,
    principal: &str,
    rtype: i8,
    name: &str,
    pattern: i8,
    op: i8,
    allow: bool,
) {
    let creation = AclCreation::default()
        .with_resource_type(rtype)
        .with_resource_name(s(name))
        .with_resource_pattern_type(pattern)
        .with_principal(s(principal))
        .with_host(s("*"))
        .with_operation(op)
        .with_permission_type(if allow { 3 } else { 2 });
    let ResponseKind::CreateAcls(resp) = call(
        h,
        "admin",
        ApiKey::CreateAcls,
        3,
        RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(vec![creation])),
    )
    .await
    else {
        panic!("CreateAcls answered something else")
    };
    assert_eq!(resp.results[0].error_code, 0, "{:?}", resp.results[0]);
}

const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const READ: i8 = 3;
const WRITE: i8 = 4;

async fn metadata_names(h: &Harness, user: &str, topics: Option<&[&str]>) -> Vec<(String, i16)> {
    let request = MetadataRequest::default().with_topics(topics.map(|ts| {
        ts.iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(name(t))))
            .collect()
    }));
    let ResponseKind::Metadata(resp) = call(
        h,
        user,
        ApiKey::Metadata,
        12,
        RequestKind::Metadata(request),
    )
    .await
    else {
        panic!("Metadata answered something else")
    };
    let mut names: Vec<(String, i16)> = resp
        .topics
        .iter()
        .map(|t| (t.name.as_ref().unwrap().to_string(), t.error_code))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_on_a_prefix_shows_and_reads_only_those_topics() {
    let h = secured();
    for t in ["orders-1", "orders-2", "payments"] {
        create(&h.node, t, &[&[0]], &[]).await;
    }
    grant(&h, "User:alice", TOPIC, "orders-", PREFIXED, READ, true).await;
    let denied = ResponseError::TopicAuthorizationFailed.code();
    assert_eq!(
        metadata_names(&h, "alice", None).await,
        vec![("orders-1".into(), 0), ("orders-2".into(), 0)],
        "listing all topics shows only the describable ones"
    );
    assert_eq!(
        metadata_names(&h, "alice", Some(&["orders-1", "payments", "nope"])).await,
        vec![
            ("nope".into(), denied),
            ("orders-1".into(), 0),
            ("payments".into(), denied)
        ],
        "a named topic that may not be described is refused whether or not it exists"
    );
    assert!(
        !h.node.cluster.image().topics.contains_key("nope"),
        "no auto-creation without CREATE"
    );
    // READ does not grant WRITE.
    let ResponseKind::Produce(resp) = call(
        &h,
        "alice",
        ApiKey::Produce,
        9,
        RequestKind::Produce(produce_request("orders-1", &[0], -1)),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(resp.responses[0].partition_responses[0].error_code, denied);
    // The super user writes, and a denial was counted.
    let ResponseKind::Produce(resp) = call(
        &h,
        "admin",
        ApiKey::Produce,
        9,
        RequestKind::Produce(produce_request("orders-1", &[0], -1)),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    let denials = h
        .node
        .metrics
        .authorization_denials
        .with_label_values(&["WRITE", "TOPIC"])
        .get();
    assert_eq!(denials, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_wins_over_allow() {
    let h = secured();
    create(&h.node, "orders-1", &[&[0]], &[]).await;
    grant(&h, "User:*", TOPIC, "orders-", PREFIXED, WRITE, true).await;
    grant(&h, "User:mallory", TOPIC, "orders-1", LITERAL, WRITE, false).await;
    let code = |resp: ResponseKind| match resp {
        ResponseKind::Produce(r) => r.responses[0].partition_responses[0].error_code,
        _ => panic!(),
    };
    let produce = || RequestKind::Produce(produce_request("orders-1", &[0], -1));
    assert_eq!(
        code(call(&h, "bob", ApiKey::Produce, 9, produce()).await),
        0
    );
    assert_eq!(
        code(call(&h, "mallory", ApiKey::Produce, 9, produce()).await),
        ResponseError::TopicAuthorizationFailed.code()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_idempotence_need_their_acls() {
    let h = secured();
    create(&h.node, "orders-1", &[&[0]], &[]).await;
    let join = || {
        RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s("app")))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(s("consumer")),
        )
    };
    let ResponseKind::JoinGroup(resp) = call(&h, "alice", ApiKey::JoinGroup, 5, join()).await
    else {
        panic!()
    };
    assert_eq!(
        resp.error_code,
        ResponseError::GroupAuthorizationFailed.code()
    );
    grant(&h, "User:alice", GROUP, "app", LITERAL, READ, true).await;
    let ResponseKind::JoinGroup(resp) = call(&h, "alice", ApiKey::JoinGroup, 5, join()).await
    else {
        panic!()
    };
    assert_ne!(
        resp.error_code,
        ResponseError::GroupAuthorizationFailed.code()
    );

    let init = || {
        RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        )
    };
    let ResponseKind::InitProducerId(resp) =
        call(&h, "alice", ApiKey::InitProducerId, 4, init()).await
    else {
        panic!()
    };
    assert_eq!(
        resp.error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    // WRITE on some topic is enough for an idempotent producer (KIP-679).
    grant(&h, "User:alice", TOPIC, "orders-1", LITERAL, WRITE, true).await;
    let ResponseKind::InitProducerId(resp) =
        call(&h, "alice", ApiKey::InitProducerId, 4, init()).await
    else {
        panic!()
    };
    assert_eq!(resp.error_code, 0);
    assert!(resp.producer_id.0 >= 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_apis_describe_and_delete_with_filters() {
    let h = secured();
    grant(&h, "User:alice", TOPIC, "orders-", PREFIXED, READ, true).await;
    grant(&h, "User:bob", TOPIC, "orders-1", LITERAL, WRITE, true).await;
    grant(&h, "User:bob", GROUP, "app", LITERAL, READ, true).await;
    let describe = |resource_type: i8, name: Option<&str>, pattern: i8| {
        RequestKind::DescribeAcls(
            DescribeAclsRequest::default()
                .with_resource_type_filter(resource_type)
                .with_resource_name_filter(name.map(s))
                .with_pattern_type_filter(pattern)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_operation(1)
                .with_permission_type(1),
        )
    };
    let count = |resp: ResponseKind| match resp {
        ResponseKind::DescribeAcls(r) => {
            assert_eq!(r.error_code, 0, "{:?}", r.error_message);
            r.resources.iter().map(|res| res.acls.len()).sum::<usize>()
        }
        _ => panic!(),
    };
    assert_eq!(
        count(call(&h, "admin", ApiKey::DescribeAcls, 3, describe(1, None, 1)).await),
        3
    );
    // MATCH: what applies to topic orders-1 (the prefix and the literal).
    assert_eq!(
        count(
            call(
                &h,
                "admin",
                ApiKey::DescribeAcls,
                3,
                describe(TOPIC, Some("orders-1"), 2)
            )
            .await
        ),
        2
    );
    // A non-super user without DESCRIBE on the cluster is refused.
    let ResponseKind::DescribeAcls(r) =
        call(&h, "bob", ApiKey::DescribeAcls, 3, describe(1, None, 1)).await
    else {
        panic!()
    };
    assert_eq!(
        r.error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    // Delete bob's ACLs of any kind.
    let delete = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
        .with_resource_type_filter(1)
        .with_pattern_type_filter(1)
        .with_principal_filter(Some(s("User:bob")))
        .with_resource_name_filter(None)
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1)]);
    let ResponseKind::DeleteAcls(r) = call(
        &h,
        "admin",
        ApiKey::DeleteAcls,
        3,
        RequestKind::DeleteAcls(delete),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(r.filter_results[0].matching_acls.len(), 2);
    assert_eq!(h.node.cluster.image().acls.len(), 1);
    // A filter with UNKNOWN is INVALID_REQUEST.
    let ResponseKind::DescribeAcls(r) =
        call(&h, "admin", ApiKey::DescribeAcls, 3, describe(0, None, 1)).await
    else {
        panic!()
    };
    assert_eq!(r.error_code, ResponseError::InvalidRequest.code());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_authorizer_acl_apis_are_disabled_and_everything_is_allowed() {
    let h = harness(&[], &[]);
    create(&h.node, "t", &[&[0]], &[]).await;
    let ResponseKind::DescribeAcls(r) = call(
        &h,
        "ANONYMOUS",
        ApiKey::DescribeAcls,
        3,
        RequestKind::DescribeAcls(
            DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        ),
    )
    .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, ResponseError::SecurityDisabled.code());
    let request = MetadataRequest::default()
        .with_topics(None)
        .with_include_topic_authorized_operations(true);
    let ResponseKind::Metadata(resp) = call(
        &h,
        "ANONYMOUS",
        ApiKey::Metadata,
        12,
        RequestKind::Metadata(request),
    )
    .await
    else {
        panic!()
    };
    let ops = resp.topics[0].topic_authorized_operations;
    // READ(3) WRITE(4) CREATE(5) DELETE(6) ALTER(7) DESCRIBE(8)
    // DESCRIBE_CONFIGS(10) ALTER_CONFIGS(11).
    let all = [3, 4, 5, 6, 7, 8, 10, 11]
        .iter()
        .fold(0, |b, c| b | (1 << c));
    assert_eq!(ops, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_need_configs_rights_on_the_cluster() {
    use kafka_protocol::messages::{
        alter_client_quotas_request::{EntityData, EntryData, OpData},
        AlterClientQuotasRequest,
    };
    let h = secured();
    let request = || {
        RequestKind::AlterClientQuotas(AlterClientQuotasRequest::default().with_entries(vec![
            EntryData::default()
                .with_entity(vec![EntityData::default()
                    .with_entity_type(s("client-id"))
                    .with_entity_name(Some(s("app")))])
                .with_ops(vec![OpData::default()
                    .with_key(s("producer_byte_rate"))
                    .with_value(1024.0)]),
        ]))
    };
    let code = |resp: ResponseKind| match resp {
        ResponseKind::AlterClientQuotas(r) => r.entries[0].error_code,
        _ => panic!(),
    };
    assert_eq!(
        code(call(&h, "alice", ApiKey::AlterClientQuotas, 1, request()).await),
        ResponseError::ClusterAuthorizationFailed.code()
    );
    assert!(h.node.cluster.image().quotas.is_empty());
    assert_eq!(
        code(call(&h, "admin", ApiKey::AlterClientQuotas, 1, request()).await),
        0
    );
    assert_eq!(h.node.cluster.image().quotas.len(), 1);
}
