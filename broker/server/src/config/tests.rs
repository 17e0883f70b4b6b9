use super::*;

fn build(raw: &[(&str, &str)]) -> Result<BrokerConfig, ConfigError> {
    BrokerConfig::new(
        0,
        vec![ListenerConfig::plaintext("127.0.0.1:0".parse().unwrap())],
        PathBuf::from("/tmp/x"),
        None,
        raw.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn log_keys_become_topic_defaults() {
    let c = build(&[
        ("log.segment.bytes", "1048576"),
        ("log.retention.hours", "2"),
    ])
    .unwrap();
    assert_eq!(c.topic_defaults.segment_bytes, 1_048_576);
    assert_eq!(c.topic_defaults.retention_ms, 7_200_000);
}

#[test]
fn unknown_and_invalid_keys_are_refused() {
    assert!(matches!(
        build(&[("no.such.key", "1")]),
        Err(ConfigError::UnknownKey(_))
    ));
    assert!(matches!(
        build(&[("num.partitions", "zero")]),
        Err(ConfigError::InvalidValue { .. })
    ));
    assert!(matches!(
        build(&[("log.segment.bytes", "3")]),
        Err(ConfigError::TopicDefault(_))
    ));
}

#[test]
fn group_keys_are_typed() {
    let c = build(&[]).unwrap();
    assert_eq!(c.group_initial_rebalance_delay, Duration::from_millis(3000));
    assert_eq!(c.offsets_topic_partitions, 50);
    let c = build(&[
        ("group.initial.rebalance.delay.ms", "0"),
        ("group.min.session.timeout.ms", "1000"),
        ("offsets.topic.num.partitions", "3"),
        ("offsets.retention.minutes", "2"),
    ])
    .unwrap();
    assert_eq!(c.group_initial_rebalance_delay, Duration::ZERO);
    assert_eq!(c.group_min_session_timeout, Duration::from_millis(1000));
    assert_eq!(c.offsets_topic_partitions, 3);
    assert_eq!(c.offsets_retention, Duration::from_secs(120));
    assert!(build(&[("group.min.session.timeout.ms", "2000000")]).is_err());
    assert!(build(&[("group.initial.rebalance.delay.ms", "-1")]).is_err());
}

#[test]
fn advertised_defaults_to_loopback_for_wildcard() {
    let bound: SocketAddr = "0.0.0.0:1234".parse().unwrap();
    let l = ListenerConfig::plaintext(bound);
    assert_eq!(l.advertised_endpoint(bound), ("127.0.0.1".into(), 1234));
    let named = ListenerConfig {
        advertised: Some(("kafka-0".into(), 0)),
        ..l
    };
    assert_eq!(named.advertised_endpoint(bound), ("kafka-0".into(), 1234));
}

#[test]
fn rack_is_read() {
    assert_eq!(
        build(&[("broker.rack", "zone-a")]).unwrap().rack.as_deref(),
        Some("zone-a")
    );
    assert_eq!(build(&[]).unwrap().rack, None);
}

#[test]
fn cluster_settings_take_the_controller_listener() {
    let listeners = vec![
        ListenerConfig::plaintext("127.0.0.1:9092".parse().unwrap()),
        ListenerConfig {
            name: "CONTROLLER".into(),
            addr: "127.0.0.1:9093".parse().unwrap(),
            advertised: None,
            protocol: SecurityProtocol::Plaintext,
        },
    ];
    let raw = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    let config = BrokerConfig::new(
        1,
        listeners.clone(),
        PathBuf::from("/tmp/x"),
        None,
        raw(&[
            (
                "controller.quorum.voters",
                "0@h0:9093,1@127.0.0.1:9093,2@h2:9093",
            ),
            ("controller.listener.names", "CONTROLLER"),
            ("replica.lag.time.max.ms", "5000"),
            ("controller.quorum.election.timeout.ms", "400"),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.replication.quorum_election_timeout,
        Duration::from_millis(400)
    );
    let cluster = config.cluster;
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(cluster.voters.len(), 3);
    assert_eq!(cluster.controller_advertised, "127.0.0.1:9093");
    assert_eq!(cluster.inter_broker_listener, "PLAINTEXT");
    assert_eq!(
        config.replication.replica_lag_time_max,
        Duration::from_millis(5000)
    );
    let fails = |pairs: &[(&str, &str)]| {
        BrokerConfig::new(1, listeners.clone(), PathBuf::from("/x"), None, raw(pairs))
            .unwrap_err()
            .to_string()
    };
    assert!(fails(&[("controller.quorum.voters", "0@a:1,1@b:2")]).contains("1, 3 or 5"));
    assert!(fails(&[("controller.quorum.voters", "0@a")]).contains("no port"));
    assert!(fails(&[("controller.quorum.election.timeout.ms", "0")])
        .contains("controller.quorum.election.timeout.ms"));
    assert!(fails(&[("controller.quorum.voters", "0@a:1")]).contains("required"));
    assert!(fails(&[
        ("controller.quorum.voters", "0@a:1"),
        ("controller.listener.names", "NOPE")
    ])
    .contains("no listener"));
}

#[test]
fn secured_controller_and_inter_broker_listeners_are_checked_for_what_peers_need() {
    let listener = |name: &str, port: u16, protocol| ListenerConfig {
        name: name.into(),
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        advertised: None,
        protocol,
    };
    let cluster = |listeners: Vec<ListenerConfig>, extra: &[(&str, &str)]| {
        let mut raw: BTreeMap<String, String> = [
            (
                "controller.quorum.voters",
                "0@127.0.0.1:9093,1@h1:9093,2@h2:9093",
            ),
            ("controller.listener.names", "CONTROLLER"),
            ("ssl.keystore.location", "/certs/broker.pem"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        raw.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        BrokerConfig::new(0, listeners, PathBuf::from("/x"), None, raw)
    };
    let err = |r: Result<BrokerConfig, ConfigError>| r.unwrap_err().to_string();
    let secured = || {
        vec![
            listener("INTERNAL", 9092, SecurityProtocol::SaslSsl),
            listener("CONTROLLER", 9093, SecurityProtocol::Ssl),
        ]
    };
    let trust = ("ssl.truststore.location", "/certs/ca.pem");
    let login = (
        "listener.name.internal.scram-sha-512.sasl.jaas.config",
        "org.apache.kafka.common.security.scram.ScramLoginModule required \
         username=\"broker\" password=\"s\";",
    );
    let ok = cluster(secured(), &[trust, login]).unwrap();
    let controller = ok.security.listener("CONTROLLER").tls.unwrap();
    assert_eq!(
        controller.client_auth,
        crate::security::tls::ClientAuth::Required
    );
    assert_eq!(
        ok.cluster.controller_listener,
        Some(("CONTROLLER".into(), SecurityProtocol::Ssl))
    );
    let e = err(cluster(secured(), &[login]));
    assert!(e.contains("truststore"), "{e}");
    let e = err(cluster(secured(), &[trust]));
    assert!(e.contains("username"), "{e}");
    let e = err(cluster(
        vec![
            listener("PLAINTEXT", 9092, SecurityProtocol::Plaintext),
            listener("CONTROLLER", 9093, SecurityProtocol::SaslSsl),
        ],
        &[trust],
    ));
    assert!(e.contains("not SASL"), "{e}");
    // Kafka's older name: the listener named after the protocol.
    let by_protocol = cluster(
        vec![
            listener("PLAINTEXT", 9092, SecurityProtocol::Plaintext),
            listener("SSL", 9094, SecurityProtocol::Ssl),
            listener("CONTROLLER", 9093, SecurityProtocol::Plaintext),
        ],
        &[trust, ("security.inter.broker.protocol", "ssl")],
    )
    .unwrap();
    assert_eq!(by_protocol.cluster.inter_broker_listener, "SSL");
    let e = err(cluster(
        secured(),
        &[
            trust,
            login,
            ("security.inter.broker.protocol", "SSL"),
            ("inter.broker.listener.name", "INTERNAL"),
        ],
    ));
    assert!(e.contains("not both"), "{e}");
}

#[test]
fn transaction_version_is_a_level_from_0_to_2() {
    assert_eq!(build(&[]).unwrap().transactions.version, 2, "Kafka 4.0's");
    for level in [0, 1, 2] {
        let c = build(&[("transaction.version", &level.to_string())]).unwrap();
        assert_eq!(c.transactions.version, level);
    }
    for bad in ["3", "-1", "two"] {
        assert!(matches!(
            build(&[("transaction.version", bad)]),
            Err(ConfigError::InvalidValue { .. })
        ));
    }
}
