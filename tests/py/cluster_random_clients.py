"""Clients for the randomized fault test of a replicated cluster, with
confluent-kafka.

usage:
  cluster_random_clients.py create BOOTSTRAP TOPIC PARTITIONS
      create TOPIC with replication factor 3 and min.insync.replicas=2.
  cluster_random_clients.py produce BOOTSTRAP TOPIC PARTITIONS ACKED_FILE STOP_FILE
      an idempotent producer (acks=all) sends the values 0, 1, 2, ... at a
      steady pace, value N to partition N % PARTITIONS, until STOP_FILE
      exists; then flushes. Each acknowledgement is written (and flushed) to
      ACKED_FILE as a JSON line {"p", "o", "v"} the moment it arrives. Failed
      deliveries are allowed (they were never acknowledged) and counted; the
      summary on stdout says how many of each, and any fatal producer error.
  cluster_random_clients.py consume BOOTSTRAP TOPIC PARTITIONS SEEN_FILE STOP_FILE
      reads every partition from offset 0 while the faults happen, until
      STOP_FILE exists; every record it saw goes to SEEN_FILE as a JSON line.
      A consumer only sees records below the high watermark, which a later
      leader must still have.
  cluster_random_clients.py verify BOOTSTRAP TOPIC PARTITIONS ACKED_FILE SEEN_FILE
      reads every partition from its start with a fresh consumer and checks:
      every acknowledged value is at its acknowledged offset; every record the
      concurrent consumer saw is still at its offset; no value is stored
      twice; per partition, values only increase; offsets have no gaps.
"""

import json
import os
import sys
import time
from collections import Counter

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import Deadline, check, emit, fail

# A producer never runs longer than this, even if the stop file never comes.
PRODUCE_LIMIT_S = 150
# Values sent per burst, and bursts per second: 500 values a second.
BURST = 10
BURSTS_PER_S = 50
# How long the final flush may take; every message times out before that.
MESSAGE_TIMEOUT_MS = 45000
FLUSH_S = 60
# How many examples a failed check shows.
EXAMPLES = 8


def create(bootstrap, topic, partitions, wait_s=30):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=3,
                   config={"min.insync.replicas": "2"})
    futures = admin.create_topics([new], request_timeout=20, operation_timeout=20)
    try:
        futures[topic].result(timeout=30)
    except KafkaException as e:
        fail(f"create topic {topic}: {e}")
    dl = Deadline(wait_s)
    while True:
        md = admin.list_topics(topic, timeout=10).topics.get(topic)
        ready = md is not None and md.error is None and len(md.partitions) == partitions \
            and all(p.leader >= 0 and len(p.isrs) == 3 for p in md.partitions.values())
        if ready:
            break
        check(not dl.expired(),
              f"topic {topic} has no leaders or full ISRs after {wait_s} s: {md}")
        time.sleep(0.2)
    emit({"created": topic})


def produce(bootstrap, topic, partitions, acked_file, stop_file):
    fatal = []
    client_errors = Counter()

    def on_error(err):
        if err.fatal():
            fatal.append(str(err))
        else:
            client_errors[err.name()] += 1

    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        "linger.ms": 5,
        "message.timeout.ms": MESSAGE_TIMEOUT_MS,
        "request.timeout.ms": 10000,
        "retry.backoff.ms": 100,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
        "topic.metadata.refresh.interval.ms": 5000,
        "error_cb": on_error,
    })
    counts = Counter()
    failures = Counter()
    failed_examples = []
    out = open(acked_file, "w", encoding="utf-8")

    def on_delivery(err, msg):
        value = int(msg.value())
        if err is not None:
            counts["failed"] += 1
            failures[err.name()] += 1
            if len(failed_examples) < EXAMPLES:
                failed_examples.append([msg.partition(), value, str(err)])
            return
        counts["acked"] += 1
        out.write(json.dumps({"p": msg.partition(), "o": msg.offset(), "v": value}) + "\n")
        out.flush()

    started = time.monotonic()
    dl = Deadline(PRODUCE_LIMIT_S)
    n = 0
    while not fatal and not dl.expired() and not os.path.exists(stop_file):
        # A steady pace whatever the delivery reports cost: the next burst
        # is due at a fixed time, not a fixed pause after this one.
        due = started + n / (BURST * BURSTS_PER_S)
        while time.monotonic() < due:
            p.poll(max(0.0, due - time.monotonic()))
        sent = 0
        while sent < BURST and not fatal:
            try:
                p.produce(topic, str(n).encode(), key=str(n).encode(),
                          partition=n % partitions, on_delivery=on_delivery)
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
        "produced": n,
        "acked": counts["acked"],
        "failed": counts["failed"],
        "failures": dict(failures),
        "failed_examples": failed_examples,
        "undelivered": left,
        "client_errors": dict(client_errors),
        "fatal": fatal,
        "seconds": round(time.monotonic() - started, 1),
    })


def consume(bootstrap, topic, partitions, seen_file, stop_file):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"random-watch-{topic}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    })
    c.assign([TopicPartition(topic, part, 0) for part in range(partitions)])
    errors = Counter()
    n = 0
    dl = Deadline(PRODUCE_LIMIT_S)
    with open(seen_file, "w", encoding="utf-8") as out:
        while not dl.expired() and not os.path.exists(stop_file):
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                errors[m.error().name()] += 1
                continue
            n += 1
            out.write(json.dumps({"p": m.partition(), "o": m.offset(), "v": int(m.value())}) + "\n")
    c.close()
    emit({"seen": n, "errors": dict(errors)})


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def watermarks(consumer, topic, part, need, dl):
    """(low, high) of a partition once high covers `need` offsets, or the
    last answer when `dl` expires: a leader that just took over may need a
    moment before its high watermark catches up with what the old one
    acknowledged."""
    last = None
    while True:
        try:
            last = consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=5)
        except KafkaException:
            pass
        if (last is not None and last[1] >= need) or dl.expired():
            return last
        time.sleep(0.2)


def read_partition(consumer, topic, part, high):
    """Offset -> value of every record of `part` up to its high watermark."""
    consumer.assign([TopicPartition(topic, part, 0)])
    stored = {}
    dl = Deadline(30)
    while not dl.expired():
        m = consumer.poll(min(1.0, dl.left()))
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                if m.offset() >= high:
                    break
                continue
            fail(f"consumer error on partition {part}: {m.error()}")
        stored[m.offset()] = int(m.value())
    consumer.unassign()
    return stored


def verify(bootstrap, topic, partitions, acked_file, seen_file):
    acked = read_jsonl(acked_file)
    seen = read_jsonl(seen_file)
    check(acked, "no acknowledged records to verify")
    need = Counter()
    for a in acked:
        need[a["p"]] = max(need[a["p"]], a["o"] + 1)

    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"random-verify-{topic}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })
    problems = []
    stored = {}
    settle = Deadline(30)
    for part in range(partitions):
        marks = watermarks(c, topic, part, need[part], settle)
        if marks is None:
            fail(f"no watermarks for partition {part} within 30 s")
        low, high = marks
        if low != 0:
            problems.append(f"partition {part}: low watermark {low}, expected 0")
        if high < need[part]:
            problems.append(f"partition {part}: high watermark {high} below the "
                            f"{need[part]} offsets acknowledged")
        stored[part] = read_partition(c, topic, part, high)
    c.close()

    where = {}
    duplicates = []
    for part, records in stored.items():
        offsets = sorted(records)
        gaps = [o for i, o in enumerate(offsets) if o != i]
        if gaps:
            problems.append(f"partition {part}: offsets have gaps, first at {gaps[:EXAMPLES]}")
        wrong = [(o, records[o]) for o in offsets if records[o] % partitions != part]
        if wrong:
            problems.append(f"partition {part}: values of other partitions {wrong[:EXAMPLES]}")
        backwards = [(prev, o, records[prev], records[o])
                     for prev, o in zip(offsets, offsets[1:]) if records[o] <= records[prev]]
        if backwards:
            problems.append(f"partition {part}: {len(backwards)} values out of order "
                            f"(offset, offset, value, value): {backwards[:EXAMPLES]}")
        for o in offsets:
            v = records[o]
            if v in where:
                duplicates.append((v, where[v], (part, o)))
            else:
                where[v] = (part, o)
    if duplicates:
        problems.append(f"{len(duplicates)} values stored twice (value, first, again): "
                        f"{duplicates[:EXAMPLES]}")

    def absent(records):
        return [(r["p"], r["o"], r["v"], stored.get(r["p"], {}).get(r["o"]))
                for r in records if stored.get(r["p"], {}).get(r["o"]) != r["v"]]

    lost = absent(acked)
    if lost:
        problems.append(f"{len(lost)} of {len(acked)} acknowledged values are not at their "
                        f"offsets (partition, offset, acked value, stored value): "
                        f"{lost[:EXAMPLES]}")
    vanished = absent(seen)
    if vanished:
        problems.append(f"{len(vanished)} of {len(seen)} records a consumer read are no longer "
                        f"at their offsets (partition, offset, read value, stored value): "
                        f"{vanished[:EXAMPLES]}")
    summary = {
        "acked": len(acked),
        "seen": len(seen),
        "stored": sum(len(r) for r in stored.values()),
        "per_partition": {p: len(r) for p, r in stored.items()},
        "duplicates": len(duplicates),
        "lost": len(lost),
        "vanished": len(vanished),
    }
    emit(summary)
    check(not problems, "\n  ".join(["verification failed:"] + problems))


def main():
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "create":
        create(args[1], args[2], int(args[3]))
    elif len(args) == 6 and args[0] in ("produce", "consume", "verify"):
        mode, bootstrap, topic, partitions, first, second = args
        run = {"produce": produce, "consume": consume, "verify": verify}[mode]
        run(bootstrap, topic, int(partitions), first, second)
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
