//! Tests of the pure parts of `rivulet group`: `--topic` specs, datetimes,
//! reset plans and the describe table.

use rivulet_wire::client::MemberDescription;

use super::*;

#[test]
fn topic_specs_parse() {
    assert_eq!(parse_topic_spec("orders").unwrap(), ("orders".into(), None));
    assert_eq!(
        parse_topic_spec("orders:2,0, 1,2").unwrap(),
        ("orders".into(), Some(vec![0, 1, 2]))
    );
    for bad in [":1", "t:", "t:x", "t:-1", "t:1,,2"] {
        assert!(parse_topic_spec(bad).is_err(), "{bad}");
    }
}

#[test]
fn datetimes_parse_as_utc_or_with_a_zone() {
    assert_eq!(parse_datetime("1970-01-01T00:00:00").unwrap(), 0);
    assert_eq!(parse_datetime("1970-01-01T00:00:01.5Z").unwrap(), 1500);
    assert_eq!(
        parse_datetime("2024-02-29T12:34:56.789").unwrap(),
        1_709_210_096_789
    );
    assert_eq!(
        parse_datetime("2000-03-01T00:00:00.123456789Z").unwrap(),
        951_868_800_123
    );
    assert_eq!(
        parse_datetime("2024-01-01T01:30:00+01:30").unwrap(),
        1_704_067_200_000
    );
    assert_eq!(
        parse_datetime("2023-12-31T22:00:00-02:00").unwrap(),
        1_704_067_200_000
    );
    assert_eq!(parse_datetime("1969-12-31T23:59:59Z").unwrap(), -1000);
    for bad in [
        "2023-02-29T00:00:00",
        "2024-13-01T00:00:00",
        "2024-01-01 00:00:00",
        "2024-01-01T24:00:00",
        "2024-01-01T00:00:00.",
        "2024-01-01T00:00:00Zx",
        "2024-01-01T00:00:00+1:00",
        "2024-1-01T00:00:00",
        "",
        "2024-01-01T00:00",
    ] {
        assert!(parse_datetime(bad).is_err(), "{bad}");
    }
}

#[test]
fn civil_days_match_known_dates() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 1, 1), 10_957);
    assert_eq!(days_from_civil(1600, 3, 1), -135_080);
    assert_eq!(days_from_civil(1969, 12, 31), -1);
}

fn offsets(
    earliest: i64,
    latest: i64,
    committed: Option<i64>,
    at_time: Option<i64>,
) -> PartitionOffsets {
    PartitionOffsets {
        earliest,
        latest,
        committed,
        at_time,
    }
}

#[test]
fn plans_clamp_to_the_log() {
    let p = offsets(10, 100, Some(50), Some(70));
    assert_eq!(plan_offset(ResetTo::Earliest, &p), Ok(10));
    assert_eq!(plan_offset(ResetTo::Latest, &p), Ok(100));
    assert_eq!(plan_offset(ResetTo::Offset(5), &p), Ok(10));
    assert_eq!(plan_offset(ResetTo::Offset(500), &p), Ok(100));
    assert_eq!(plan_offset(ResetTo::Offset(42), &p), Ok(42));
    assert_eq!(plan_offset(ResetTo::ShiftBy(-45), &p), Ok(10));
    assert_eq!(plan_offset(ResetTo::ShiftBy(20), &p), Ok(70));
    assert_eq!(plan_offset(ResetTo::ShiftBy(i64::MAX), &p), Ok(100));
    assert_eq!(plan_offset(ResetTo::Timestamp(1), &p), Ok(70));
    assert_eq!(
        plan_offset(ResetTo::Timestamp(1), &offsets(10, 100, None, Some(-1))),
        Ok(100)
    );
    assert!(plan_offset(ResetTo::ShiftBy(1), &offsets(0, 5, None, None)).is_err());

    let all = BTreeMap::from([
        (("a".to_string(), 0), offsets(0, 5, Some(3), None)),
        (("b".to_string(), 1), offsets(0, 9, None, None)),
    ]);
    assert_eq!(
        plan(ResetTo::Latest, &all).unwrap(),
        BTreeMap::from([(("a".to_string(), 0), 5), (("b".to_string(), 1), 9)])
    );
    let err = plan(ResetTo::ShiftBy(-1), &all).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot reset b-1: no committed offset to shift"
    );
}

#[test]
fn describe_rows_join_members_commits_and_log_ends() {
    let member = |id: &str, assignment: Vec<(String, Vec<i32>)>| MemberDescription {
        member_id: id.into(),
        group_instance_id: None,
        client_id: "cli".into(),
        client_host: "/10.0.0.1".into(),
        assignment,
    };
    let desc = GroupDescription {
        group_id: "g".into(),
        error_code: 0,
        state: "Stable".into(),
        protocol_type: "consumer".into(),
        protocol: "range".into(),
        members: vec![
            member("m1", vec![("t".into(), vec![1, 0])]),
            member("m2", vec![]),
        ],
    };
    let committed = BTreeMap::from([
        (
            ("t".to_string(), 0),
            CommittedOffset {
                offset: 3,
                leader_epoch: -1,
                metadata: None,
            },
        ),
        (
            ("old".to_string(), 0),
            CommittedOffset {
                offset: 7,
                leader_epoch: -1,
                metadata: None,
            },
        ),
    ]);
    let log_end = BTreeMap::from([(("t".to_string(), 0), 10), (("t".to_string(), 1), 4)]);
    let rows = describe_rows("g", &desc, &committed, &log_end);
    let text = render_table(Some(&DESCRIBE_HEADER), &rows);
    let expected = "\
GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST      CLIENT-ID
g     old   0         7              -              -   -           -         -
g     t     0         3              10             7   m1          /10.0.0.1 cli
g     t     1         -              4              -   m1          /10.0.0.1 cli
g     -     -         -              -              -   m2          /10.0.0.1 cli
";
    assert_eq!(text, expected);
}

#[test]
fn tables_align_without_trailing_spaces() {
    let rows = vec![
        vec!["long-group".to_string(), "Stable".to_string()],
        vec!["g".into(), "Empty".into()],
    ];
    assert_eq!(
        render_table(None, &rows),
        "long-group Stable\ng          Empty\n"
    );
    assert_eq!(render_table(None, &[]), "");
    let ragged = vec![
        vec!["a".to_string(), "".to_string()],
        vec!["bbb".into(), "c".into()],
    ];
    assert_eq!(render_table(None, &ragged), "a\nbbb c\n");
}
