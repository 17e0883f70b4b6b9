//! State machine tests: the broker's view of join/sync/heartbeat flows,
//! eager and cooperative rebalances, static membership, timers and the
//! error code of every refusal.

use kafka_protocol::ResponseError;

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn cfg(delay: i64) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: delay,
        ..GroupConfig::default()
    }
}

fn req(member: &str, fresh: &str, meta: &'static [u8]) -> JoinRequest {
    JoinRequest {
        member_id: member.to_string(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(meta))],
        require_known_member_id: true,
        supports_skip_assignment: true,
        fresh_id: fresh.to_string(),
    }
}

fn static_req(instance: &str, fresh: &str, meta: &'static [u8]) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.into()),
        ..req("", fresh, meta)
    }
}

/// The join answers among effects, by member.
fn joins(fx: &[Effect]) -> BTreeMap<String, JoinResult> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Join(id, r) => Some((id.clone(), r.clone())),
            _ => None,
        })
        .collect()
}

fn syncs(fx: &[Effect]) -> BTreeMap<String, SyncResult> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Sync(id, r) => Some((id.clone(), r.clone())),
            _ => None,
        })
        .collect()
}

/// Two-step dynamic join; returns the member id (parked).
fn join_dynamic(
    g: &mut Group,
    c: &GroupConfig,
    fresh: &str,
    now: i64,
    fx: &mut Vec<Effect>,
) -> String {
    let Reply::Now(r) = g.join(req("", fresh, b"m"), c, now, fx) else {
        panic!("first join must be answered")
    };
    assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
    assert_eq!(r.member_id, format!("c-{fresh}"));
    let Reply::Parked(id) = g.join(req(&r.member_id, "unused", b"m"), c, now, fx) else {
        panic!("second join parks")
    };
    id
}

/// A Stable group of generation 1 with members a and b (a leads).
fn stable_pair() -> (Group, GroupConfig, String, String) {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let mut fx = Vec::new();
    let a = join_dynamic(&mut g, &c, "a", 0, &mut fx);
    // With no initial delay the lone member completes the join at once.
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(g.generation, 1);
    let b = join_dynamic(&mut g, &c, "b", 1, &mut fx);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    // a learns of the rebalance by heartbeat and rejoins.
    assert_eq!(
        g.heartbeat(&a, None, 1, 2),
        Some(ResponseError::RebalanceInProgress)
    );
    fx.clear();
    assert_eq!(
        g.join(req(&a, "x", b"m"), &c, 3, &mut fx),
        Reply::Parked(a.clone())
    );
    let answers = joins(&fx);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(g.generation, 2);
    assert_eq!(answers[&a].members.len(), 2, "the leader gets the members");
    assert!(answers[&b].members.is_empty());
    assert_eq!(answers[&b].leader, a);
    fx.clear();
    assert_eq!(
        g.sync(&b, None, 2, None, None, vec![], 4, &mut fx),
        Reply::Parked(b.clone())
    );
    assert!(fx.is_empty(), "followers wait for the leader");
    let assignment = vec![
        (a.clone(), Bytes::from_static(b"A")),
        (b.clone(), Bytes::from_static(b"B")),
    ];
    assert_eq!(
        g.sync(
            &a,
            None,
            2,
            Some("consumer"),
            Some("range"),
            assignment,
            5,
            &mut fx
        ),
        Reply::Parked(a.clone())
    );
    let answers = syncs(&fx);
    assert_eq!(answers[&a].assignment, Bytes::from_static(b"A"));
    assert_eq!(answers[&b].assignment, Bytes::from_static(b"B"));
    assert!(fx.contains(&Effect::StoreGroup) && fx.contains(&Effect::RebalanceCompleted));
    assert_eq!(g.state, GroupState::Stable);
    (g, c, a, b)
}

#[test]
fn join_sync_heartbeat_flow() {
    let (mut g, _, a, b) = stable_pair();
    assert_eq!(g.heartbeat(&a, None, 2, 10), None);
    assert_eq!(g.heartbeat(&b, None, 2, 10), None);
    assert_eq!(g.protocol.as_deref(), Some("range"));
    // A follower syncing again in Stable gets its assignment back.
    let mut fx = Vec::new();
    let Reply::Now(r) = g.sync(&b, None, 2, None, None, vec![], 11, &mut fx) else {
        panic!()
    };
    assert_eq!(r.assignment, Bytes::from_static(b"B"));
}

#[test]
fn error_codes_of_heartbeat_and_sync() {
    let (mut g, _, a, _) = stable_pair();
    let mut fx = Vec::new();
    assert_eq!(
        g.heartbeat("nobody", None, 2, 10),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.heartbeat(&a, None, 1, 10),
        Some(ResponseError::IllegalGeneration)
    );
    let sync =
        |g: &mut Group, fx: &mut Vec<Effect>, member: &str, generation, protocol: Option<&str>| {
            match g.sync(member, None, generation, None, protocol, vec![], 10, fx) {
                Reply::Now(r) => r.error,
                Reply::Parked(_) => panic!("parked"),
            }
        };
    assert_eq!(
        sync(&mut g, &mut fx, "nobody", 2, None),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        sync(&mut g, &mut fx, &a, 3, None),
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        sync(&mut g, &mut fx, &a, 2, Some("roundrobin")),
        Some(ResponseError::InconsistentGroupProtocol)
    );
    // Unknown member id on JoinGroup.
    let Reply::Now(r) = g.join(req("ghost", "x", b"m"), &cfg(0), 10, &mut fx) else {
        panic!()
    };
    assert_eq!(r.error, Some(ResponseError::UnknownMemberId));
    // Protocols the group does not support.
    let mut other = req("", "x", b"m");
    other.protocols = vec![("roundrobin".into(), Bytes::new())];
    let Reply::Now(r) = g.join(other.clone(), &cfg(0), 10, &mut fx) else {
        panic!()
    };
    assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
    other.protocol_type = "connect".into();
    other.protocols = vec![("range".into(), Bytes::new())];
    let Reply::Now(r) = g.join(other, &cfg(0), 10, &mut fx) else {
        panic!()
    };
    assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
    // An empty first join is inconsistent too.
    let mut fresh = Group::new("h", 0);
    let mut empty = req("", "x", b"m");
    empty.protocols.clear();
    let Reply::Now(r) = fresh.join(empty, &cfg(0), 0, &mut fx) else {
        panic!()
    };
    assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
}

#[test]
fn sync_during_rebalance_and_commit_rules() {
    let (mut g, c, a, b) = stable_pair();
    let mut fx = Vec::new();
    assert_eq!(g.check_commit(&a, None, 2, 10), Ok(()));
    assert_eq!(
        g.check_commit(&a, None, 1, 10),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.check_commit("nobody", None, 2, 10),
        Err(ResponseError::UnknownMemberId)
    );
    // The leader rejoining starts a rebalance (eager: everyone rejoins).
    assert_eq!(
        g.join(req(&a, "x", b"m"), &c, 10, &mut fx),
        Reply::Parked(a.clone())
    );
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let Reply::Now(r) = g.sync(&b, None, 2, None, None, vec![], 11, &mut fx) else {
        panic!()
    };
    assert_eq!(r.error, Some(ResponseError::RebalanceInProgress));
    // Commits of the current generation still work while preparing (onPartitionsRevoked).
    assert_eq!(g.check_commit(&b, None, 2, 11), Ok(()));
    fx.clear();
    assert_eq!(
        g.join(req(&b, "x", b"m"), &c, 12, &mut fx),
        Reply::Parked(b.clone())
    );
    assert_eq!(joins(&fx).len(), 2);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(
        g.check_commit(&b, None, 3, 12),
        Err(ResponseError::RebalanceInProgress)
    );
    // A simple (generation -1) commit is refused while the group has members.
    assert_eq!(
        g.check_commit("", None, -1, 12),
        Err(ResponseError::RebalanceInProgress)
    );
    let mut empty = Group::new("simple", 0);
    assert_eq!(empty.check_commit("", None, -1, 0), Ok(()));
}

#[test]
fn cooperative_rebalance_is_two_rounds_of_the_same_protocol() {
    // The broker is assignor-agnostic: a cooperative rebalance is two
    // ordinary rebalances, the second started by the members rejoining
    // after revoking; member metadata (owned partitions) changes each time.
    let c = cfg(0);
    let mut g = Group::new("coop", 0);
    let mut fx = Vec::new();
    let coop = |member: &str, meta: &'static [u8]| {
        let mut r = req(
            member,
            if member.is_empty() {
                meta.escape_ascii().to_string()
            } else {
                "x".into()
            }
            .as_str(),
            meta,
        );
        r.protocols = vec![("cooperative-sticky".into(), Bytes::from_static(meta))];
        r
    };
    let Reply::Now(r) = g.join(coop("", b"none"), &c, 0, &mut fx) else {
        panic!()
    };
    let a = r.member_id;
    g.join(coop(&a, b"none"), &c, 0, &mut fx);
    g.sync(
        &a,
        None,
        1,
        None,
        None,
        vec![(a.clone(), Bytes::from_static(b"p0p1"))],
        1,
        &mut fx,
    );
    assert_eq!(g.state, GroupState::Stable);
    let Reply::Now(r) = g.join(coop("", b"b"), &c, 2, &mut fx) else {
        panic!()
    };
    let b = r.member_id;
    g.join(coop(&b, b"none"), &c, 2, &mut fx);
    assert_eq!(
        g.heartbeat(&a, None, 1, 3),
        Some(ResponseError::RebalanceInProgress)
    );
    fx.clear();
    g.join(coop(&a, b"owns p0p1"), &c, 3, &mut fx);
    assert_eq!(joins(&fx)[&a].members.len(), 2);
    let leader_view: Vec<Bytes> = joins(&fx)[&a]
        .members
        .iter()
        .map(|m| m.metadata.clone())
        .collect();
    assert!(leader_view.contains(&Bytes::from_static(b"owns p0p1")));
    // Round 1: a keeps p0 (p1 revoked), b gets nothing yet.
    g.sync(&b, None, 2, None, None, vec![], 4, &mut fx);
    g.sync(
        &a,
        None,
        2,
        None,
        None,
        vec![(a.clone(), Bytes::from_static(b"p0"))],
        4,
        &mut fx,
    );
    assert_eq!(g.state, GroupState::Stable);
    // Round 2: a rejoins after revoking.
    fx.clear();
    g.join(coop(&a, b"owns p0"), &c, 5, &mut fx);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&b, None, 2, 5),
        Some(ResponseError::RebalanceInProgress)
    );
    g.join(coop(&b, b"none"), &c, 5, &mut fx);
    assert_eq!(g.generation, 3);
    fx.clear();
    g.sync(&b, None, 3, None, None, vec![], 6, &mut fx);
    let assignment = vec![
        (a.clone(), Bytes::from_static(b"p0")),
        (b.clone(), Bytes::from_static(b"p1")),
    ];
    g.sync(&a, None, 3, None, None, assignment, 6, &mut fx);
    assert_eq!(syncs(&fx)[&b].assignment, Bytes::from_static(b"p1"));
    assert_eq!(g.protocol.as_deref(), Some("cooperative-sticky"));
}

#[test]
fn protocol_selection_follows_votes_of_common_protocols() {
    let c = cfg(1000);
    let mut g = Group::new("g", 0);
    let mut fx = Vec::new();
    let mut r1 = static_req("i1", "1", b"");
    r1.protocols = vec![
        ("roundrobin".into(), Bytes::new()),
        ("range".into(), Bytes::new()),
    ];
    let mut r2 = static_req("i2", "2", b"");
    r2.protocols = vec![
        ("range".into(), Bytes::new()),
        ("sticky".into(), Bytes::new()),
    ];
    let mut r3 = static_req("i3", "3", b"");
    r3.protocols = vec![
        ("range".into(), Bytes::new()),
        ("roundrobin".into(), Bytes::new()),
    ];
    g.join(r1, &c, 0, &mut fx);
    g.join(r2, &c, 0, &mut fx);
    g.join(r3, &c, 0, &mut fx);
    assert_eq!(
        g.state,
        GroupState::PreparingRebalance,
        "the initial delay holds the join"
    );
    g.tick(&c, 1000, &mut fx);
    // New members kept arriving: one more delay round (up to the rebalance timeout).
    assert_eq!(g.state, GroupState::PreparingRebalance);
    g.tick(&c, 2000, &mut fx);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(g.protocol.as_deref(), Some("range"));
    assert_eq!(joins(&fx).len(), 3);
}

#[test]
fn static_member_rejoin_replaces_without_rebalance() {
    let c = cfg(0);
    let mut g = Group::new("s", 0);
    let mut fx = Vec::new();
    assert_eq!(
        g.join(static_req("i1", "old", b"m"), &c, 0, &mut fx),
        Reply::Parked("i1-old".into())
    );
    g.sync(
        "i1-old",
        Some("i1"),
        1,
        None,
        None,
        vec![("i1-old".into(), Bytes::from_static(b"A"))],
        1,
        &mut fx,
    );
    assert_eq!(g.state, GroupState::Stable);
    fx.clear();
    // The process restarts and joins with the same instance id and no member id.
    let Reply::Now(r) = g.join(static_req("i1", "new", b"m"), &c, 2, &mut fx) else {
        panic!("answered at once")
    };
    assert_eq!(r.error, None);
    assert_eq!(r.member_id, "i1-new");
    assert_eq!(r.generation, 1, "no rebalance");
    assert!(
        r.skip_assignment,
        "a v9 static leader is told to skip the assignment"
    );
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(fx, vec![Effect::StoreGroup]);
    let Reply::Now(s) = g.sync("i1-new", Some("i1"), 1, None, None, vec![], 3, &mut fx) else {
        panic!()
    };
    assert_eq!(
        s.assignment,
        Bytes::from_static(b"A"),
        "the assignment carries over"
    );
    // The old member id is fenced everywhere.
    assert_eq!(
        g.heartbeat("i1-old", Some("i1"), 1, 3),
        Some(ResponseError::FencedInstanceId)
    );
    let Reply::Now(r) = g.join(
        JoinRequest {
            member_id: "i1-old".into(),
            ..static_req("i1", "x", b"m")
        },
        &c,
        3,
        &mut fx,
    ) else {
        panic!()
    };
    assert_eq!(r.error, Some(ResponseError::FencedInstanceId));
    assert_eq!(
        g.check_commit("i1-old", Some("i1"), 1, 3),
        Err(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        g.leave(&[("i1-old".into(), Some("i1".into()))], &c, 3, &mut fx),
        Ok(vec![Some(ResponseError::FencedInstanceId)])
    );
    // An older client (before v9) is never told it leads without members.
    let mut old_client = static_req("i1", "newer", b"m");
    old_client.supports_skip_assignment = false;
    let Reply::Now(r) = g.join(old_client, &c, 4, &mut fx) else {
        panic!()
    };
    assert_eq!((r.leader.as_str(), r.members.len()), ("i1-new", 0));
    // Administrative removal by instance id.
    assert_eq!(
        g.leave(&[(String::new(), Some("i1".into()))], &c, 5, &mut fx),
        Ok(vec![None])
    );
    assert!(g.members.is_empty());
}

#[test]
fn static_member_with_new_protocol_triggers_rebalance() {
    let c = cfg(0);
    let mut g = Group::new("s", 0);
    let mut fx = Vec::new();
    g.join(static_req("i1", "old", b"m"), &c, 0, &mut fx);
    g.sync("i1-old", Some("i1"), 1, None, None, vec![], 1, &mut fx);
    // Protocols the group cannot use are refused before anything is replaced.
    let mut incompatible = static_req("i1", "bad", b"m");
    incompatible.protocols = vec![("roundrobin".into(), Bytes::new())];
    let Reply::Now(r) = g.join(incompatible, &c, 2, &mut fx) else {
        panic!()
    };
    assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
    let mut changed = static_req("i1", "new", b"m");
    changed.protocols = vec![("range".into(), Bytes::new())];
    changed
        .protocols
        .insert(0, ("roundrobin".into(), Bytes::new()));
    assert_eq!(
        g.join(changed.clone(), &c, 2, &mut fx),
        Reply::Parked("i1-new".into())
    );
    assert_eq!(g.generation, 2);
    assert_eq!(g.protocol.as_deref(), Some("roundrobin"));
}

#[test]
fn session_expiry_removes_member_and_rebalances() {
    let (mut g, c, a, b) = stable_pair();
    let mut fx = Vec::new();
    // a keeps heartbeating, b goes silent.
    assert_eq!(g.heartbeat(&a, None, 2, 9_000), None);
    assert_eq!(g.next_deadline(), Some(5 + i64::from(SESSION)));
    g.tick(&c, 5 + i64::from(SESSION), &mut fx);
    assert!(!g.members.contains_key(&b));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    fx.clear();
    g.join(req(&a, "x", b"m"), &c, 10_010, &mut fx);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(g.generation, 3);
    assert_eq!(joins(&fx)[&a].members.len(), 1);
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let (mut g, c, a, b) = stable_pair();
    let mut fx = Vec::new();
    g.join(req(&a, "x", b"m"), &c, 100, &mut fx);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    // b heartbeats (keeping its session) but never rejoins.
    for t in (1000..REBALANCE as i64).step_by(3000) {
        assert_eq!(
            g.heartbeat(&b, None, 2, t),
            Some(ResponseError::RebalanceInProgress)
        );
        g.tick(&c, t, &mut fx);
    }
    assert_eq!(g.state, GroupState::PreparingRebalance);
    fx.clear();
    g.tick(&c, 100 + i64::from(REBALANCE), &mut fx);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert!(!g.members.contains_key(&b));
    assert_eq!(joins(&fx)[&a].members.len(), 1);
    assert_eq!(
        g.heartbeat(&b, None, 2, 100 + i64::from(REBALANCE)),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn members_that_never_sync_are_dropped() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let mut fx = Vec::new();
    let a = join_dynamic(&mut g, &c, "a", 0, &mut fx);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    // Heartbeats are fine in CompletingRebalance, but the sync never comes.
    assert_eq!(g.heartbeat(&a, None, 1, 5_000), None);
    g.tick(&c, i64::from(REBALANCE), &mut fx);
    assert!(g.members.is_empty());
    assert_eq!(g.state, GroupState::Empty);
}

#[test]
fn pending_member_expires_and_new_member_join_timeout() {
    let c = cfg(0);
    let mut g = Group::new("g", 0);
    let mut fx = Vec::new();
    let Reply::Now(r) = g.join(req("", "p", b"m"), &c, 0, &mut fx) else {
        panic!()
    };
    assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
    assert_eq!(g.next_deadline(), Some(i64::from(SESSION)));
    g.tick(&c, i64::from(SESSION), &mut fx);
    let Reply::Now(r) = g.join(
        req(&r.member_id, "x", b"m"),
        &c,
        i64::from(SESSION) + 1,
        &mut fx,
    ) else {
        panic!()
    };
    assert_eq!(
        r.error,
        Some(ResponseError::UnknownMemberId),
        "the pending id expired"
    );
}

#[test]
fn leave_group_paths() {
    let (mut g, c, a, b) = stable_pair();
    let mut fx = Vec::new();
    assert_eq!(
        g.leave(
            &[(b.clone(), None), ("ghost".into(), None)],
            &c,
            10,
            &mut fx
        ),
        Ok(vec![None, Some(ResponseError::UnknownMemberId)])
    );
    assert_eq!(g.state, GroupState::PreparingRebalance);
    fx.clear();
    g.join(req(&a, "x", b"m"), &c, 11, &mut fx);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    g.leave(&[(a.clone(), None)], &c, 12, &mut fx).unwrap();
    assert_eq!(g.state, GroupState::Empty);
    assert!(fx.contains(&Effect::StoreGroup));
    // A pending member can leave too.
    let Reply::Now(r) = g.join(req("", "p", b"m"), &c, 13, &mut fx) else {
        panic!()
    };
    assert_eq!(
        g.leave(&[(r.member_id, None)], &c, 13, &mut fx),
        Ok(vec![None])
    );
}

#[test]
fn parked_joins_are_answered_when_a_member_is_removed() {
    let c = cfg(5000);
    let mut g = Group::new("g", 0);
    let mut fx = Vec::new();
    let a = join_dynamic(&mut g, &c, "a", 0, &mut fx);
    g.leave(&[(a.clone(), None)], &c, 1, &mut fx).unwrap();
    assert_eq!(joins(&fx)[&a].error, Some(ResponseError::UnknownMemberId));
}

#[test]
fn offsets_expire_by_kafka_rules_and_groups_go_away() {
    let mut g = Group::new("g", 0);
    let o = |ts| CommittedOffset {
        offset: 1,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: ts,
        expire_timestamp: None,
    };
    g.offsets.insert(("t".into(), 0), o(0));
    g.offsets.insert(("t".into(), 1), o(500));
    // Offsets-only group: retention counts from each commit.
    assert_eq!(g.expire_offsets(1000, 1000), vec![("t".to_string(), 0)]);
    assert!(!g.try_remove(1000));
    assert_eq!(g.expire_offsets(1500, 1000).len(), 1);
    assert!(g.try_remove(1500));
    assert_eq!(g.state, GroupState::Dead);
    // A consumer group that became empty at 2000: retention counts from then.
    let (mut g, c, a, b) = stable_pair();
    g.offsets.insert(("t".into(), 0), o(0));
    let mut fx = Vec::new();
    assert!(
        g.expire_offsets(10_000, 1000).is_empty(),
        "subscribed topic (unknown subscription) is kept"
    );
    g.leave(&[(a, None), (b, None)], &c, 2000, &mut fx).unwrap();
    assert_eq!(g.state, GroupState::Empty);
    assert!(g.expire_offsets(2999, 1000).is_empty());
    assert_eq!(g.expire_offsets(3000, 1000).len(), 1);
}

#[test]
fn delete_requires_an_empty_group() {
    let (mut g, c, a, b) = stable_pair();
    let mut fx = Vec::new();
    assert_eq!(g.delete(10), Err(ResponseError::NonEmptyGroup));
    g.leave(&[(a, None), (b, None)], &c, 11, &mut fx).unwrap();
    assert_eq!(g.delete(12), Ok(()));
    assert_eq!(g.delete(13), Err(ResponseError::GroupIdNotFound));
    let Reply::Now(r) = g.join(req("", "x", b"m"), &c, 14, &mut fx) else {
        panic!()
    };
    assert_eq!(r.error, Some(ResponseError::CoordinatorNotAvailable));
}

#[test]
fn stored_group_reloads_stable_and_keeps_serving() {
    let (g, c, a, b) = stable_pair();
    let reloaded = Group::from_stored("g", g.to_stored(), 100);
    assert_eq!(reloaded.state, GroupState::Stable);
    assert_eq!(reloaded.generation, 2);
    assert_eq!(reloaded.leader.as_deref(), Some(a.as_str()));
    let mut r = reloaded;
    assert_eq!(r.heartbeat(&b, None, 2, 101), None);
    let mut fx = Vec::new();
    let Reply::Now(s) = r.sync(&b, None, 2, None, None, vec![], 102, &mut fx) else {
        panic!()
    };
    assert_eq!(s.assignment, Bytes::from_static(b"B"));
    let Reply::Now(j) = r.join(req(&b, "x", b"m"), &c, 103, &mut fx) else {
        panic!()
    };
    assert_eq!(
        (j.error, j.generation),
        (None, 2),
        "an unchanged follower rejoin needs no rebalance"
    );
}

#[test]
fn state_names_parse_case_insensitively() {
    assert_eq!(GroupState::parse("stable"), Some(GroupState::Stable));
    assert_eq!(
        GroupState::parse("PreparingRebalance"),
        Some(GroupState::PreparingRebalance)
    );
    assert_eq!(GroupState::parse("nope"), None);
}
