"""Transactions with confluent-kafka (librdkafka) and aiokafka.

Usage: txn_clients.py SCENARIO JSON_OPTIONS

JSON_OPTIONS: {"bootstrap": ..., "prefix": ...} plus per-scenario keys.
Scenarios:

- basic: commit then abort across two topics of three partitions, with
  the consumer's offsets sent to the transaction; read_committed sees
  exactly the committed records, in order, read_uncommitted sees all, and
  the group's offsets appear only with the commit.
- fencing: a second producer with the same transactional.id fences the
  first (its commit fails fatally) and its open transaction is aborted.
- expiry_start: (run as a separate process) begins a transaction, writes,
  and exits without ending it (os._exit), leaving it open.
- expiry_check: after the coordinator aborted it (transaction timeout),
  a read_committed consumer moves past it and sees a later commit.
- ctp: consume-transform-produce of `records` input records by a worker
  process that the driver kills (SIGKILL) `kills` times at random moments
  (seeded) and restarts; the output holds every input exactly once.
- ctp_worker: the worker (internal).
- aiokafka: aiokafka's transactional producer commits and aborts.
"""

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import Deadline, check, check_eq, emit, fail

PY = sys.executable
HERE = os.path.dirname(os.path.abspath(__file__))


def props():
    return json.loads(os.environ.get("KAFKA_CLIENT_PROPS", "{}"))


def conf(opts, extra=None):
    c = {"bootstrap.servers": opts["bootstrap"]}
    c.update(props())
    c.update(extra or {})
    return c


def create_topics(opts, names, partitions, rf=1):
    admin = AdminClient(conf(opts))
    fs = admin.create_topics([NewTopic(n, partitions, rf) for n in names])
    for f in fs.values():
        try:
            f.result(timeout=60)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def read_all(opts, topics, isolation, expect=None, idle=3.0, limit=60):
    """Every record of `topics` from the start: {(topic, partition): [values]}."""
    consumer = Consumer(conf(opts, {
        "group.id": f"{opts['prefix']}reader",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    }))
    # Assigned, not subscribed: no group join to wait for.
    assignment = []
    for t in topics:
        md = consumer.list_topics(t, timeout=30)
        for p in md.topics[t].partitions:
            assignment.append(TopicPartition(t, p, -2))
    consumer.assign(assignment)
    got = {}
    count = 0
    deadline = Deadline(limit)
    last = time.monotonic()
    while not deadline.expired():
        msg = consumer.poll(0.3)
        if msg is None:
            if expect is not None and count >= expect and time.monotonic() - last > idle:
                break
            if expect is None and time.monotonic() - last > idle:
                break
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            fail(f"consumer error: {msg.error()}")
        got.setdefault((msg.topic(), msg.partition()), []).append(msg.value().decode())
        count += 1
        last = time.monotonic()
    consumer.close()
    return got


def txn_producer(opts, tid, extra=None):
    p = Producer(conf(opts, dict({"transactional.id": tid}, **(extra or {}))))
    p.init_transactions(30)
    return p


def basic(opts):
    p = opts["prefix"]
    a, b, src = p + "a", p + "b", p + "src"
    create_topics(opts, [a, b, src], 3)
    # A consumer whose position is committed inside the transaction.
    feeder = Producer(conf(opts))
    for i in range(6):
        feeder.produce(src, value=f"in-{i}".encode(), partition=i % 3)
    feeder.flush(30)
    group = p + "g"
    consumer = Consumer(conf(opts, {
        "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": "read_committed",
    }))
    consumer.subscribe([src])
    seen = 0
    deadline = Deadline(30)
    while seen < 6 and not deadline.expired():
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            seen += 1
    check_eq(seen, 6, "records read from the source")

    producer = txn_producer(opts, p + "tx")
    producer.begin_transaction()
    for i in range(30):
        producer.produce(a if i % 2 else b, value=f"c-{i}".encode(), partition=i % 3)
    producer.send_offsets_to_transaction(
        consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(20):
        producer.produce(a if i % 2 else b, value=f"x-{i}".encode(), partition=i % 3)
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    for i in range(30, 40):
        producer.produce(a if i % 2 else b, value=f"c-{i}".encode(), partition=i % 3)
    producer.commit_transaction(30)

    committed = read_all(opts, [a, b], "read_committed", expect=40)
    values = sorted(v for vs in committed.values() for v in vs)
    check_eq(values, sorted(f"c-{i}" for i in range(40)), "read_committed sees the commits only")
    for (topic, part), vs in committed.items():
        nums = [int(v.split("-")[1]) for v in vs]
        check_eq(nums, sorted(nums), f"order in {topic}-{part}")
    everything = read_all(opts, [a, b], "read_uncommitted", expect=60)
    check_eq(sum(len(v) for v in everything.values()), 60, "read_uncommitted sees every record")
    offsets = consumer.committed([TopicPartition(src, i) for i in range(3)], timeout=30)
    check_eq(sorted(tp.offset for tp in offsets), [2, 2, 2], "offsets committed with the transaction")
    consumer.close()
    emit({"committed": len(values), "uncommitted": 60})


def fencing(opts):
    p = opts["prefix"]
    topic = p + "f"
    create_topics(opts, [topic], 1)
    zombie = txn_producer(opts, p + "tx")
    zombie.begin_transaction()
    zombie.produce(topic, value=b"zombie")
    zombie.flush(30)
    fresh = txn_producer(opts, p + "tx")
    error = None
    try:
        zombie.commit_transaction(30)
    except KafkaException as e:
        error = e.args[0]
    check(error is not None, "the fenced producer committed")
    check(error.fatal() or error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                             KafkaError.INVALID_PRODUCER_EPOCH),
          f"fenced with {error}")
    fresh.begin_transaction()
    fresh.produce(topic, value=b"fresh")
    fresh.commit_transaction(30)
    got = read_all(opts, [topic], "read_committed", expect=1)
    check_eq([v for vs in got.values() for v in vs], ["fresh"], "only the new producer's commit")
    emit({"fenced_with": error.name()})


def expiry_start(opts):
    producer = txn_producer(opts, opts["prefix"] + "lost",
                            {"transaction.timeout.ms": opts["timeout_ms"]})
    producer.begin_transaction()
    producer.produce(opts["prefix"] + "e", value=b"never")
    producer.flush(30)
    os._exit(0)


def expiry_check(opts):
    topic = opts["prefix"] + "e"
    later = txn_producer(opts, opts["prefix"] + "later")
    later.begin_transaction()
    later.produce(topic, value=b"later")
    later.commit_transaction(60)
    got = read_all(opts, [topic], "read_committed", expect=1, limit=90)
    check_eq([v for vs in got.values() for v in vs], ["later"],
             "read_committed moved past the expired transaction")
    emit({"read": 1})


def ctp_worker(opts):
    p = opts["prefix"]
    consumer = Consumer(conf(opts, {
        "group.id": p + "ctp", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": "read_committed",
        # A killed worker's membership ends soon, so its successor gets
        # the partitions quickly (the broker's minimum).
        "session.timeout.ms": 6000,
    }))
    consumer.subscribe([p + "in"])
    producer = txn_producer(opts, p + "ctp-tx")
    while True:
        batch = consumer.consume(200, 1.0)
        batch = [m for m in batch if not m.error()]
        if not batch:
            continue
        producer.begin_transaction()
        for m in batch:
            producer.produce(p + "out", key=m.key(), value=b"out-" + m.value(), partition=m.partition())
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
        try:
            producer.commit_transaction(30)
        except KafkaException as e:
            if e.args[0].txn_requires_abort():
                producer.abort_transaction(30)
                # Rewind to the committed offsets and redo.
                committed = consumer.committed(consumer.assignment(), timeout=30)
                for tp in committed:
                    consumer.seek(tp if tp.offset >= 0 else TopicPartition(tp.topic, tp.partition, 0))
            else:
                raise


def ctp(opts):
    p = opts["prefix"]
    records = opts["records"]
    create_topics(opts, [p + "in", p + "out"], 3, opts.get("rf", 1))
    feeder = Producer(conf(opts, {"linger.ms": 20}))
    for i in range(records):
        feeder.produce(p + "in", value=str(i).encode(), partition=i % 3)
        if i % 10000 == 0:
            feeder.poll(0)
    feeder.flush(60)
    rng = random.Random(opts.get("seed", 1))
    cmd = [PY, os.path.join(HERE, "txn_clients.py"), "ctp_worker", json.dumps(opts)]
    kills = 0
    worker = subprocess.Popen(cmd)
    for _ in range(opts["kills"]):
        time.sleep(rng.uniform(1.0, 4.0))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
        worker = subprocess.Popen(cmd)
    # Let the last worker finish the input.
    deadline = Deadline(opts.get("finish_s", 240))
    done = 0
    while not deadline.expired():
        time.sleep(2)
        got = read_all(opts, [p + "out"], "read_committed", idle=1.0, limit=60)
        done = sum(len(v) for v in got.values())
        if done >= records:
            break
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    got = read_all(opts, [p + "out"], "read_committed", idle=2.0, limit=120)
    values = [v for vs in got.values() for v in vs]
    dupes = len(values) - len(set(values))
    missing = records - len(set(values))
    check_eq((missing, dupes), (0, 0), "output records (missing, duplicated)")
    check_eq(set(values), {f"out-{i}" for i in range(records)}, "output contents")
    emit({"records": records, "kills": kills, "output": len(values)})


def committer(opts):
    """Commits transactions of 10 records until the broker goes away,
    printing {"txn": n} after each acknowledged commit."""
    topic = opts["prefix"] + "k"
    create_topics(opts, [topic], 3)
    producer = txn_producer(opts, opts["prefix"] + "committer",
                            {"transaction.timeout.ms": 5000, "message.timeout.ms": 5000})
    n = 0
    try:
        while True:
            producer.begin_transaction()
            for i in range(10):
                producer.produce(topic, value=f"t{n}-{i}".encode(), partition=i % 3)
            producer.commit_transaction(10)
            print(json.dumps({"txn": n}), flush=True)
            n += 1
    except KafkaException as e:
        print(f"stopped after {n} commits: {e}", file=sys.stderr, flush=True)
    os._exit(0)


def verify_committer(opts):
    """Every acknowledged transaction is whole, none is partial."""
    topic = opts["prefix"] + "k"
    acked = opts["acked"]
    got = read_all(opts, [topic], "read_committed", expect=acked * 10, idle=3.0, limit=120)
    per_txn = {}
    values = [v for vs in got.values() for v in vs]
    for v in values:
        n = int(v[1:].split("-")[0])
        per_txn[n] = per_txn.get(n, 0) + 1
    missing = sum(10 - per_txn.get(n, 0) for n in range(acked))
    torn = sorted(n for n, c in per_txn.items() if c != 10)
    check_eq(len(values), len(set(values)), "no duplicates")
    emit({"acked": acked, "missing": missing, "torn": len(torn), "visible_txns": len(per_txn)})


def aiokafka_txn(opts):
    from aiokafka import AIOKafkaProducer

    topic = opts["prefix"] + "aio"
    create_topics(opts, [topic], 1)

    async def run():
        producer = AIOKafkaProducer(bootstrap_servers=opts["bootstrap"],
                                    transactional_id=opts["prefix"] + "aio-tx")
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(5):
                    await producer.send(topic, f"c-{i}".encode())
            await producer.begin_transaction()
            await producer.send(topic, b"aborted")
            await producer.abort_transaction()
        finally:
            await producer.stop()

    asyncio.run(run())
    got = read_all(opts, [topic], "read_committed", expect=5)
    check_eq(sorted(v for vs in got.values() for v in vs), [f"c-{i}" for i in range(5)],
             "aiokafka's committed records")
    emit({"committed": 5})


SCENARIOS = {
    "basic": basic,
    "fencing": fencing,
    "expiry_start": expiry_start,
    "expiry_check": expiry_check,
    "ctp": ctp,
    "ctp_worker": ctp_worker,
    "aiokafka": aiokafka_txn,
    "committer": committer,
    "verify_committer": verify_committer,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](json.loads(sys.argv[2]))
