//! The PodDisruptionBudget: node drains take down at most
//! `maxUnavailable` brokers (1 by default) at a time.

use k8s_openapi::{
    api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::owned_meta;
use crate::validate::ValidatedCluster;

/// Builds the PodDisruptionBudget, or `None` when the spec disables it.
pub fn build_pdb(cluster: &ValidatedCluster) -> Option<PodDisruptionBudget> {
    let pdb = &cluster.spec.pod_disruption_budget;
    pdb.enabled.then(|| PodDisruptionBudget {
        metadata: owned_meta(cluster, cluster.statefulset_name()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(pdb.max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(cluster.selector_labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::validated;

    #[test]
    fn one_broker_at_a_time_by_default() {
        let pdb = build_pdb(&validated("replicas: 3")).unwrap();
        assert_eq!(pdb.metadata.name.as_deref(), Some("demo-broker"));
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert!(spec.min_available.is_none());
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
            "demo"
        );
    }

    #[test]
    fn can_be_disabled() {
        assert!(build_pdb(&validated(
            "replicas: 1\npodDisruptionBudget:\n  enabled: false"
        ))
        .is_none());
        let two = build_pdb(&validated(
            "replicas: 5\npodDisruptionBudget:\n  maxUnavailable: 2",
        ))
        .unwrap();
        assert_eq!(two.spec.unwrap().max_unavailable, Some(IntOrString::Int(2)));
    }
}
