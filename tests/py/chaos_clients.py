"""Workload and checker of the fault campaign, with confluent-kafka.

Every line a client writes is a JSON object, flushed as it happens, with
`t` = time.monotonic() (CLOCK_MONOTONIC, the clock the Rust harness stamps
its faults with), so the harness can line acknowledgements up with cuts.

usage:
  chaos_clients.py create BOOTSTRAP TOPIC PARTITIONS
      TOPIC with replication factor 3 and min.insync.replicas=2; waits for
      leaders and full ISRs.
  chaos_clients.py produce BOOTSTRAP TOPIC PARTITIONS WRITER ACKED STOP
      an idempotent producer (acks=all, enable.idempotence, as the Java
      client defaults to) sends "WRITER:N" for N = 0, 1, ... at a steady
      pace, N to partition N % PARTITIONS, until STOP exists. Each
      acknowledgement goes to ACKED as {"p", "o", "w", "n", "t"}.
  chaos_clients.py group BOOTSTRAP TOPIC GROUP MEMBER SEEN COMMITS STOP
      a member of consumer group GROUP reading TOPIC and committing
      synchronously every few records. Every record read goes to SEEN as
      {"p", "o", "v"}; once a second the member asks the coordinator for the
      group's committed offsets and writes {"c": {partition: offset}, "t"} to
      COMMITS.
      (An acknowledgement without an offset, which librdkafka gives a
      message whose own response was lost, is checked by value.)
  chaos_clients.py txn-produce BOOTSTRAP TOPIC PARTITIONS WRITER LOG STOP
      a transactional producer (transactional.id chaos-WRITER) writes
      transactions of 1-20 records "WRITER:N" over the partitions of TOPIC
      and aborts every fourth on purpose. Each outcome goes to LOG as
      {"state": committed|aborted|unknown, "values": [...]}: unknown when
      the client could not learn it (a fatal error mid-commit).
  chaos_clients.py txn-verify BOOTSTRAP TOPIC PARTITIONS LOG
      reads TOPIC with isolation.level=read_committed and checks: every
      committed value is there exactly once, no aborted value is, each
      unknown transaction is all there or all absent, and nothing else is.
  chaos_clients.py verify BOOTSTRAP TOPIC PARTITIONS ACKED,... SEEN,... COMMITS,...
      reads every partition from the start and checks: every acknowledged
      record is at its acknowledged offset (nothing acknowledged lost);
      no record is stored twice; per partition each writer's N increase
      with the offset (order); offsets have no gaps; every record a group
      member read is still at its offset (no lost read); the committed
      offsets each member saw never moved backwards and never pass the log
      end.
"""

import json
import os
import sys
import time
from collections import Counter, defaultdict

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

import cluster_random_clients
from common import Deadline, check, emit, fail

# No client runs longer than this, even if its stop file never comes.
RUN_LIMIT_S = 900
# Values per burst and bursts per second: 250 records a second per writer.
BURST = 5
BURSTS_PER_S = 50
MESSAGE_TIMEOUT_MS = 60000
FLUSH_S = 75
COMMIT_EVERY = 25
EXAMPLES = 8


def line(out, obj):
    obj["t"] = round(time.monotonic(), 3)
    out.write(json.dumps(obj) + "\n")
    out.flush()


def produce(bootstrap, topic, partitions, writer, acked_file, stop_file):
    fatal = []
    client_errors = Counter()

    def on_error(err):
        if err.fatal():
            fatal.append(str(err))
        else:
            client_errors[err.name()] += 1

    # librdkafka's default acks is already all; idempotence must be asked
    # for (the Java client's default). The rest makes failures show quickly.
    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": MESSAGE_TIMEOUT_MS,
        "request.timeout.ms": 10000,
        "retry.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
        "topic.metadata.refresh.interval.ms": 5000,
        # Epoch bumps, drains and sequence errors go to stderr, kept with a
        # failing run: they explain any duplicate.
        "debug": "eos",
        "error_cb": on_error,
    })
    counts = Counter()
    failures = Counter()
    out = open(acked_file, "w", encoding="utf-8")

    def on_delivery(err, msg):
        n = int(msg.value().split(b":")[1])
        if err is not None:
            counts["failed"] += 1
            failures[err.name()] += 1
            return
        counts["acked"] += 1
        line(out, {"p": msg.partition(), "o": msg.offset(), "w": writer, "n": n})

    started = time.monotonic()
    dl = Deadline(RUN_LIMIT_S)
    n = 0
    while not fatal and not dl.expired() and not os.path.exists(stop_file):
        due = started + n / (BURST * BURSTS_PER_S)
        while time.monotonic() < due:
            p.poll(max(0.0, due - time.monotonic()))
        sent = 0
        while sent < BURST and not fatal:
            try:
                p.produce(topic, f"{writer}:{n}".encode(), partition=n % partitions,
                          on_delivery=on_delivery)
                n += 1
                sent += 1
            except BufferError:
                p.poll(0.05)
            except KafkaException as e:
                fatal.append(f"produce: {e}")
        p.poll(0)
    left = p.flush(FLUSH_S)
    out.close()
    emit({
        "writer": writer,
        "produced": n,
        "acked": counts["acked"],
        "failed": counts["failed"],
        "failures": dict(failures),
        "undelivered": left,
        "client_errors": dict(client_errors),
        "fatal": fatal,
    })


def group(bootstrap, topic, group_id, member, seen_file, commits_file, stop_file):
    errors = Counter()
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "client.id": f"chaos-{member}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "fetch.wait.max.ms": 100,
        "error_cb": lambda err: errors.update([err.name()]),
    })
    c.subscribe([topic])
    seen = open(seen_file, "w", encoding="utf-8")
    commits = open(commits_file, "w", encoding="utf-8")
    counts = Counter()
    uncommitted = 0
    next_look = 0.0
    dl = Deadline(RUN_LIMIT_S)
    while not dl.expired() and not os.path.exists(stop_file):
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            counts["read"] += 1
            seen.write(json.dumps({"p": m.partition(), "o": m.offset(),
                                   "v": m.value().decode()}) + "\n")
            uncommitted += 1
        elif m is not None:
            errors[m.error().name()] += 1
        if uncommitted >= COMMIT_EVERY:
            seen.flush()
            try:
                c.commit(asynchronous=False)
                counts["commits"] += 1
            except KafkaException as e:
                # Refused during a rebalance or a coordinator move: the
                # records are read again by whoever owns the partition.
                errors["commit:" + e.args[0].name()] += 1
            uncommitted = 0
        if time.monotonic() >= next_look:
            next_look = time.monotonic() + 1.0
            try:
                parts = [TopicPartition(topic, p) for p in range(partition_count(c, topic))]
                got = c.committed(parts, timeout=5)
                line(commits, {"c": {str(tp.partition): tp.offset for tp in got
                                     if tp.offset >= 0}})
            except KafkaException as e:
                errors["committed:" + e.args[0].name()] += 1
    seen.close()
    commits.close()
    try:
        c.close()
    except KafkaException:
        pass
    emit({"member": member, "read": counts["read"], "commits": counts["commits"],
          "errors": dict(errors)})


def partition_count(consumer, topic):
    md = consumer.list_topics(topic, timeout=5).topics.get(topic)
    if md is None or md.error is not None:
        raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    return len(md.partitions)


def read_jsonl(paths):
    rows = []
    for path in paths:
        if not path:
            continue
        with open(path, encoding="utf-8") as f:
            for text in f:
                # A client killed mid-write leaves a torn last line.
                try:
                    rows.append(json.loads(text))
                except ValueError:
                    pass
    return rows


def read_all(bootstrap, topic, partitions, need):
    """partition -> {offset: value} up to each high watermark (waiting up
    to 60 s for the high watermark to cover what was acknowledged)."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"chaos-verify-{topic}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })
    stored = {}
    highs = {}
    settle = Deadline(60)
    for part in range(partitions):
        marks = None
        while True:
            try:
                marks = c.get_watermark_offsets(TopicPartition(topic, part), timeout=5)
            except KafkaException:
                marks = None
            if (marks is not None and marks[1] >= need[part]) or settle.expired():
                break
            time.sleep(0.2)
        check(marks is not None, f"no watermarks for partition {part}")
        highs[part] = marks
        c.assign([TopicPartition(topic, part, 0)])
        records = {}
        dl = Deadline(60)
        while not dl.expired():
            m = c.poll(min(1.0, dl.left()))
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    if m.offset() >= marks[1]:
                        break
                    continue
                fail(f"consumer error on partition {part}: {m.error()}")
            records[m.offset()] = m.value().decode()
        c.unassign()
        stored[part] = records
    c.close()
    return stored, highs


def verify(bootstrap, topic, partitions, acked_files, seen_files, commit_files):
    acked = read_jsonl(acked_files.split(","))
    seen = read_jsonl(seen_files.split(","))
    check(acked, "no acknowledged records to verify")
    need = Counter()
    for a in acked:
        # librdkafka acknowledges a message whose response was lost with no
        # offset once a later batch of the same idempotent producer
        # succeeds: it was stored, but where is unknown.
        if a["o"] is not None:
            need[a["p"]] = max(need[a["p"]], a["o"] + 1)
    stored, highs = read_all(bootstrap, topic, partitions, need)

    problems = []
    where = {}
    duplicates = []
    for part, records in stored.items():
        low, high = highs[part]
        if low != 0:
            problems.append(f"partition {part}: low watermark {low}, expected 0")
        if high < need[part]:
            problems.append(f"partition {part}: high watermark {high} below the "
                            f"{need[part]} offsets acknowledged")
        offsets = sorted(records)
        gaps = [o for i, o in enumerate(offsets) if o != i]
        if gaps:
            problems.append(f"partition {part}: offsets have gaps, first at {gaps[:EXAMPLES]}")
        last = {}
        backwards = []
        for o in offsets:
            w, n = records[o].split(":")
            n = int(n)
            if n % partitions != part:
                problems.append(f"partition {part} offset {o}: {records[o]} belongs elsewhere")
            if w in last and n <= last[w][1]:
                backwards.append((last[w][0], o, f"{w}:{last[w][1]}", records[o]))
            last[w] = (o, n)
            if records[o] in where:
                duplicates.append((records[o], where[records[o]], (part, o)))
            else:
                where[records[o]] = (part, o)
        if backwards:
            problems.append(f"partition {part}: {len(backwards)} records out of order: "
                            f"{backwards[:EXAMPLES]}")
    if duplicates:
        problems.append(f"{len(duplicates)} records stored twice (value, first, again): "
                        f"{duplicates[:EXAMPLES]}")

    def present(a):
        value = f'{a["w"]}:{a["n"]}'
        if a["o"] is None:
            return where.get(value, (None,))[0] == a["p"]
        return stored.get(a["p"], {}).get(a["o"]) == value

    lost = [(a["p"], a["o"], f'{a["w"]}:{a["n"]}', stored.get(a["p"], {}).get(a["o"]))
            for a in acked if not present(a)]
    if lost:
        problems.append(f"{len(lost)} of {len(acked)} acknowledged records are not at their "
                        f"offsets (partition, offset, acked, stored): {lost[:EXAMPLES]}")
    vanished = [(s["p"], s["o"], s["v"], stored.get(s["p"], {}).get(s["o"]))
                for s in seen if stored.get(s["p"], {}).get(s["o"]) != s["v"]]
    if vanished:
        problems.append(f"{len(vanished)} of {len(seen)} records a group member read are no "
                        f"longer at their offsets: {vanished[:EXAMPLES]}")

    commit_views = 0
    for path in [p for p in commit_files.split(",") if p]:
        best = {}
        for row in read_jsonl([path]):
            commit_views += 1
            for part, offset in row["c"].items():
                part = int(part)
                if offset < best.get(part, -1):
                    problems.append(f"{os.path.basename(path)}: committed offset of partition "
                                    f"{part} moved back from {best[part]} to {offset}")
                best[part] = max(best.get(part, -1), offset)
                if offset > highs[part][1]:
                    problems.append(f"committed offset {offset} of partition {part} is past "
                                    f"its log end {highs[part][1]}")
    emit({
        "acked": len(acked),
        "seen": len(seen),
        "commit_views": commit_views,
        "stored": sum(len(r) for r in stored.values()),
        "duplicates": len(duplicates),
        "lost": len(lost),
        "vanished": len(vanished),
    })
    check(not problems, "\n  ".join(["verification failed:"] + problems[:40]))


def txn_produce(bootstrap, topic, partitions, writer, log_file, stop_file):
    import random
    rnd = random.Random(writer)
    counts = Counter()
    errors = Counter()
    conf = {
        "bootstrap.servers": bootstrap,
        "transactional.id": f"chaos-{writer}",
        "transaction.timeout.ms": 20000,
        "message.timeout.ms": 20000,
        "request.timeout.ms": 10000,
        "reconnect.backoff.max.ms": 1000,
    }
    out = open(log_file, "w", encoding="utf-8")

    def fresh():
        p = Producer(conf)
        dl = Deadline(120)
        while True:
            try:
                p.init_transactions(30)
                return p
            except KafkaException as e:
                errors["init:" + e.args[0].name()] += 1
                check(not dl.expired(), f"init_transactions kept failing: {e}")
                if e.args[0].fatal():
                    p = Producer(conf)
                time.sleep(0.5)

    p = fresh()
    n = 0
    k = 0
    dl = Deadline(RUN_LIMIT_S)
    while not dl.expired() and not os.path.exists(stop_file):
        k += 1
        size = rnd.randint(1, 20)
        values = [f"{writer}:{n + i}" for i in range(size)]
        n += size
        abort = k % 4 == 0
        state = "unknown"
        try:
            p.begin_transaction()
            for i, v in enumerate(values):
                p.produce(topic, v.encode(), partition=(k + i) % partitions)
                p.poll(0)
            if abort:
                p.abort_transaction(30)
                state = "aborted"
            else:
                while True:
                    try:
                        p.commit_transaction(30)
                        state = "committed"
                        break
                    except KafkaException as e:
                        err = e.args[0]
                        errors["commit:" + err.name()] += 1
                        if err.retriable():
                            continue
                        if err.txn_requires_abort():
                            p.abort_transaction(30)
                            state = "aborted"
                            break
                        raise
        except KafkaException as e:
            err = e.args[0]
            errors[err.name()] += 1
            if err.txn_requires_abort():
                try:
                    p.abort_transaction(30)
                    state = "aborted"
                except KafkaException as e2:
                    errors["abort:" + e2.args[0].name()] += 1
                    p = fresh()
            else:
                # Fatal or fenced: the outcome of this transaction is for
                # the checker to find out; a new producer fences the old.
                p = fresh()
        counts[state] += 1
        line(out, {"state": state, "values": values})
        time.sleep(0.02)
    out.close()
    emit({"writer": writer, "transactions": dict(counts), "errors": dict(errors)})


def txn_verify(bootstrap, topic, partitions, log_file):
    txns = read_jsonl([log_file])
    check(any(t["state"] == "committed" for t in txns), "no committed transaction to verify")
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"chaos-txn-verify-{topic}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
    })
    c.assign([TopicPartition(topic, part, 0) for part in range(partitions)])
    seen = Counter()
    eof = set()
    dl = Deadline(120)
    while len(eof) < partitions and not dl.expired():
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            fail(f"read_committed consumer error: {m.error()}")
        eof.discard(m.partition())
        seen[m.value().decode()] += 1
    c.close()
    check(len(eof) == partitions, f"read_committed did not reach the end of {partitions} "
          f"partitions in 120 s (the last stable offset is stuck?)")
    problems = []
    known = set()
    for t in txns:
        vals = t["values"]
        known.update(vals)
        there = [v for v in vals if seen[v] > 0]
        twice = [v for v in vals if seen[v] > 1]
        if twice:
            problems.append(f"{t['state']} transaction has values stored twice: {twice[:EXAMPLES]}")
        if t["state"] == "committed" and len(there) != len(vals):
            problems.append(f"committed transaction lost {len(vals) - len(there)} of "
                            f"{len(vals)} values: {[v for v in vals if not seen[v]][:EXAMPLES]}")
        if t["state"] == "aborted" and there:
            problems.append(f"aborted transaction visible to read_committed: {there[:EXAMPLES]}")
        if t["state"] == "unknown" and there and len(there) != len(vals):
            problems.append(f"transaction partly visible: {len(there)} of {len(vals)} values")
    stray = [v for v in seen if v not in known]
    if stray:
        problems.append(f"{len(stray)} values from no logged transaction: {stray[:EXAMPLES]}")
    states = Counter(t["state"] for t in txns)
    emit({"transactions": dict(states), "read": sum(seen.values())})
    check(not problems, "\n  ".join(["transaction verification failed:"] + problems[:40]))


def main():
    a = sys.argv[1:]
    if len(a) == 4 and a[0] == "create":
        # Replication factor 3, min.insync.replicas 2, as the random test.
        cluster_random_clients.create(a[1], a[2], int(a[3]), wait_s=60)
    elif len(a) == 7 and a[0] == "produce":
        produce(a[1], a[2], int(a[3]), a[4], a[5], a[6])
    elif len(a) == 8 and a[0] == "group":
        group(a[1], a[2], a[3], a[4], a[5], a[6], a[7])
    elif len(a) == 7 and a[0] == "txn-produce":
        txn_produce(a[1], a[2], int(a[3]), a[4], a[5], a[6])
    elif len(a) == 5 and a[0] == "txn-verify":
        txn_verify(a[1], a[2], int(a[3]), a[4])
    elif len(a) == 7 and a[0] == "verify":
        verify(a[1], a[2], int(a[3]), a[4], a[5], a[6])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
