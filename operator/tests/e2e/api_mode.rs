//! api mode's check of what the operator must not do without answers from
//! brokers: no restart, no blind shrink.

use super::*;
/// api mode: the operator must not restart brokers it cannot ask about
/// replication, nor shrink a cluster whose leaving broker it cannot drain.
pub(crate) async fn api_mode_roll_and_scale(ns: &TestNamespace) {
    let clusters: Api<KafkaCluster> = ns.api();
    let statefulsets: Api<StatefulSet> = ns.api();
    let pods: Api<Pod> = ns.api();
    let sts_name = format!("{CLUSTER}-broker");
    let pod_uids = || async {
        broker_pods(&pods)
            .await
            .iter()
            .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
            .collect::<BTreeMap<_, _>>()
    };
    let uids_before = pod_uids().await;
    let revision_before = statefulsets
        .get(&sts_name)
        .await
        .unwrap()
        .status
        .and_then(|s| s.update_revision);

    // A config change: a new revision, a roll that waits.
    patch_cluster(
        &clusters,
        json!({"spec": {"config": {"log.retention.ms": "3600000"}}}),
    )
    .await;
    let message = wait_for(
        "the roll to wait for the brokers",
        Duration::from_secs(60),
        || async {
            let cluster = clusters.get(CLUSTER).await.ok()?;
            let (status, reason, message) = condition(&cluster, "Progressing")?;
            (status == "True" && reason == "RollingRestart").then_some(message)
        },
    )
    .await;
    assert!(
        message.contains("cannot reach the brokers"),
        "the roll says why it waits: {message}"
    );
    let sts = statefulsets.get(&sts_name).await.unwrap();
    assert_ne!(
        sts.status.and_then(|s| s.update_revision),
        revision_before,
        "a config change makes a new StatefulSet revision"
    );
    // Two more reconciles' worth of time: still no broker restarted.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(pod_uids().await, uids_before, "no pod may be deleted");

    // Scale out through the scale subresource (kubectl scale).
    let template_before = statefulsets
        .get(&sts_name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .template;
    scale_cluster(&clusters, 4).await;
    wait_for(
        "the StatefulSet to grow to 4",
        Duration::from_secs(60),
        || async {
            let sts = statefulsets.get(&sts_name).await.ok()?;
            (sts.spec?.replicas == Some(4)).then_some(())
        },
    )
    .await;
    assert_eq!(
        statefulsets
            .get(&sts_name)
            .await
            .unwrap()
            .spec
            .unwrap()
            .template,
        template_before,
        "scaling does not change the pod template"
    );
    wait_for("4 brokers ready", Duration::from_secs(60), || async {
        mark_pods_ready(&pods).await;
        let cluster = clusters.get(CLUSTER).await.ok()?;
        (cluster.status?.ready_brokers == 4).then_some(())
    })
    .await;
    let data = ns
        .api::<ConfigMap>()
        .get(&format!("{CLUSTER}-config"))
        .await
        .unwrap()
        .data
        .unwrap();
    assert!(data.contains_key("broker-3.properties"));
    // Four brokers want three voters: broker 3 is not one of them.
    let broker_3 = &data["broker-3.properties"];
    assert!(
        broker_3.contains("\ncontroller.quorum.voters=0@") && !broker_3.contains(",3@"),
        "{broker_3}"
    );
    assert!(broker_3.ends_with("process.roles=broker\n"), "{broker_3}");

    // Scale in: the brokers cannot be asked, so the drain waits and the
    // StatefulSet keeps broker 3.
    scale_cluster(&clusters, 3).await;
    wait_for("the drain to wait", Duration::from_secs(60), || async {
        let cluster = clusters.get(CLUSTER).await.ok()?;
        let (status, reason, _) = condition(&cluster, "Progressing")?;
        (status == "True"
            && reason == "Draining"
            && cluster.status?.observed_generation == cluster.metadata.generation)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        statefulsets
            .get(&sts_name)
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(4),
        "nothing shrinks without proof the leaving broker is empty"
    );
}
