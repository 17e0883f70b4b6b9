//! Replica placement for reassignments, as pure functions of the cluster's
//! replica assignment: how a Topic's replication factor changes, where
//! the replicas of leaving brokers go when a KafkaCluster scales in, and
//! which replicas move onto new brokers after it scales out.
//!
//! Placement is deliberately simple and predictable: a partition keeps the
//! replicas it has, in order, wherever it can; new replicas go to the
//! least-loaded eligible broker (fewest replicas of any partition, lowest
//! id on a tie), and the load is updated as the plan goes, so the
//! partitions of one plan spread out instead of piling onto one broker.

use std::collections::BTreeMap;

use rivulet_wire::client::{OngoingReassignment, ReassignTarget};

use super::kafka::{PartitionReplicas, ReplicaAssignment};

/// Replicas per eligible broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loads(BTreeMap<i32, usize>);

impl Loads {
    /// The load of each of `eligible` brokers in `assignment`.
    pub fn of(assignment: &ReplicaAssignment, eligible: impl IntoIterator<Item = i32>) -> Loads {
        let mut loads: BTreeMap<i32, usize> = eligible.into_iter().map(|id| (id, 0)).collect();
        for replica in assignment.partitions.values().flat_map(|p| &p.replicas) {
            if let Some(load) = loads.get_mut(replica) {
                *load += 1;
            }
        }
        Loads(loads)
    }

    /// The least-loaded eligible broker not in `taken`. On a tie, the
    /// first id after `after`, wrapping around: partitions that each have
    /// one replica on consecutive brokers then gain consecutive ones
    /// (`[0]`, `[1]`, `[2]` become `[0, 1]`, `[1, 2]`, `[2, 0]`).
    fn least_loaded(&self, taken: &[i32], after: Option<i32>) -> Option<i32> {
        let after = after.unwrap_or(i32::MIN);
        self.0
            .iter()
            .filter(|(id, _)| !taken.contains(id))
            .min_by_key(|(id, load)| (**load, **id <= after, **id))
            .map(|(id, _)| *id)
    }

    fn add(&mut self, id: i32) {
        if let Some(load) = self.0.get_mut(&id) {
            *load += 1;
        }
    }

    fn remove(&mut self, id: i32) {
        if let Some(load) = self.0.get_mut(&id) {
            *load = load.saturating_sub(1);
        }
    }
}

/// `replicas` with `count` replicas: grown by appending the least-loaded
/// eligible brokers, or shrunk by dropping replicas from the end, the
/// current leader last. `None` when too few brokers are eligible to grow.
/// Updates `loads` with the change.
pub fn resize(current: &PartitionReplicas, count: usize, loads: &mut Loads) -> Option<Vec<i32>> {
    let mut replicas = current.replicas.clone();
    while replicas.len() < count {
        let id = loads.least_loaded(&replicas, replicas.last().copied())?;
        replicas.push(id);
    }
    while replicas.len() > count {
        // The last replica that is not the leader; the leader itself only
        // when nothing else is left to drop.
        let at = replicas
            .iter()
            .rposition(|id| *id != current.leader)
            .unwrap_or(replicas.len() - 1);
        replicas.remove(at);
    }
    for id in replicas.iter().filter(|id| !current.replicas.contains(id)) {
        loads.add(*id);
    }
    for id in current.replicas.iter().filter(|id| !replicas.contains(id)) {
        loads.remove(*id);
    }
    Some(replicas)
}

/// Targets that give each partition of `topic` (by index) `count`
/// replicas; partitions that already have them are left alone. Partitions
/// that cannot grow (too few eligible brokers) are listed apart.
pub fn replication_targets(
    topic: &str,
    partitions: &BTreeMap<i32, PartitionReplicas>,
    count: usize,
    loads: &mut Loads,
) -> (Vec<ReassignTarget>, Vec<i32>) {
    let mut targets = Vec::new();
    let mut short = Vec::new();
    for (index, current) in partitions {
        if current.replicas.len() == count {
            continue;
        }
        match resize(current, count, loads) {
            Some(replicas) => targets.push((topic.to_string(), *index, Some(replicas))),
            None => short.push(*index),
        }
    }
    (targets, short)
}

/// The replica set a partition ends up with: the target of its
/// reassignment in progress, else what it has.
fn final_replicas<'a>(
    key: &(String, i32),
    current: &'a PartitionReplicas,
    ongoing: &'a BTreeMap<(String, i32), Vec<i32>>,
) -> &'a [i32] {
    ongoing.get(key).map_or(&current.replicas, Vec::as_slice)
}

/// The next step of draining brokers `keep..` before a scale-in to `keep`
/// brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drain {
    /// Some partitions need more replicas than `keep` brokers can hold:
    /// the scale-in would lose data. The topics, with their largest
    /// replication factor.
    Refused(BTreeMap<String, usize>),
    /// Replicas remain on leaving brokers, or reassignments are running.
    Draining {
        /// Reassignments to start now (partitions not already moving).
        moves: Vec<ReassignTarget>,
        /// Partitions with a replica on a leaving broker.
        remaining: usize,
        /// Reassignments in progress (of any partition).
        in_progress: usize,
        /// Partitions that cannot move yet: too few of the remaining
        /// brokers are registered.
        blocked: usize,
    },
    /// No replica on a leaving broker and nothing moving: shrink.
    Drained,
}

/// Plans moving every replica off brokers `keep..`: each leaving broker in
/// a replica list is replaced, in place, by the least-loaded remaining
/// registered broker not already in it. Partitions already being
/// reassigned are left to finish (a later plan moves them if their target
/// still names a leaving broker).
pub fn drain(assignment: &ReplicaAssignment, ongoing: &[OngoingReassignment], keep: i32) -> Drain {
    let moving: BTreeMap<(String, i32), Vec<i32>> = ongoing
        .iter()
        .map(|o| ((o.topic.clone(), o.partition), o.target()))
        .collect();
    let keep_count = usize::try_from(keep).unwrap_or(0);
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for (key, current) in &assignment.partitions {
        let factor = final_replicas(key, current, &moving).len();
        if factor > keep_count {
            let entry = refused.entry(key.0.clone()).or_default();
            *entry = (*entry).max(factor);
        }
    }
    if !refused.is_empty() {
        return Drain::Refused(refused);
    }
    let leaving = |id: &i32| *id >= keep;
    let remaining = assignment
        .partitions
        .values()
        .filter(|p| p.replicas.iter().any(leaving))
        .count();
    if remaining == 0 && ongoing.is_empty() {
        return Drain::Drained;
    }
    let mut loads = Loads::of(
        assignment,
        assignment.brokers.iter().copied().filter(|id| !leaving(id)),
    );
    let mut moves = Vec::new();
    let mut blocked = 0;
    for (key, current) in &assignment.partitions {
        if moving.contains_key(key) || !current.replicas.iter().any(leaving) {
            continue;
        }
        // On a copy of the loads: a partition that cannot be placed
        // entirely changes nothing.
        let mut trial = loads.clone();
        let mut replicas = current.replicas.clone();
        let mut placed = true;
        for at in 0..replicas.len() {
            if !leaving(&replicas[at]) {
                continue;
            }
            let after = replicas.iter().rev().find(|id| !leaving(id)).copied();
            match trial.least_loaded(&replicas, after) {
                Some(id) => {
                    trial.add(id);
                    replicas[at] = id;
                }
                None => placed = false,
            }
        }
        if placed {
            loads = trial;
            moves.push((key.0.clone(), key.1, Some(replicas)));
        } else {
            blocked += 1;
        }
    }
    Drain::Draining {
        moves,
        remaining,
        in_progress: ongoing.len(),
        blocked,
    }
}

/// Most partitions one spread plan moves at once; the rest follow when
/// these are done, so a big cluster is not flooded with copies.
pub const SPREAD_BATCH: usize = 64;

/// The next step of spreading replicas over brokers `0..brokers` after a
/// scale-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spread {
    /// Reassignments are running (of any partition): wait for them.
    Waiting(usize),
    /// Not every broker `0..brokers` is registered yet.
    Blocked(Vec<i32>),
    /// Reassignments that even out the load.
    Moves(Vec<ReassignTarget>),
    /// No broker has more than one replica above another, or nothing
    /// more can be moved.
    Balanced,
}

/// Plans moving replicas from the most- to the least-loaded of brokers
/// `0..brokers` until no broker holds more than one replica more than any
/// other. Each move replaces one replica in place, so a partition keeps
/// its replication factor and the order of the rest; a new broker becomes
/// a partition's preferred leader (first replica) only while the most
/// loaded broker leads more partitions than its share, so leadership
/// spreads with the data. One plan changes at most [`SPREAD_BATCH`]
/// partitions (several replicas of one partition may move in it).
pub fn spread(
    assignment: &ReplicaAssignment,
    ongoing: &[OngoingReassignment],
    brokers: i32,
) -> Spread {
    if !ongoing.is_empty() {
        return Spread::Waiting(ongoing.len());
    }
    let missing: Vec<i32> = (0..brokers)
        .filter(|id| !assignment.brokers.contains(id))
        .collect();
    if !missing.is_empty() {
        return Spread::Blocked(missing);
    }
    let mut replicas: BTreeMap<i32, usize> = (0..brokers).map(|id| (id, 0)).collect();
    let mut leads: BTreeMap<i32, usize> = replicas.clone();
    let mut lists: BTreeMap<(String, i32), Vec<i32>> = BTreeMap::new();
    for (key, partition) in &assignment.partitions {
        // A partition with a replica outside 0..brokers is a drain's business.
        if partition
            .replicas
            .iter()
            .any(|id| !replicas.contains_key(id))
        {
            continue;
        }
        for id in &partition.replicas {
            *replicas.get_mut(id).expect("checked") += 1;
        }
        if let Some(first) = partition.replicas.first() {
            *leads.get_mut(first).expect("checked") += 1;
        }
        lists.insert(key.clone(), partition.replicas.clone());
    }
    let total_leads: usize = leads.values().sum();
    let lead_share = total_leads.div_ceil(usize::try_from(brokers.max(1)).unwrap_or(1));
    let mut moved: BTreeMap<(String, i32), Vec<i32>> = BTreeMap::new();
    loop {
        // Most loaded (highest id on a tie: new brokers have the highest
        // ids, old ones give), least loaded (lowest id on a tie).
        let (&from, &most) = replicas
            .iter()
            .max_by_key(|(id, load)| (**load, **id))
            .expect("brokers >= 1");
        let (&to, &least) = replicas
            .iter()
            .min_by_key(|(id, load)| (**load, **id))
            .expect("brokers >= 1");
        if most <= least + 1 {
            break;
        }
        let give_lead = leads[&from] > lead_share && leads[&to] < lead_share;
        let candidates = || {
            lists.iter().filter(|(key, list)| {
                (moved.len() < SPREAD_BATCH || moved.contains_key(*key))
                    && list.contains(&from)
                    && !list.contains(&to)
            })
        };
        // Prefer a partition whose role for `from` matches whether its
        // leadership should move too; take any other when none does.
        let chosen = candidates()
            .find(|(_, list)| (list.first() == Some(&from)) == give_lead)
            .or_else(|| candidates().next())
            .map(|(key, _)| key.clone());
        let Some(key) = chosen else { break };
        let list = lists.get_mut(&key).expect("chosen from lists");
        let at = list
            .iter()
            .position(|id| *id == from)
            .expect("contains from");
        list[at] = to;
        *replicas.get_mut(&from).expect("known") -= 1;
        *replicas.get_mut(&to).expect("known") += 1;
        if at == 0 {
            *leads.get_mut(&from).expect("known") -= 1;
            *leads.get_mut(&to).expect("known") += 1;
        }
        moved.insert(key, list.clone());
    }
    if moved.is_empty() {
        return Spread::Balanced;
    }
    Spread::Moves(
        moved
            .into_iter()
            .map(|((topic, partition), list)| (topic, partition, Some(list)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(leader: i32, replicas: &[i32]) -> PartitionReplicas {
        PartitionReplicas {
            leader,
            replicas: replicas.to_vec(),
        }
    }

    /// A cluster of `brokers` with `(topic, partition, leader, replicas)`.
    fn cluster(brokers: &[i32], partitions: &[(&str, i32, i32, &[i32])]) -> ReplicaAssignment {
        ReplicaAssignment {
            brokers: brokers.to_vec(),
            partitions: partitions
                .iter()
                .map(|(t, p, leader, replicas)| ((t.to_string(), *p), partition(*leader, replicas)))
                .collect(),
        }
    }

    fn moving(
        topic: &str,
        p: i32,
        replicas: &[i32],
        adding: &[i32],
        removing: &[i32],
    ) -> OngoingReassignment {
        OngoingReassignment {
            topic: topic.into(),
            partition: p,
            replicas: replicas.to_vec(),
            adding: adding.to_vec(),
            removing: removing.to_vec(),
        }
    }

    #[test]
    fn loads_count_replicas_of_eligible_brokers_only() {
        let c = cluster(&[0, 1, 2, 3], &[("a", 0, 0, &[0, 1]), ("a", 1, 1, &[1, 3])]);
        let loads = Loads::of(&c, [0, 1, 2]);
        assert_eq!(loads.0, BTreeMap::from([(0, 1), (1, 2), (2, 0)]));
        assert_eq!(loads.least_loaded(&[], None), Some(2));
        assert_eq!(loads.least_loaded(&[2], None), Some(0));
        assert_eq!(loads.least_loaded(&[0, 1, 2], None), None);
        // A tie goes to the first id after `after`, wrapping around.
        let even = Loads::of(&cluster(&[0, 1, 2], &[]), [0, 1, 2]);
        assert_eq!(even.least_loaded(&[], Some(0)), Some(1));
        assert_eq!(even.least_loaded(&[1], Some(1)), Some(2));
        assert_eq!(even.least_loaded(&[2], Some(2)), Some(0));
    }

    #[test]
    fn growing_keeps_replicas_in_order_and_appends_the_least_loaded() {
        // Broker 2 is idle, 3 carries one replica, 0 and 1 carry two.
        let c = cluster(
            &[0, 1, 2, 3],
            &[
                ("a", 0, 1, &[1, 0]),
                ("b", 0, 0, &[0, 1]),
                ("c", 0, 3, &[3]),
            ],
        );
        let mut loads = Loads::of(&c, [0, 1, 2, 3]);
        let grown = resize(&partition(1, &[1, 0]), 4, &mut loads).unwrap();
        assert_eq!(grown, [1, 0, 2, 3]);
        assert_eq!(loads.0[&2], 1, "the plan counts what it placed");
        assert_eq!(
            resize(&partition(1, &[1, 0]), 5, &mut loads),
            None,
            "four brokers"
        );
    }

    #[test]
    fn shrinking_drops_from_the_end_but_keeps_the_leader() {
        let c = cluster(&[0, 1, 2], &[]);
        let mut loads = Loads::of(&c, [0, 1, 2]);
        assert_eq!(
            resize(&partition(2, &[2, 0, 1]), 2, &mut loads).unwrap(),
            [2, 0]
        );
        // The leader is last: the one before it goes.
        assert_eq!(
            resize(&partition(1, &[2, 0, 1]), 2, &mut loads).unwrap(),
            [2, 1]
        );
        assert_eq!(
            resize(&partition(1, &[2, 0, 1]), 1, &mut loads).unwrap(),
            [1]
        );
        // No leader (offline): plainly from the end.
        assert_eq!(
            resize(&partition(-1, &[2, 0, 1]), 1, &mut loads).unwrap(),
            [2]
        );
    }

    #[test]
    fn replication_targets_skip_partitions_already_right() {
        let c = cluster(&[0, 1, 2], &[]);
        let mut loads = Loads::of(&c, [0, 1, 2]);
        let partitions = BTreeMap::from([
            (0, partition(0, &[0])),
            (1, partition(1, &[1, 2])),
            (2, partition(2, &[2])),
        ]);
        let (targets, short) = replication_targets("t", &partitions, 2, &mut loads);
        assert_eq!(
            targets,
            [
                ("t".to_string(), 0, Some(vec![0, 1])),
                ("t".to_string(), 2, Some(vec![2, 0]))
            ],
            "partition 0 took broker 1 (tied, the next id); partition 2 then the least loaded"
        );
        assert!(short.is_empty());
        let (targets, short) = replication_targets("t", &partitions, 4, &mut loads);
        assert!(targets.is_empty());
        assert_eq!(short, [0, 1, 2]);
    }

    #[test]
    fn drain_replaces_leaving_brokers_in_place_with_the_least_loaded() {
        // Scale 4 -> 3: broker 3 leaves.
        let c = cluster(
            &[0, 1, 2, 3],
            &[
                ("a", 0, 3, &[3, 0]),
                ("a", 1, 0, &[0, 1]),
                ("b", 0, 1, &[1, 3]),
                ("b", 1, 2, &[2, 0]),
            ],
        );
        let Drain::Draining {
            moves,
            remaining,
            in_progress,
            blocked,
        } = drain(&c, &[], 3)
        else {
            panic!("should drain")
        };
        // Loads of brokers 0, 1, 2 are 3, 2, 1: a-0 takes broker 2 (now
        // at 2); b-0 cannot take 1 (a member) and 2 beats 0 (3).
        assert_eq!(
            moves,
            [
                ("a".to_string(), 0, Some(vec![2, 0])),
                ("b".to_string(), 0, Some(vec![1, 2])),
            ]
        );
        assert_eq!((remaining, in_progress, blocked), (2, 0, 0));
    }

    #[test]
    fn drain_refuses_what_would_lose_replicas() {
        let c = cluster(
            &[0, 1, 2],
            &[
                ("orders", 0, 0, &[0, 1, 2]),
                ("orders", 1, 1, &[1, 2]),
                ("audit", 0, 0, &[0, 1]),
                ("logs", 0, 0, &[0]),
            ],
        );
        assert_eq!(
            drain(&c, &[], 2),
            Drain::Refused(BTreeMap::from([("orders".into(), 3)]))
        );
        // A reassignment in progress counts with its target: logs is
        // growing to 3.
        let growing = [moving("logs", 0, &[0, 1, 2], &[1, 2], &[])];
        let Drain::Refused(topics) = drain(&c, &growing, 2) else {
            panic!()
        };
        assert_eq!(topics.keys().collect::<Vec<_>>(), ["logs", "orders"]);
        // ... and one shrinking to 2 does not refuse.
        let shrinking = [moving("orders", 0, &[0, 1, 2], &[], &[2])];
        assert!(matches!(drain(&c, &shrinking, 2), Drain::Draining { .. }));
    }

    #[test]
    fn drain_waits_for_reassignments_and_is_done_when_nothing_is_left() {
        let c = cluster(&[0, 1, 2], &[("a", 0, 0, &[0, 1, 2]), ("a", 1, 1, &[1, 2])]);
        // a-0 is already moving off broker 2; a-1 still needs a move.
        let ongoing = [moving("a", 0, &[0, 1, 2], &[], &[2])];
        let Drain::Draining {
            moves,
            remaining,
            in_progress,
            ..
        } = drain(&c, &ongoing, 2)
        else {
            panic!()
        };
        assert_eq!(moves, [("a".to_string(), 1, Some(vec![1, 0]))]);
        assert_eq!((remaining, in_progress), (2, 1));

        let done = cluster(&[0, 1, 2], &[("a", 0, 0, &[0, 1]), ("a", 1, 1, &[1, 0])]);
        assert_eq!(drain(&done, &[], 2), Drain::Drained);
        // Nothing on broker 2, but something is still moving: wait.
        let elsewhere = [moving("a", 1, &[1, 0], &[0], &[])];
        assert!(matches!(
            drain(&done, &elsewhere, 2),
            Drain::Draining { moves, .. } if moves.is_empty()
        ));
    }

    #[test]
    fn drain_with_too_few_registered_brokers_is_blocked_not_refused() {
        // Broker 1 of the remaining two is down (not registered).
        let c = cluster(&[0, 2], &[("a", 0, 0, &[0, 2])]);
        assert_eq!(
            drain(&c, &[], 2),
            Drain::Draining {
                moves: vec![],
                remaining: 1,
                in_progress: 0,
                blocked: 1
            }
        );
    }

    /// `assignment` after `moves` completed.
    fn after(assignment: &ReplicaAssignment, moves: &[ReassignTarget]) -> ReplicaAssignment {
        let mut next = assignment.clone();
        for (topic, p, target) in moves {
            let list = target.clone().unwrap();
            let partition = next.partitions.get_mut(&(topic.clone(), *p)).unwrap();
            partition.leader = list[0];
            partition.replicas = list;
        }
        next
    }

    fn counts(assignment: &ReplicaAssignment, brokers: i32) -> (Vec<usize>, Vec<usize>) {
        let mut replicas = vec![0; brokers as usize];
        let mut leads = vec![0; brokers as usize];
        for p in assignment.partitions.values() {
            for id in &p.replicas {
                replicas[*id as usize] += 1;
            }
            leads[p.replicas[0] as usize] += 1;
        }
        (replicas, leads)
    }

    #[test]
    fn spread_evens_out_replicas_and_leadership_onto_new_brokers() {
        // Six partitions of RF 3 on brokers 0-2, then brokers 3-5 join.
        let partitions: Vec<(&str, i32, i32, Vec<i32>)> = (0..6)
            .map(|p| ("a", p, p % 3, (0..3).map(|i| (p + i) % 3).collect()))
            .collect();
        let borrowed: Vec<(&str, i32, i32, &[i32])> = partitions
            .iter()
            .map(|(t, p, l, r)| (*t, *p, *l, r.as_slice()))
            .collect();
        let c = cluster(&[0, 1, 2, 3, 4, 5], &borrowed);
        let Spread::Moves(moves) = spread(&c, &[], 6) else {
            panic!("a plan")
        };
        let next = after(&c, &moves);
        let (replicas, leads) = counts(&next, 6);
        assert_eq!(replicas, [3, 3, 3, 3, 3, 3]);
        assert_eq!(leads, [1, 1, 1, 1, 1, 1], "leadership spreads too");
        for p in next.partitions.values() {
            let mut ids = p.replicas.clone();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), 3, "each partition keeps 3 distinct replicas");
        }
        // One target per partition, replicas replaced in place.
        assert!(moves.len() <= 6);
        assert_eq!(spread(&next, &[], 6), Spread::Balanced);
    }

    #[test]
    fn spread_waits_for_moves_and_for_every_broker() {
        let c = cluster(
            &[0, 1, 2],
            &[("a", 0, 0, &[0]), ("a", 1, 0, &[0]), ("a", 2, 0, &[0])],
        );
        let ongoing = [moving("b", 0, &[0, 1], &[1], &[0])];
        assert_eq!(spread(&c, &ongoing, 3), Spread::Waiting(1));
        assert_eq!(spread(&c, &[], 4), Spread::Blocked(vec![3]));
        // Within one replica of each other: nothing to do.
        let even = cluster(
            &[0, 1],
            &[("a", 0, 0, &[0]), ("a", 1, 0, &[0]), ("a", 2, 1, &[1])],
        );
        assert_eq!(spread(&even, &[], 2), Spread::Balanced);
    }

    #[test]
    fn spread_moves_a_batch_at_a_time_and_converges() {
        let partitions: Vec<(String, i32)> = (0..200).map(|p| ("t".to_string(), p)).collect();
        let mut c = ReplicaAssignment {
            brokers: vec![0, 1],
            partitions: partitions
                .iter()
                .map(|key| (key.clone(), partition(0, &[0])))
                .collect(),
        };
        let mut rounds = 0;
        while let Spread::Moves(moves) = spread(&c, &[], 2) {
            assert!(moves.len() <= SPREAD_BATCH);
            c = after(&c, &moves);
            rounds += 1;
            assert!(rounds < 10, "converges");
        }
        assert_eq!(counts(&c, 2).0, [100, 100]);
        assert_eq!(rounds, 2);
    }
}
