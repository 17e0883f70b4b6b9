//! Kafka-style named listeners: `listeners`, `advertised.listeners` and
//! `listener.security.protocol.map`, parsed into what the broker binds and
//! what it tells clients of each listener.
//!
//! A client is always answered with the addresses of the listener it came
//! in on, so one broker can serve pods inside a cluster (internal DNS names)
//! and clients outside it (node ports, load balancers) at the same time.

use std::collections::BTreeMap;

use crate::security::SecurityProtocol;

/// One listener as configured (before its host is resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// The listener name (`PLAINTEXT`, `INTERNAL`, `EXTERNAL`, ...).
    pub name: String,
    /// Host or address to bind (empty host means all interfaces).
    pub host: String,
    /// Port to bind (0 picks a free one).
    pub port: u16,
    /// What Metadata says for this listener, if set.
    pub advertised: Option<(String, u16)>,
    /// Its security protocol, from `listener.security.protocol.map`.
    pub protocol: SecurityProtocol,
}

/// Kafka's default `listener.security.protocol.map`.
const DEFAULT_PROTOCOLS: &[(&str, &str)] = &[
    ("PLAINTEXT", "PLAINTEXT"),
    // The controller listener of Kafka's KRaft examples, so a cluster
    // config needs no protocol map.
    ("CONTROLLER", "PLAINTEXT"),
    ("SSL", "SSL"),
    ("SASL_PLAINTEXT", "SASL_PLAINTEXT"),
    ("SASL_SSL", "SASL_SSL"),
];

/// Splits `NAME://host:port` (IPv6 hosts in brackets).
fn endpoint(url: &str) -> Result<(String, String, u16), String> {
    let (name, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("listener `{url}` is not NAME://host:port"))?;
    if name.is_empty() {
        return Err(format!("listener `{url}` has no name"));
    }
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("listener `{url}` has no port"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("listener `{url}` has an invalid port"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((name.to_ascii_uppercase(), host, port))
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Parses the three settings together and checks that they fit: unique
/// names, every listener's protocol one of Kafka's four, every advertised
/// name a real listener, no advertised wildcard address.
pub fn parse(
    listeners: &str,
    advertised: Option<&str>,
    protocol_map: Option<&str>,
) -> Result<Vec<ListenerSpec>, String> {
    let protocols: BTreeMap<String, String> = match protocol_map {
        Some(map) => split(map)
            .map(|pair| {
                pair.split_once(':')
                    .map(|(n, p)| (n.trim().to_ascii_uppercase(), p.trim().to_ascii_uppercase()))
                    .ok_or_else(|| {
                        format!(
                            "listener.security.protocol.map entry `{pair}` is not NAME:PROTOCOL"
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
        None => DEFAULT_PROTOCOLS
            .iter()
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect(),
    };
    let mut specs: Vec<ListenerSpec> = Vec::new();
    for url in split(listeners) {
        let (name, host, port) = endpoint(url)?;
        let protocol = match protocols.get(&name).map(String::as_str) {
            Some(p) => SecurityProtocol::parse(p).ok_or_else(|| {
                format!(
                    "listener {name} uses `{p}`; the protocols are PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL"
                )
            })?,
            None => {
                return Err(format!(
                    "listener {name} is not in listener.security.protocol.map"
                ))
            }
        };
        if specs.iter().any(|s| s.name == name) {
            return Err(format!("listener {name} is given twice"));
        }
        if port != 0 && specs.iter().any(|s| s.port == port && s.host == host) {
            return Err(format!(
                "listeners {name} and another both bind {host}:{port}"
            ));
        }
        specs.push(ListenerSpec {
            name,
            host,
            port,
            advertised: None,
            protocol,
        });
    }
    if specs.is_empty() {
        return Err("no listeners given".into());
    }
    for url in advertised.map(split).into_iter().flatten() {
        let (name, host, port) = endpoint(url)?;
        if host.is_empty() || host == "0.0.0.0" || host == "::" {
            return Err(format!(
                "advertised listener {name} must name a host clients can reach, not `{host}`"
            ));
        }
        let spec = specs
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| format!("advertised listener {name} is not one of the listeners"))?;
        spec.advertised = Some((host, port));
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_plaintext_listener() {
        let l = parse("PLAINTEXT://127.0.0.1:9092", None, None).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].name.as_str(), l[0].host.as_str(), l[0].port),
            ("PLAINTEXT", "127.0.0.1", 9092)
        );
        assert_eq!(l[0].advertised, None);
    }

    #[test]
    fn named_listeners_with_a_protocol_map_and_advertised_addresses() {
        let l = parse(
            "INTERNAL://:9092,EXTERNAL://0.0.0.0:9094",
            Some("INTERNAL://kafka-0.kafka:9092,EXTERNAL://203.0.113.7:31000"),
            Some("INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"),
        )
        .unwrap();
        assert_eq!(l[0].host, "");
        assert_eq!(l[0].advertised, Some(("kafka-0.kafka".into(), 9092)));
        assert_eq!(l[1].advertised, Some(("203.0.113.7".into(), 31000)));
    }

    #[test]
    fn every_kafka_security_protocol_is_a_listener() {
        let l = parse(
            "INTERNAL://:9092,EXTERNAL://:9093,SSL://:9094,SASL_PLAINTEXT://:9095",
            None,
            Some("INTERNAL:SASL_SSL,EXTERNAL:ssl,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"),
        )
        .unwrap();
        let protocols: Vec<_> = l.iter().map(|s| s.protocol).collect();
        assert_eq!(
            protocols,
            [
                SecurityProtocol::SaslSsl,
                SecurityProtocol::Ssl,
                SecurityProtocol::Ssl,
                SecurityProtocol::SaslPlaintext
            ]
        );
        // Kafka's default map names the four protocols after themselves.
        let l = parse("SASL_SSL://:9092", None, None).unwrap();
        assert_eq!(l[0].protocol, SecurityProtocol::SaslSsl);
    }

    #[test]
    fn mistakes_are_refused_with_reasons() {
        let err = |l: &str, a: Option<&str>, m: Option<&str>| parse(l, a, m).unwrap_err();
        assert!(err("A://:9093", None, Some("A:TLS")).contains("protocols are"));
        assert!(err("INTERNAL://:9092", None, None).contains("protocol.map"));
        assert!(err("PLAINTEXT://:1,PLAINTEXT://:2", None, None).contains("twice"));
        assert!(err("PLAINTEXT://:1", Some("OTHER://h:1"), None).contains("not one of"));
        assert!(err("PLAINTEXT://:1", Some("PLAINTEXT://0.0.0.0:1"), None).contains("reach"));
        assert!(err("PLAINTEXT://x", None, None).contains("port"));
        assert!(err("", None, None).contains("no listeners"));
    }
}
