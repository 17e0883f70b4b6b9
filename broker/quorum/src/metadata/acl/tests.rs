use super::*;

/// Looks a value up by its Kafka name.
fn named<T: Copy + fmt::Display>(values: &[T], name: &str) -> T {
    *values
        .iter()
        .find(|v| v.to_string() == name)
        .unwrap_or_else(|| panic!("{name}"))
}

/// A binding from Kafka's words: `TYPE name PATTERN principal host OPERATION PERMISSION`,
/// with `""` for an empty field.
fn b(spec: &str) -> AclBinding {
    let f: Vec<String> = spec
        .split_whitespace()
        .map(|t| if t == "\"\"" { "" } else { t }.to_string())
        .collect();
    assert_eq!(f.len(), 7, "{spec}");
    AclBinding {
        resource_type: named(ResourceType::VALUES, &f[0]),
        resource_name: f[1].clone(),
        pattern_type: named(PatternType::VALUES, &f[2]),
        principal: f[3].clone(),
        host: f[4].clone(),
        operation: named(Operation::VALUES, &f[5]),
        permission: named(Permission::VALUES, &f[6]),
    }
}

fn acls(specs: &[&str]) -> Vec<AclBinding> {
    specs.iter().map(|s| b(s)).collect()
}

fn config(allow_everyone_if_no_acl_found: bool) -> AuthorizerConfig {
    AuthorizerConfig {
        super_users: ["User:admin".to_string()].into(),
        allow_everyone_if_no_acl_found,
    }
}

/// Asks [`authorize`] as `principal OPERATION TYPE name` from 10.0.0.1,
/// with allow.everyone.if.no.acl.found off.
fn may(specs: &[&str], request: &str) -> bool {
    ask(specs, false, request)
}

fn ask(specs: &[&str], allow_everyone: bool, request: &str) -> bool {
    let r: Vec<&str> = request.split_whitespace().collect();
    let request = Request {
        principal: r[0],
        host: "10.0.0.1",
        operation: named(Operation::VALUES, r[1]),
        resource_type: named(ResourceType::VALUES, r[2]),
        resource_name: r[3],
    };
    authorize(&acls(specs), &config(allow_everyone), &request)
}

#[test]
fn codes_round_trip_and_filter_only_codes_are_refused() {
    macro_rules! round_trip {
        ($t:ty, $codes:expr) => {
            let codes: Vec<i8> = <$t>::VALUES.iter().map(|v| v.code()).collect();
            assert_eq!(codes, $codes.into_iter().collect::<Vec<i8>>());
            for v in <$t>::VALUES {
                assert_eq!(<$t>::from_code(v.code()), Some(*v));
            }
            for code in [0, -1, 99] {
                assert_eq!(<$t>::from_code(code), None);
            }
        };
    }
    round_trip!(ResourceType, 2..=7);
    round_trip!(PatternType, 3..=4);
    round_trip!(Operation, 2..=14);
    round_trip!(Permission, 2..=3);
    round_trip!(PatternFilter, 1..=4);
    assert_eq!(ResourceType::from_code(1), None, "ANY is filter-only");
    assert_eq!(PatternType::from_code(2), None, "MATCH is filter-only");
    assert_eq!(ResourceType::TransactionalId.name(), "TRANSACTIONAL_ID");
    assert_eq!(PatternType::Prefixed.to_string(), "PREFIXED");
    assert_eq!(Operation::IdempotentWrite.name(), "IDEMPOTENT_WRITE");
    assert_eq!(Permission::Allow.name(), "ALLOW");
    assert_eq!(PatternFilter::Match.name(), "MATCH");
}

/// The bindings the filter tests select from, by index.
const FILTERED: [&str; 8] = [
    "TOPIC payments.received LITERAL User:a * READ ALLOW",
    "TOPIC * LITERAL User:a * READ ALLOW",
    "TOPIC payments. PREFIXED User:a * READ ALLOW",
    "TOPIC pay PREFIXED User:a * READ ALLOW",
    "TOPIC payments.received PREFIXED User:a * READ ALLOW",
    "TOPIC payments LITERAL User:a * READ ALLOW",
    "TOPIC refunds. PREFIXED User:a * READ ALLOW",
    "GROUP payments.received LITERAL User:b 10.0.0.1 WRITE DENY",
];

/// Checks `TYPE name PATTERN principal host OPERATION PERMISSION => indices`,
/// a filter in Kafka's words (`ANY` or `-` for none) and the indices of
/// [`FILTERED`] it must select.
fn check_filter(case: &str) {
    let (spec, want) = case.split_once(" => ").unwrap();
    let f: Vec<&str> = spec.split_whitespace().collect();
    let text = |t: &str| (t != "-").then(|| t.to_string());
    let filter = AclFilter {
        resource_type: (f[0] != "ANY").then(|| named(ResourceType::VALUES, f[0])),
        resource_name: text(f[1]),
        pattern: named(PatternFilter::VALUES, f[2]),
        principal: text(f[3]),
        host: text(f[4]),
        operation: (f[5] != "ANY").then(|| named(Operation::VALUES, f[5])),
        permission: (f[6] != "ANY").then(|| named(Permission::VALUES, f[6])),
    };
    let all = acls(&FILTERED);
    let got: Vec<String> = (0..all.len())
        .filter(|&i| filter.matches(&all[i]))
        .map(|i| i.to_string())
        .collect();
    assert_eq!(got.join(" "), want, "{case}");
}

#[test]
fn filter_match_selects_what_applies_to_the_named_resource() {
    check_filter("TOPIC payments.received MATCH - - ANY ANY => 0 1 2 3 4");
    check_filter("TOPIC refunds MATCH - - ANY ANY => 1");
    check_filter("TOPIC - MATCH - - ANY ANY => 0 1 2 3 4 5 6");
    check_filter("ANY payments.received MATCH - - ANY ANY => 0 1 2 3 4 7");
}

#[test]
fn filter_any_selects_the_exact_name_of_either_pattern_type() {
    check_filter("TOPIC payments.received ANY - - ANY ANY => 0 4");
    check_filter("TOPIC * ANY - - ANY ANY => 1");
    check_filter("TOPIC - ANY - - ANY ANY => 0 1 2 3 4 5 6");
    check_filter("ANY - ANY - - ANY ANY => 0 1 2 3 4 5 6 7");
    assert_eq!(AclFilter::any().pattern, PatternFilter::Any);
}

#[test]
fn filter_literal_and_prefixed_select_exact_name_and_type() {
    check_filter("TOPIC payments.received LITERAL - - ANY ANY => 0");
    check_filter("TOPIC payments.received PREFIXED - - ANY ANY => 4");
    check_filter("TOPIC pay PREFIXED - - ANY ANY => 3");
    check_filter("TOPIC pay LITERAL - - ANY ANY => ");
    check_filter("TOPIC - LITERAL - - ANY ANY => 0 1 5");
    check_filter("TOPIC - PREFIXED - - ANY ANY => 2 3 4 6");
}

#[test]
fn filter_resource_type_and_entry_fields_compare_exactly() {
    check_filter("GROUP - ANY - - ANY ANY => 7");
    // `User:*` and `*` in a filter select wildcard bindings, not everyone's.
    check_filter("ANY - ANY User:* - ANY ANY => ");
    check_filter("ANY - ANY - * ANY ANY => 0 1 2 3 4 5 6");
    check_filter("ANY - ANY User:b - ANY ANY => 7");
    check_filter("ANY - ANY - 10.0.0.1 ANY ANY => 7");
    check_filter("ANY - ANY - - WRITE ANY => 7");
    check_filter("ANY - ANY - - ALL ANY => ");
    check_filter("ANY - ANY - - ANY DENY => 7");
    check_filter("ANY - ANY User:b 10.0.0.1 WRITE DENY => 7");
}

#[test]
fn filter_from_codes_decodes_any_and_refuses_unknown() {
    assert_eq!(
        AclFilter::from_codes(1, None, 1, None, None, 1, 1),
        Ok(AclFilter::any())
    );
    let f = AclFilter::from_codes(2, Some("t".into()), 2, Some("User:a".into()), None, 4, 3);
    let want = AclFilter {
        resource_type: Some(ResourceType::Topic),
        resource_name: Some("t".into()),
        pattern: PatternFilter::Match,
        principal: Some("User:a".into()),
        host: None,
        operation: Some(Operation::Write),
        permission: Some(Permission::Allow),
    };
    assert_eq!(f, Ok(want));
    for (codes, field) in [
        ([0, 1, 1, 1], "resourceType"),
        ([9, 1, 1, 1], "resourceType"),
        ([1, 0, 1, 1], "patternType"),
        ([1, 1, 0, 1], "operation"),
        ([1, 1, 15, 1], "operation"),
        ([1, 1, 1, 0], "permissionType"),
    ] {
        let [rt, pt, op, perm] = codes;
        let err = AclFilter::from_codes(rt, None, pt, None, None, op, perm).unwrap_err();
        let want_code = codes.into_iter().find(|&c| c != 1).unwrap();
        let want = AclError::UnknownFilterCode {
            field: field.into(),
            code: want_code,
        };
        assert_eq!(err, want);
        assert_eq!(err.code(), 42);
    }
}

#[test]
fn validate_accepts_what_kafka_accepts() {
    for ok in [
        "TOPIC t LITERAL User:alice * WRITE ALLOW",
        "TOPIC * PREFIXED User:alice * WRITE ALLOW",
        "GROUP g LITERAL Group:ops 10.0.0.1 READ ALLOW",
        "CLUSTER kafka-cluster LITERAL User:* * CLUSTER_ACTION DENY",
        "USER bob LITERAL User:alice * CREATE_TOKENS ALLOW",
        "TOPIC t LITERAL User:CN=a,O=b:c * READ ALLOW",
    ] {
        assert_eq!(validate(&b(ok)), Ok(()), "{ok}");
    }
}

#[test]
fn validate_refuses_malformed_bindings() {
    for case in [
        "TOPIC \"\" LITERAL User:a * READ ALLOW => Invalid empty resource name",
        "CLUSTER my-cluster LITERAL User:a * READ ALLOW => The only valid name for the \
         CLUSTER resource is kafka-cluster",
        "CLUSTER \"\" LITERAL User:a * READ ALLOW => The only valid name for the CLUSTER \
         resource is kafka-cluster",
        "TOPIC t LITERAL alice * READ ALLOW => Could not parse principal from `alice` (no \
         colon is present separating the principal type from the principal name)",
        "TOPIC t LITERAL User: * READ ALLOW => Invalid principal `User:`: the principal type \
         and name must not be empty",
        "TOPIC t LITERAL :alice * READ ALLOW => Invalid principal `:alice`: the principal \
         type and name must not be empty",
        "TOPIC t LITERAL User:a \"\" READ ALLOW => Invalid empty host (use * for any host)",
    ] {
        let (spec, want) = case.split_once(" => ").unwrap();
        let err = validate(&b(spec)).unwrap_err();
        assert_eq!(err.to_string(), want);
        assert_eq!(err.code(), 42);
    }
}

#[test]
fn binding_from_codes_decodes_validates_and_names_bad_codes() {
    let decode = |[rt, pt, op, perm]: [i8; 4], principal: &str| {
        AclBinding::from_codes(rt, "t".into(), pt, principal.into(), "*".into(), op, perm)
    };
    let invalid = |field: &str, name: &str| {
        Err(AclError::InvalidCode {
            field: field.into(),
            name: name.into(),
        })
    };
    assert_eq!(
        decode([2, 3, 4, 3], "User:a"),
        Ok(b("TOPIC t LITERAL User:a * WRITE ALLOW"))
    );
    assert_eq!(
        decode([1, 3, 4, 3], "User:a"),
        invalid("resourceType", "ANY")
    );
    assert_eq!(
        decode([0, 3, 4, 3], "User:a"),
        invalid("resourceType", "UNKNOWN")
    );
    assert_eq!(
        decode([2, 2, 4, 3], "User:a"),
        invalid("patternType", "MATCH")
    );
    assert_eq!(
        decode([2, 1, 4, 3], "User:a"),
        invalid("patternType", "ANY")
    );
    assert_eq!(decode([2, 3, 1, 3], "User:a"), invalid("operation", "ANY"));
    assert_eq!(
        decode([2, 3, 4, 9], "User:a"),
        invalid("permissionType", "UNKNOWN")
    );
    let no_colon = Err(AclError::PrincipalWithoutColon("a".into()));
    assert_eq!(decode([2, 3, 4, 3], "a"), no_colon);
    let message = AclError::InvalidCode {
        field: "resourceType".into(),
        name: "ANY".into(),
    };
    assert_eq!(message.to_string(), "Invalid resourceType ANY");
}

#[test]
fn super_user_is_allowed_even_against_deny() {
    let deny_all = ["TOPIC * LITERAL User:* * ALL DENY"];
    assert!(may(&deny_all, "User:admin WRITE TOPIC t"));
    assert!(!may(&deny_all, "User:alice WRITE TOPIC t"));
    assert!(may(&[], "User:admin CLUSTER_ACTION TOPIC t"));
}

#[test]
fn literal_wildcard_and_prefixed_patterns() {
    let literal = ["TOPIC orders LITERAL User:a * READ ALLOW"];
    assert!(may(&literal, "User:a READ TOPIC orders"));
    assert!(!may(&literal, "User:a READ TOPIC orders2"));
    assert!(!may(&literal, "User:a READ TOPIC order"));
    let wildcard = ["TOPIC * LITERAL User:a * READ ALLOW"];
    assert!(may(&wildcard, "User:a READ TOPIC anything"));
    let prefixed = ["TOPIC orders. PREFIXED User:a * READ ALLOW"];
    assert!(may(&prefixed, "User:a READ TOPIC orders.eu"));
    assert!(may(&prefixed, "User:a READ TOPIC orders."));
    assert!(!may(&prefixed, "User:a READ TOPIC orders"));
    assert!(!may(&prefixed, "User:a READ TOPIC xorders.eu"));
    // A PREFIXED `*` is no wildcard: it matches names that start with `*`.
    let star_prefix = ["TOPIC * PREFIXED User:a * READ ALLOW"];
    assert!(!may(&star_prefix, "User:a READ TOPIC orders"));
    assert!(may(&star_prefix, "User:a READ TOPIC *orders"));
}

#[test]
fn principal_wildcard_and_other_principals() {
    let everyone = ["TOPIC t LITERAL User:* * WRITE ALLOW"];
    assert!(may(&everyone, "User:alice WRITE TOPIC t"));
    assert!(may(&everyone, "User:bob WRITE TOPIC t"));
    let alice = ["TOPIC t LITERAL User:alice * WRITE ALLOW"];
    assert!(!may(&alice, "User:bob WRITE TOPIC t"));
    assert!(!may(&alice, "Group:alice WRITE TOPIC t"));
}

#[test]
fn host_must_match_or_be_wildcard() {
    assert!(may(
        &["TOPIC t LITERAL User:a 10.0.0.1 READ ALLOW"],
        "User:a READ TOPIC t"
    ));
    assert!(!may(
        &["TOPIC t LITERAL User:a 10.0.0.2 READ ALLOW"],
        "User:a READ TOPIC t"
    ));
    assert!(may(
        &["TOPIC t LITERAL User:a * READ ALLOW"],
        "User:a READ TOPIC t"
    ));
    let deny_elsewhere = [
        "TOPIC t LITERAL User:a * READ ALLOW",
        "TOPIC t LITERAL User:a 10.0.0.2 READ DENY",
    ];
    assert!(may(&deny_elsewhere, "User:a READ TOPIC t"));
    let deny_here = [
        "TOPIC t LITERAL User:a * READ ALLOW",
        "TOPIC t LITERAL User:a 10.0.0.1 READ DENY",
    ];
    assert!(!may(&deny_here, "User:a READ TOPIC t"));
}

#[test]
fn deny_overrides_allow_whatever_the_route() {
    let allow = "TOPIC orders.eu LITERAL User:a * READ ALLOW";
    for deny in [
        "TOPIC orders.eu LITERAL User:a * READ DENY",
        "TOPIC orders.eu LITERAL User:* * READ DENY",
        "TOPIC orders. PREFIXED User:a * READ DENY",
        "TOPIC orders. PREFIXED User:* * READ DENY",
        "TOPIC * LITERAL User:a * READ DENY",
        "TOPIC orders.eu LITERAL User:a * ALL DENY",
    ] {
        // In either order: a DENY met after an ALLOW still wins.
        let request = "User:a READ TOPIC orders.eu";
        assert!(!may(&[allow, deny], request), "{deny}");
        assert!(!may(&[deny, allow], request), "{deny}");
    }
    let other_op = [allow, "TOPIC orders.eu LITERAL User:a * WRITE DENY"];
    assert!(may(&other_op, "User:a READ TOPIC orders.eu"));
    let other_user = [allow, "TOPIC orders.eu LITERAL User:b * READ DENY"];
    assert!(may(&other_user, "User:a READ TOPIC orders.eu"));
    let other_topic = [allow, "TOPIC orders.us PREFIXED User:a * READ DENY"];
    assert!(may(&other_topic, "User:a READ TOPIC orders.eu"));
}

#[test]
fn allow_implies_describe_and_describe_configs() {
    let allow = |op: &str| format!("TOPIC t LITERAL User:a * {op} ALLOW");
    for op in ["READ", "WRITE", "DELETE", "ALTER", "DESCRIBE", "ALL"] {
        assert!(may(&[&allow(op)], "User:a DESCRIBE TOPIC t"), "{op}");
    }
    for op in [
        "CREATE",
        "ALTER_CONFIGS",
        "DESCRIBE_CONFIGS",
        "CLUSTER_ACTION",
    ] {
        assert!(!may(&[&allow(op)], "User:a DESCRIBE TOPIC t"), "{op}");
    }
    assert!(may(
        &[&allow("ALTER_CONFIGS")],
        "User:a DESCRIBE_CONFIGS TOPIC t"
    ));
    assert!(!may(&[&allow("ALTER")], "User:a DESCRIBE_CONFIGS TOPIC t"));
    // Implication runs one way only.
    assert!(!may(&[&allow("DESCRIBE")], "User:a READ TOPIC t"));
    assert!(!may(
        &[&allow("DESCRIBE_CONFIGS")],
        "User:a ALTER_CONFIGS TOPIC t"
    ));
}

#[test]
fn deny_implies_nothing_beyond_itself() {
    let acls = [
        "TOPIC t LITERAL User:a * WRITE ALLOW",
        "TOPIC t LITERAL User:a * READ DENY",
    ];
    assert!(may(&acls, "User:a DESCRIBE TOPIC t"));
    assert!(!may(&acls, "User:a READ TOPIC t"));
    let acls = [
        "TOPIC t LITERAL User:a * ALL ALLOW",
        "TOPIC t LITERAL User:a * ALTER_CONFIGS DENY",
    ];
    assert!(may(&acls, "User:a DESCRIBE_CONFIGS TOPIC t"));
    assert!(!may(&acls, "User:a ALTER_CONFIGS TOPIC t"));
}

#[test]
fn allow_all_grants_every_operation() {
    let all = ["TOPIC t LITERAL User:a * ALL ALLOW"];
    for op in Operation::VALUES {
        assert!(may(&all, &format!("User:a {op} TOPIC t")), "{op}");
    }
}

#[test]
fn allow_everyone_applies_only_to_resources_without_acls() {
    let read = |topic: &str| format!("User:a READ TOPIC {topic}");
    assert!(ask(&[], true, &read("t")));
    assert!(!ask(&[], false, &read("t")));
    for (acl, topic) in [
        // Someone else's ACL, or another operation's, or another host's.
        ("TOPIC t LITERAL User:b * READ ALLOW", "t"),
        ("TOPIC t LITERAL User:a * WRITE ALLOW", "t"),
        ("TOPIC t LITERAL User:a * WRITE DENY", "t"),
        ("TOPIC t LITERAL User:a 10.9.9.9 READ ALLOW", "t"),
        ("TOPIC t PREFIXED User:b * READ ALLOW", "t1"),
        ("TOPIC * LITERAL User:b * READ ALLOW", "t1"),
    ] {
        assert!(!ask(&[acl], true, &read(topic)), "{acl}");
    }
    for (acl, topic) in [
        ("TOPIC t LITERAL User:b * READ ALLOW", "u"),
        ("TOPIC t1 PREFIXED User:b * READ DENY", "t"),
        ("GROUP t LITERAL User:b * READ DENY", "t"),
    ] {
        assert!(ask(&[acl], true, &read(topic)), "{acl} is not on {topic}");
    }
}

#[test]
fn resource_types_do_not_interfere() {
    let acls = [
        "GROUP x LITERAL User:a * READ ALLOW",
        "TOPIC x LITERAL User:a * READ DENY",
        "TRANSACTIONAL_ID * LITERAL User:a * ALL DENY",
    ];
    assert!(may(&acls, "User:a READ GROUP x"));
    assert!(!may(&acls, "User:a READ TOPIC x"));
    assert!(!may(&acls, "User:a READ TRANSACTIONAL_ID x"));
    assert!(!may(&acls, "User:a READ CLUSTER kafka-cluster"));
    assert!(ask(&acls, true, "User:a READ CLUSTER kafka-cluster"));
}

/// Checks `acl; acl; ... => yes|no`: whether [`may_write_any_topic`]
/// lets `User:a` at 10.0.0.1 write to some topic.
fn check_write_any(case: &str, allow_everyone: bool) {
    let (specs, want) = case.split_once("=> ").unwrap();
    let specs: Vec<&str> = specs
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let config = config(allow_everyone);
    let got = may_write_any_topic(&acls(&specs), &config, "User:a", "10.0.0.1");
    assert_eq!(if got { "yes" } else { "no" }, want, "{case}");
}

#[test]
fn may_write_any_topic_follows_authorize_by_resource_type() {
    assert!(may_write_any_topic(&[], &config(false), "User:admin", "h"));
    for case in [
        "=> no",
        "TOPIC t LITERAL User:a * WRITE ALLOW => yes",
        "TOPIC t PREFIXED User:* 10.0.0.1 ALL ALLOW => yes",
        "TOPIC t LITERAL User:a * READ ALLOW => no",
        "TOPIC t LITERAL User:b * WRITE ALLOW => no",
        "TOPIC t LITERAL User:a 10.0.0.2 WRITE ALLOW => no",
        "GROUP t LITERAL User:a * WRITE ALLOW => no",
        // A DENY on every topic refuses, even an ALLOW on every topic.
        "TOPIC * LITERAL User:a * WRITE ALLOW; TOPIC * LITERAL User:* * WRITE DENY => no",
        "TOPIC t LITERAL User:a * WRITE ALLOW; TOPIC * LITERAL User:a * ALL DENY => no",
        // A narrower DENY removes what it covers ...
        "TOPIC f.b LITERAL User:a * WRITE ALLOW; TOPIC f PREFIXED User:a * ALL DENY => no",
        "TOPIC f LITERAL User:a * WRITE ALLOW; TOPIC f LITERAL User:a * WRITE DENY => no",
        "TOPIC f. PREFIXED User:a * WRITE ALLOW; TOPIC f PREFIXED User:* * WRITE DENY => no",
        // ... and no more: f.y stays writable, or another ALLOW survives.
        "TOPIC f PREFIXED User:a * WRITE ALLOW; TOPIC f.x PREFIXED User:a * WRITE DENY => yes",
        "TOPIC f PREFIXED User:a * WRITE ALLOW; TOPIC f LITERAL User:a * WRITE DENY => yes",
        "TOPIC t LITERAL User:a * WRITE ALLOW; TOPIC t LITERAL User:a * READ DENY => yes",
        "TOPIC f LITERAL User:a * WRITE ALLOW; TOPIC f LITERAL User:a * WRITE DENY; \
         TOPIC b LITERAL User:a * WRITE ALLOW => yes",
    ] {
        check_write_any(case, false);
    }
}

#[test]
fn may_write_any_topic_with_allow_everyone() {
    check_write_any("=> yes", true);
    // Topic `b` has no ACL, so anyone may write it.
    check_write_any("TOPIC f PREFIXED User:a * WRITE DENY => yes", true);
    check_write_any("TOPIC * LITERAL User:b * WRITE ALLOW => no", true);
}

#[test]
fn binding_and_error_serde_round_trip() {
    let binding = b("TRANSACTIONAL_ID tx- PREFIXED User:alice 10.0.0.1 IDEMPOTENT_WRITE DENY");
    let json = serde_json::to_string(&binding).unwrap();
    assert_eq!(serde_json::from_str::<AclBinding>(&json).unwrap(), binding);
    let error = AclError::InvalidCode {
        field: "operation".into(),
        name: "ANY".into(),
    };
    let json = serde_json::to_string(&error).unwrap();
    assert_eq!(serde_json::from_str::<AclError>(&json).unwrap(), error);
}
