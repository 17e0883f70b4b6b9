"""confluent-kafka clients for the cluster failover tests.

usage:
  cluster_failover_clients.py stream BOOTSTRAP TOPIC FIRST_SEQ ACKED_FILE STOP_FILE
      an idempotent producer (acks=all) sends "v<seq>" from seq FIRST_SEQ on,
      keyed k0..k47, at a steady pace until STOP_FILE exists (at most 90 s),
      then flushes. Every
      acknowledgement is written (and flushed) to ACKED_FILE as
      "partition offset value" the moment it arrives. Prints a summary:
      acknowledged and failed deliveries, error texts, fatal error, and the
      leader of each partition over time as the client's own statistics
      reported it (consecutive repeats dropped).
  cluster_failover_clients.py verify BOOTSTRAP TOPIC PARTITIONS ACKED_FILE...
      read every partition from its start to its high watermark: each
      acknowledged record is at its acknowledged offset, no value is stored
      twice, values grow with offsets in each partition, and every stored
      record was acknowledged.
  cluster_failover_clients.py produce BOOTSTRAP TOPIC N
      produce "v0".."v<N-1>" (keys k0..k47, acks=all); all must be acknowledged.
  cluster_failover_clients.py group-consume BOOTSTRAP TOPIC PARTITIONS GROUP COMMITTED EXTRA
      join GROUP and read at least COMMITTED + EXTRA records of each
      partition, committing (synchronously) each partition's position after
      every 20 of its records up to its COMMITTED-th, none after; then
      close. Prints the committed offsets and every record read.
  cluster_failover_clients.py group-live BOOTSTRAP TOPIC PARTITIONS GROUP GO_FILE
      join GROUP (session timeout 30 s), read offsets 0..19 of each partition, commit offset 20 on
      each and print the commit; keep polling (the member stays in the
      group) until GO_FILE exists, then commit offset 40 on each partition,
      retrying failed commits for up to 40 s, print that commit with the
      errors and rebalances seen and every record read, and close.
  cluster_failover_clients.py group-resume BOOTSTRAP TOPIC PARTITIONS GROUP
      join GROUP and read every partition to its end. Prints the first offset
      read on each partition and every record read.
"""

import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from common import Deadline, check, check_eq, emit, fail
from crash import read_acked as read_acked_file
from group_offsets import consumer as group_consumer

KEYS = 48
# Client properties (JSON) added to the stream producer's and the verifying
# consumer's: the security of a secured cluster.
EXTRA_PROPS = json.loads(os.environ.get("KAFKA_CLIENT_PROPS") or "{}")


def log(msg):
    print(f"[cluster_failover] {msg}", file=sys.stderr, flush=True)


def seq_of(value):
    check(value.startswith("v"), f"unexpected value {value!r}")
    return int(value[1:])


def stream(bootstrap, topic, first_seq, acked_file, stop_file):
    leaders = {}
    state = {"ok": 0, "failed": 0, "errors": {}, "fatal": None, "client_errors": {}}

    def on_stats(raw):
        stats = json.loads(raw)
        parts = stats.get("topics", {}).get(topic, {}).get("partitions", {})
        for key, p in parts.items():
            part = int(key)
            if part < 0:
                continue
            seen = leaders.setdefault(part, [])
            if not seen or seen[-1] != p.get("leader"):
                seen.append(p.get("leader"))

    def on_error(err):
        text = str(err)
        state["client_errors"][text] = state["client_errors"].get(text, 0) + 1
        if err.fatal():
            state["fatal"] = text

    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": 40000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "retry.backoff.ms": 100,
        "statistics.interval.ms": 200,
        "stats_cb": on_stats,
        "error_cb": on_error,
        **EXTRA_PROPS,
    })
    out = open(acked_file, "w", encoding="utf-8")

    def on_delivery(err, msg):
        if err is not None:
            state["failed"] += 1
            text = str(err)
            state["errors"][text] = state["errors"].get(text, 0) + 1
            return
        state["ok"] += 1
        out.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")
        out.flush()

    dl = Deadline(90)
    seq = first_seq
    while not dl.expired() and not os.path.exists(stop_file) and state["fatal"] is None:
        try:
            p.produce(topic, f"v{seq}".encode(), key=f"k{seq % KEYS}".encode(),
                      on_delivery=on_delivery)
            seq += 1
        except BufferError:
            pass
        p.poll(0.004)
    log(f"stopping after {seq - first_seq} records; flushing")
    left = p.flush(45)
    p.poll(0.5)
    out.close()
    emit({
        "produced": seq - first_seq,
        "next_seq": seq,
        "acked": state["ok"],
        "failed": state["failed"],
        "undelivered": left,
        "errors": state["errors"],
        "client_errors": state["client_errors"],
        "fatal": state["fatal"],
        "leaders": {str(k): v for k, v in sorted(leaders.items())},
    })


def read_acked(paths):
    return [record for path in paths for record in read_acked_file(path)]


def read_partition(c, topic, part, start=0, seconds=30):
    """Every record of a partition from `start` to its high watermark."""
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
    check(lo <= start, f"partition {part} starts at {lo}, after {start}")
    records = []
    if hi <= start:
        return records, hi
    c.assign([TopicPartition(topic, part, start)])
    dl = Deadline(seconds)
    while not dl.expired():
        m = c.poll(min(1.0, dl.left()))
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                if records and records[-1][0] + 1 >= hi:
                    break
                continue
            fail(f"consumer error on partition {part}: {m.error()}")
        records.append((m.offset(), m.value().decode()))
        if m.offset() + 1 >= hi:
            break
    c.unassign()
    check(records and records[-1][0] + 1 >= hi,
          f"partition {part}: read up to {records[-1][0] if records else None}, "
          f"high watermark {hi}, within {seconds} s")
    return records, hi


def verify(bootstrap, topic, partitions, acked_files):
    acked = read_acked(acked_files)
    check(acked, "no acknowledged records to verify")
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"verify-{topic}-{os.getpid()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": True,
        **EXTRA_PROPS,
    })
    stored = {}
    where = {}
    duplicates = []
    disorder = []
    for part in range(partitions):
        records, hi = read_partition(c, topic, part)
        offsets = [o for o, _ in records]
        check_eq(offsets, list(range(hi)), f"offsets of partition {part}")
        stored[part] = dict(records)
        last = -1
        for off, value in records:
            if value in where:
                duplicates.append((value, where[value], (part, off)))
            where[value] = (part, off)
            seq = seq_of(value)
            if seq <= last:
                disorder.append((part, off, value, last))
            last = max(last, seq)
    c.close()

    check(not duplicates,
          f"{len(duplicates)} values stored more than once, e.g. {duplicates[:5]}")
    check(not disorder,
          f"{len(disorder)} records out of order in their partition "
          f"(partition, offset, value, larger seq before), e.g. {disorder[:5]}")
    missing = [(p, o, v, stored.get(p, {}).get(o)) for p, o, v in acked
               if stored.get(p, {}).get(o) != v]
    check(not missing,
          f"{len(missing)} of {len(acked)} acknowledged records are not at their "
          f"offsets (partition, offset, acked, stored), e.g. {missing[:5]}")
    acked_values = {v for _, _, v in acked}
    unacked = sorted(set(where) - acked_values, key=seq_of)
    check(not unacked,
          f"{len(unacked)} stored records were never acknowledged, e.g. "
          f"{[(v, where[v]) for v in unacked[:5]]}")
    emit({
        "acked": len(acked),
        "stored": {str(p): len(s) for p, s in stored.items()},
    })


def produce(bootstrap, topic, n):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    state = {"ok": 0, "errors": []}

    def on_delivery(err, _msg):
        if err is None:
            state["ok"] += 1
        else:
            state["errors"].append(str(err))

    for seq in range(n):
        p.produce(topic, f"v{seq}".encode(), key=f"k{seq % KEYS}".encode(),
                  on_delivery=on_delivery)
        p.poll(0)
    check_eq(p.flush(30), 0, "records without a delivery report after flush(30)")
    check_eq(state["errors"], [], "delivery errors")
    check_eq(state["ok"], n, "acknowledged records")
    emit({"acked": n})


def group_consume(bootstrap, topic, partitions, group, to_commit, extra):
    c = group_consumer(bootstrap, group)
    c.subscribe([topic])
    read = []
    counts = {}
    committed = {}

    def commit(part, offset):
        result = c.commit(offsets=[TopicPartition(topic, part, offset)], asynchronous=False)
        for tp in result:
            check(tp.error is None, f"commit of partition {tp.partition}: {tp.error}")
        committed[part] = offset

    dl = Deadline(40)
    while len(counts) < partitions or min(counts.values()) < to_commit + extra:
        check(not dl.expired(), f"read only {counts} records per partition within 40 s")
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            fail(f"consumer error: {m.error()}")
        part = m.partition()
        n = counts.get(part, 0) + 1
        counts[part] = n
        read.append((part, m.offset(), m.value().decode()))
        if n <= to_commit and (n % 20 == 0 or n == to_commit):
            commit(part, m.offset() + 1)
    log(f"read {counts} records per partition, committed {committed}")
    c.close()
    emit({"committed": {str(k): v for k, v in sorted(committed.items())}, "read": read})


def group_live(bootstrap, topic, partitions, group, go_file):
    events = {"assigned": 0, "revoked": 0}

    def on_assign(_c, _parts):
        events["assigned"] += 1

    def on_revoke(_c, _parts):
        events["revoked"] += 1

    # A session that outlasts any failover: the member must not need a new one.
    c = group_consumer(bootstrap, group, **{"session.timeout.ms": 30000})
    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    highest = {}
    seen = {}

    def note(m):
        highest[m.partition()] = max(highest.get(m.partition(), -1), m.offset())
        seen[(m.partition(), m.offset())] = m.value().decode()

    def poll_until(offset, seconds):
        dl = Deadline(seconds)
        while len(highest) < partitions or min(highest.values()) < offset:
            check(not dl.expired(), f"highest offsets read {highest} within {seconds} s")
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                fail(f"consumer error: {m.error()}")
            note(m)

    def commit(offset, seconds):
        errors = []
        dl = Deadline(seconds)
        offsets = [TopicPartition(topic, p, offset) for p in range(partitions)]
        while True:
            try:
                result = c.commit(offsets=offsets, asynchronous=False)
                failed = [f"{tp.partition}: {tp.error}" for tp in result if tp.error]
                if not failed:
                    return errors
                errors.extend(failed)
            except Exception as e:  # KafkaException carries the commit's error
                errors.append(str(e))
            check(not dl.expired(), f"commit of offset {offset} failed for {seconds} s: {errors}")
            c.poll(0.5)

    poll_until(19, 40)
    commit(20, 10)
    emit({"phase": "first", "committed": {str(p): 20 for p in range(partitions)}})
    sys.stdout.flush()
    log("committed 20 on each partition; staying in the group")
    dl = Deadline(60)
    while not os.path.exists(go_file):
        check(not dl.expired(), "no go file within 60 s")
        m = c.poll(0.2)
        if m is not None and not m.error():
            note(m)
    started = time.monotonic()
    poll_until(39, 40)
    errors = commit(40, 40)
    took = time.monotonic() - started
    log(f"committed 40 on each partition {took:.1f} s after the go; errors {errors}")
    c.close()
    emit({
        "phase": "second",
        "committed": {str(p): 40 for p in range(partitions)},
        "commit_errors": errors,
        "seconds": round(took, 2),
        "assigned": events["assigned"],
        "revoked": events["revoked"],
        "read": [(p, o, v) for (p, o), v in sorted(seen.items())],
    })


def group_resume(bootstrap, topic, partitions, group):
    c = group_consumer(bootstrap, group, **{"enable.partition.eof": True})
    c.subscribe([topic])
    read = []
    first = {}
    at_end = set()
    dl = Deadline(45)
    started = time.monotonic()
    while len(at_end) < partitions:
        check(not dl.expired(),
              f"only partitions {sorted(at_end)} read to their end within 45 s")
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(m.partition())
                continue
            fail(f"consumer error: {m.error()}")
        first.setdefault(m.partition(), m.offset())
        read.append((m.partition(), m.offset(), m.value().decode()))
    log(f"read {len(read)} records in {time.monotonic() - started:.1f} s")
    c.close()
    emit({"first": {str(k): v for k, v in sorted(first.items())}, "read": read})


def main():
    args = sys.argv[1:]
    if len(args) == 6 and args[0] == "stream":
        stream(args[1], args[2], int(args[3]), args[4], args[5])
    elif len(args) >= 5 and args[0] == "verify":
        verify(args[1], args[2], int(args[3]), args[4:])
    elif len(args) == 4 and args[0] == "produce":
        produce(args[1], args[2], int(args[3]))
    elif len(args) == 7 and args[0] == "group-consume":
        group_consume(args[1], args[2], int(args[3]), args[4], int(args[5]), int(args[6]))
    elif len(args) == 6 and args[0] == "group-live":
        group_live(args[1], args[2], int(args[3]), args[4], args[5])
    elif len(args) == 5 and args[0] == "group-resume":
        group_resume(args[1], args[2], int(args[3]), args[4])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
