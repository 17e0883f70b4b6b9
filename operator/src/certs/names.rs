//! The DNS names a broker's certificate must carry: every name a client
//! may dial it by, so hostname verification passes whichever it uses.
//!
//! Broker `id` of cluster `c` in namespace `ns` is the pod `c-broker-<id>`
//! behind the headless Service `c-brokers` (its own name) and the ClusterIP
//! Service `c-bootstrap` (the bootstrap address every client starts from).
//! `localhost` is deliberately absent: a certificate valid for it would be
//! valid for any broker dialled through a local port-forward, which is
//! exactly the confusion hostname verification exists to catch.

/// The Kubernetes cluster domain when none is configured.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// [`broker_dns_names_in`] with the default cluster domain `cluster.local`.
pub fn broker_dns_names(
    cluster: &str,
    namespace: &str,
    broker_id: i32,
    external_hosts: &[String],
) -> Vec<String> {
    broker_dns_names_in(
        cluster,
        namespace,
        DEFAULT_CLUSTER_DOMAIN,
        broker_id,
        external_hosts,
    )
}

/// Every DNS name of broker `broker_id`: its per-broker headless names
/// (`<c>-broker-<id>.<c>-brokers.<ns>.svc` and `...svc.<domain>`, plus the
/// shorter forms resolvable inside the namespace), the bootstrap Service's
/// names (short and long), then `external_hosts` (names only; IP
/// addresses belong in the certificate's IP names). Sorted, no duplicates.
pub fn broker_dns_names_in(
    cluster: &str,
    namespace: &str,
    cluster_domain: &str,
    broker_id: i32,
    external_hosts: &[String],
) -> Vec<String> {
    let pod = format!("{cluster}-broker-{broker_id}.{cluster}-brokers");
    let bootstrap = format!("{cluster}-bootstrap");
    let mut names = vec![
        pod.clone(),
        format!("{pod}.{namespace}"),
        format!("{pod}.{namespace}.svc"),
        format!("{pod}.{namespace}.svc.{cluster_domain}"),
        bootstrap.clone(),
        format!("{bootstrap}.{namespace}"),
        format!("{bootstrap}.{namespace}.svc"),
        format!("{bootstrap}.{namespace}.svc.{cluster_domain}"),
    ];
    names.extend(
        external_hosts
            .iter()
            .filter(|h| h.parse::<std::net::IpAddr>().is_err() && !h.is_empty())
            .cloned(),
    );
    names.sort();
    names.dedup();
    names
}

/// The IP addresses among `external_hosts`, for the certificate's IP names.
pub fn external_ips(external_hosts: &[String]) -> Vec<std::net::IpAddr> {
    let mut ips: Vec<std::net::IpAddr> = external_hosts
        .iter()
        .filter_map(|h| h.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_names_cover_headless_bootstrap_and_external_hosts() {
        let names = broker_dns_names(
            "demo",
            "kafka",
            2,
            &["kafka-2.example.com".into(), "203.0.113.7".into()],
        );
        for expected in [
            "demo-broker-2.demo-brokers.kafka.svc",
            "demo-broker-2.demo-brokers.kafka.svc.cluster.local",
            "demo-bootstrap",
            "demo-bootstrap.kafka.svc",
            "demo-bootstrap.kafka.svc.cluster.local",
            "kafka-2.example.com",
        ] {
            assert!(
                names.contains(&expected.to_string()),
                "{expected} in {names:?}"
            );
        }
        assert!(!names.iter().any(|n| n == "localhost" || n == "203.0.113.7"));
        assert!(!names.iter().any(|n| n.contains("broker-1")));
        assert_eq!(
            external_ips(&["203.0.113.7".into(), "x.example".into()]),
            vec!["203.0.113.7".parse::<std::net::IpAddr>().unwrap()]
        );
        let custom = broker_dns_names_in("demo", "kafka", "corp.internal", 0, &[]);
        assert!(custom.contains(&"demo-broker-0.demo-brokers.kafka.svc.corp.internal".into()));
    }
}
