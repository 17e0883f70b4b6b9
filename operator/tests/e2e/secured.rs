//! The secured example (`manifests/examples/secure-cluster.yaml`) against
//! `$KUBECONFIG`'s cluster, its schema rules included: what the
//! operator builds for it with the chart's RBAC (the NetworkPolicy, the
//! certificates volume, the `REPLICATION` listener and ports), and the
//! policy deleted when `networkPolicies.enabled` turns false. Brokers are
//! not waited for: their certificates come from the certificate
//! authorities' reconcile, and this test checks the listener side only.

use k8s_openapi::api::networking::v1::NetworkPolicy;

use super::*;

const SECURED: &str = "secure";

#[tokio::test]
async fn secured_cluster_gets_its_policy_mounts_and_replication_listener() {
    let test = "secured_cluster_gets_its_policy_mounts_and_replication_listener";
    let Some(client) = cluster_client(test).await else {
        return;
    };
    let mode = mode(&client).await;
    install(&client).await;
    let ns = TestNamespace::create(&client, "secured").await;
    // The chart's operator in pods mode, a local one with the chart's
    // ServiceAccount (so its RBAC is what is tested) otherwise.
    let _operator = match mode {
        Mode::Pods => None,
        Mode::Api | Mode::Processes => Some(LocalOperator::start(&client, &ns.name, None).await),
    };
    let clusters: Api<KafkaCluster> = ns.api();
    // The example users copy, as they would apply it.
    let example = include_str!("../../../manifests/examples/secure-cluster.yaml");
    let cluster_doc = example
        .split("\n---\n")
        .find(|doc| doc.contains("kind: KafkaCluster"))
        .expect("the example's KafkaCluster");
    create_from_yaml(&clusters, cluster_doc).await;

    let policies: Api<NetworkPolicy> = ns.api();
    let policy = wait_for("the NetworkPolicy", mode.patience(), || async {
        policies
            .get_opt(&format!("{SECURED}-network-policy"))
            .await
            .ok()?
    })
    .await;
    let cluster = clusters.get(SECURED).await.expect("the KafkaCluster");
    assert_owned_by(&policy, &cluster, "NetworkPolicy");
    let rules = policy.spec.unwrap().ingress.unwrap();
    let ports: Vec<String> = rules
        .iter()
        .map(|r| format!("{:?}", r.ports.as_ref().unwrap()[0].port))
        .collect();
    // internal, external, replication, controller, metrics
    assert_eq!(ports.len(), 5, "{ports:?}");
    assert!(ports[2].contains("9091"), "{ports:?}");

    let sts = wait_for("the StatefulSet", mode.patience(), || async {
        ns.api::<StatefulSet>()
            .get_opt(&format!("{SECURED}-broker"))
            .await
            .ok()?
    })
    .await;
    let pod = sts.spec.unwrap().template.spec.unwrap();
    assert!(
        pod.volumes.unwrap().iter().any(|v| v
            .secret
            .as_ref()
            .is_some_and(|s| s.secret_name.as_deref() == Some("secure-broker-certs"))),
        "the certificates volume"
    );
    assert!(pod.containers[0]
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .any(|p| p.container_port == 9091));
    let config: ConfigMap = ns
        .api::<ConfigMap>()
        .get(&format!("{SECURED}-config"))
        .await
        .expect("the ConfigMap");
    let shared = &config.data.unwrap()["server.properties"];
    for line in [
        "inter.broker.listener.name=REPLICATION",
        "listener.security.protocol.map=INTERNAL:SSL,EXTERNAL:SASL_SSL,REPLICATION:SSL,CONTROLLER:SSL",
        "listener.name.internal.ssl.client.auth=required",
        "listener.name.external.sasl.enabled.mechanisms=SCRAM-SHA-512",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    ] {
        assert!(shared.lines().any(|l| l == line), "{line} in {shared}");
    }
    let bootstrap: Service = ns
        .api::<Service>()
        .get(&format!("{SECURED}-bootstrap"))
        .await
        .expect("the bootstrap Service");
    assert!(bootstrap
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .any(|p| p.port == 9091));

    // Turned off: the policy goes (the chart lets the operator delete it).
    clusters
        .patch(
            SECURED,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"networkPolicies": {"enabled": false}}})),
        )
        .await
        .expect("turn NetworkPolicies off");
    wait_for("the NetworkPolicy deleted", mode.patience(), || async {
        policies
            .get_opt(&format!("{SECURED}-network-policy"))
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}
