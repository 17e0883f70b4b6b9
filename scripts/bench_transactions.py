#!/usr/bin/env python3
"""Transactional throughput next to idempotent throughput, in one run.

    cargo build --release
    .venv/bin/python scripts/bench_transactions.py [RECORDS]   # default 200,000 per case

Starts target/release/rivulet on a temporary directory, then with
confluent-kafka (librdkafka) writes RECORDS records of 100 bytes to a
3-partition topic: idempotent (acks=all) and transactional with
transactions of 1, 100 and 10,000 records, each case committed in full.
Prints records/s and the per-commit latency. Not part of CI; the figures
go to docs/benchmarks.md.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "rivulet")
BOOTSTRAP = "127.0.0.1:39192"
VALUE = b"x" * 100


def wait_ready():
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for _ in range(100):
        try:
            admin.list_topics(timeout=1)
            return admin
        except Exception:
            time.sleep(0.2)
    sys.exit("the broker did not start")


def send(producer, topic, partition):
    """Produces one record, waiting while the client's queue is full."""
    while True:
        try:
            producer.produce(topic, VALUE, partition=partition)
            return
        except BufferError:
            producer.poll(0.01)


def idempotent(topic, records):
    p = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True,
                  "linger.ms": 5, "batch.size": 1 << 20})
    start = time.monotonic()
    for i in range(records):
        send(p, topic, i % 3)
    p.flush(120)
    return records / (time.monotonic() - start), None


def transactional(topic, records, size):
    p = Producer({"bootstrap.servers": BOOTSTRAP, "transactional.id": f"bench-{size}",
                  "linger.ms": 5, "batch.size": 1 << 20})
    p.init_transactions(30)
    commits = []
    start = time.monotonic()
    sent = 0
    while sent < records:
        p.begin_transaction()
        for _ in range(min(size, records - sent)):
            send(p, topic, sent % 3)
            sent += 1
        t = time.monotonic()
        p.commit_transaction(60)
        commits.append(time.monotonic() - t)
    elapsed = time.monotonic() - start
    commits.sort()
    return records / elapsed, commits[len(commits) // 2] * 1000


def main():
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    work = tempfile.mkdtemp(prefix="rivulet-bench-txn-")
    broker = subprocess.Popen(
        [BIN, "broker", "--data-dir", os.path.join(work, "data"), "--metrics-addr", "none",
         "--listeners", f"PLAINTEXT://{BOOTSTRAP}",
         "--config", "transaction.state.log.num.partitions=5"],
        stderr=open(os.path.join(work, "broker.log"), "w"))
    try:
        admin = wait_ready()
        results = []
        cases = [("idempotent", None), ("transactions of 10,000", 10_000),
                 ("transactions of 100", 100), ("transactions of 1", 1)]
        for name, size in cases:
            topic = f"bench-{size or 'idem'}"
            for f in admin.create_topics([NewTopic(topic, 3, 1)]).values():
                f.result(30)
            # One record per transaction is slow: a tenth of the records.
            n = records if size != 1 else max(1000, records // 20)
            rate, commit_ms = (idempotent(topic, n) if size is None
                               else transactional(topic, n, size))
            results.append({"case": name, "records": n, "records_per_s": round(rate),
                            "median_commit_ms": None if commit_ms is None else round(commit_ms, 2)})
            print(json.dumps(results[-1]), flush=True)
    finally:
        broker.terminate()
        broker.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
