"""Consumer groups through confluent-kafka's AdminClient.

usage: group_admin.py BOOTSTRAP TOPIC PARTITIONS

Two members of a group commit exact offsets (with metadata); the
AdminClient then reads them back (list_consumer_group_offsets), finds the
group (list_consumer_groups) and describes it (describe_consumer_groups:
state, members, assignments, assignor); delete_consumer_groups fails with
NON_EMPTY_GROUP while members are active and succeeds once they are gone,
after which the offsets and the group are gone too.
"""

import sys

from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from common import Deadline, check, check_eq, emit, fail
from group_rebalance import Member, wait_balanced

TIMEOUT = 15


def log(msg):
    print(f"[group_admin] {msg}", file=sys.stderr, flush=True)


def committed_via_admin(admin, group, topic, partitions):
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    res = admin.list_consumer_group_offsets([req])[group].result(timeout=TIMEOUT)
    check_eq(res.group_id, group, "group of list_consumer_group_offsets")
    out = {}
    for tp in res.topic_partitions:
        check(tp.error is None, f"offset of partition {tp.partition}: {tp.error}")
        out[tp.partition] = (tp.offset, tp.metadata)
    return out


def listed(admin):
    res = admin.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    check_eq(res.errors, [], "list_consumer_groups errors")
    return {g.group_id: g for g in res.valid}


def describe(admin, group):
    return admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT)


def main():
    if len(sys.argv) != 4:
        fail(__doc__)
    bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
    group = f"{topic}-admin"
    admin = AdminClient({"bootstrap.servers": bootstrap})

    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(10 * partitions):
        p.produce(topic, f"v-{i}".encode(), partition=i % partitions)
    check_eq(p.flush(30), 0, "undelivered records")

    members = [Member(n, bootstrap, group, topic, "range") for n in ("m1", "m2")]
    wait_balanced(members, partitions, "two members", None)
    # Each member commits its own partitions at offsets 1 + 3p, with metadata.
    for m in members:
        mine = sorted(m.owned())
        m.c.commit(offsets=[TopicPartition(topic, q, 1 + 3 * q, metadata=f"meta-{q}") for q in mine],
                   asynchronous=False)
    want = {q: (1 + 3 * q, f"meta-{q}") for q in range(partitions)}
    check_eq(committed_via_admin(admin, group, topic, partitions), want,
             "list_consumer_group_offsets (offset, metadata) per partition")
    # Without naming partitions: every committed offset of the group.
    res = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)])[group].result(timeout=TIMEOUT)
    check_eq({tp.partition: tp.offset for tp in res.topic_partitions if tp.topic == topic},
             {q: o for q, (o, _) in want.items()}, "list_consumer_group_offsets, all partitions")

    groups = listed(admin)
    check(group in groups, f"list_consumer_groups does not show {group}: {sorted(groups)}")
    check_eq(groups[group].state, ConsumerGroupState.STABLE, "listed state")
    check_eq(groups[group].is_simple_consumer_group, False, "is_simple_consumer_group")

    d = describe(admin, group)
    check_eq(d.state, ConsumerGroupState.STABLE, "described state")
    check_eq(d.partition_assignor, "range", "described assignor")
    check_eq(d.is_simple_consumer_group, False, "described is_simple_consumer_group")
    check_eq(d.coordinator.id, 0, "coordinator")
    check_eq(sorted(mm.client_id for mm in d.members), ["m1", "m2"], "described members")
    assigned = {}
    for mm in d.members:
        ps = {tp.partition for tp in mm.assignment.topic_partitions if tp.topic == topic}
        member = next(m for m in members if m.name == mm.client_id)
        check_eq(ps, member.owned(), f"described assignment of {mm.client_id}")
        for q in ps:
            check(q not in assigned, f"partition {q} described for two members")
            assigned[q] = mm.client_id
    check_eq(sorted(assigned), list(range(partitions)), "described assignments cover the topic")

    fut = admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group]
    try:
        fut.result(timeout=TIMEOUT)
        fail("delete_consumer_groups of a group with active members succeeded")
    except KafkaException as e:
        check_eq(e.args[0].code(), KafkaError.NON_EMPTY_GROUP, f"delete error ({e.args[0]})")
    check_eq(committed_via_admin(admin, group, topic, partitions), want,
             "offsets after the refused delete")

    for m in members:
        m.close()
    dl = Deadline(15)
    while describe(admin, group).state != ConsumerGroupState.EMPTY:
        check(not dl.expired(), f"group not EMPTY after its members closed: {describe(admin, group)}")
    check_eq(listed(admin)[group].state, ConsumerGroupState.EMPTY, "listed state after close")

    admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result(timeout=TIMEOUT)
    log("deleted the empty group")
    check(group not in listed(admin), "list_consumer_groups still shows the deleted group")
    gone = committed_via_admin(admin, group, topic, partitions)
    check_eq({q: o for q, (o, _) in gone.items()}, {q: -1001 for q in range(partitions)},
             "offsets of the deleted group (OFFSET_INVALID)")
    try:
        d = describe(admin, group)
        check(d.state in (ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN) and not d.members,
              f"described deleted group: state {d.state}, members {d.members}")
    except KafkaException as e:
        check_eq(e.args[0].code(), KafkaError.GROUP_ID_NOT_FOUND, f"describe deleted group ({e})")
    emit({"group": group, "committed": {q: o for q, (o, _) in want.items()}})


if __name__ == "__main__":
    main()
