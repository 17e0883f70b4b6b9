"""Committed offsets of a confluent-kafka consumer group, across processes.

usage:
  group_offsets.py hold BOOTSTRAP TOPIC PARTITIONS GROUP STOP_FILE
      join GROUP, wait until it owns all PARTITIONS partitions, commit
      offset 2+p on partition p synchronously (metadata "m<p>"),
      print {"committed": {p: offset}} and keep the member alive until
      STOP_FILE exists (or 90 s pass); then close cleanly (LeaveGroup).
  group_offsets.py resume BOOTSTRAP TOPIC PARTITIONS GROUP EXPECTED_JSON
      join GROUP with auto.offset.reset=error; the first record received on
      each partition must be at the committed offset EXPECTED_JSON names.
  group_offsets.py two-groups BOOTSTRAP TOPIC PARTITIONS N
      produce N unique values, then two consumers in two different groups
      each receive every one of them exactly once.
"""

import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from common import Deadline, check, check_eq, emit, fail


def log(msg):
    print(f"[group_offsets] {msg}", file=sys.stderr, flush=True)


def consumer(bootstrap, group, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    }
    conf.update(extra)
    return Consumer(conf)


def wait_assigned(c, partitions, seconds=30):
    dl = Deadline(seconds)
    while not dl.expired():
        c.poll(0.1)
        if len(c.assignment()) == partitions:
            return
    fail(f"not assigned {partitions} partitions within {seconds} s: {c.assignment()}")


def hold(bootstrap, topic, partitions, group, stop_file):
    c = consumer(bootstrap, group)
    c.subscribe([topic])
    wait_assigned(c, partitions)
    offsets = [TopicPartition(topic, p, 2 + p, metadata=f"m{p}") for p in range(partitions)]
    result = c.commit(offsets=offsets, asynchronous=False)
    for tp in result:
        check(tp.error is None, f"commit of partition {tp.partition}: {tp.error}")
    committed = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    got = {tp.partition: tp.offset for tp in committed}
    check_eq(got, {p: 2 + p for p in range(partitions)}, "committed() right after commit")
    emit({"committed": got})
    sys.stdout.flush()
    log("committed; holding the membership")
    dl = Deadline(90)
    while not dl.expired() and not os.path.exists(stop_file):
        c.poll(0.1)
    c.close()
    log("closed")


def resume(bootstrap, topic, partitions, group, expected_json):
    expected = {int(k): v for k, v in json.loads(expected_json).items()}
    c = consumer(bootstrap, group, **{"auto.offset.reset": "error"})
    c.subscribe([topic])
    first = {}
    dl = Deadline(40)
    while not dl.expired() and len(first) < len(expected):
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            fail(f"consumer error (no committed offset to resume from?): {m.error()}")
        first.setdefault(m.partition(), m.offset())
    c.close()
    check_eq(first, expected, "first offset received per partition after the restart")
    emit({"first": first})


def two_groups(bootstrap, topic, partitions, n):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, f"v-{i}".encode(), partition=i % partitions)
    check_eq(p.flush(30), 0, "undelivered records")
    expected = {f"v-{i}" for i in range(n)}
    groups = [f"{topic}-ga", f"{topic}-gb"]
    cs = [consumer(bootstrap, g, **{"enable.auto.commit": True}) for g in groups]
    for c in cs:
        c.subscribe([topic])
    seen = [[] for _ in cs]
    dl = Deadline(40)
    while not dl.expired() and any(len(set(s)) < n for s in seen):
        for c, s in zip(cs, seen):
            m = c.poll(0.05)
            if m is None or m.error():
                continue
            s.append(m.value().decode())
    for c in cs:
        c.close()
    for g, s in zip(groups, seen):
        check_eq(set(s), expected, f"values group {g} received")
        check_eq(len(s), n, f"records group {g} received (duplicates?)")
    log(f"each of {groups} received all {n} values once")
    emit({"groups": groups, "n": n})


def main():
    args = sys.argv[1:]
    if len(args) == 6 and args[0] == "hold":
        hold(args[1], args[2], int(args[3]), args[4], args[5])
    elif len(args) == 6 and args[0] == "resume":
        resume(args[1], args[2], int(args[3]), args[4], args[5])
    elif len(args) == 5 and args[0] == "two-groups":
        two_groups(args[1], args[2], int(args[3]), int(args[4]))
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
