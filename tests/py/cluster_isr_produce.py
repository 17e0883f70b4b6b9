"""confluent-kafka producers for the cluster replication tests.

usage:
  cluster_isr_produce.py stream BOOTSTRAP TOPIC PARTITION ACKED_FILE STOP_FILE
      an idempotent acks=all producer that sends "s-<n>" at a steady pace
      until STOP_FILE exists, then flushes. Each acknowledgement is written
      (and flushed) to ACKED_FILE as "offset value" the moment it arrives, so
      the test can watch progress. Prints {"ok", "failed", "errors"}.
  cluster_isr_produce.py burst BOOTSTRAP TOPIC PARTITION ACKS N PREFIX TIMEOUT_MS
      sends "PREFIX-<i>" for i < N with acks=ACKS (all or 1, no idempotence)
      and message.timeout.ms=TIMEOUT_MS, waits for every delivery report and
      prints {"acked": {value: offset}, "failed": {value: error name}}.
      Failures are the test's to judge, so the script exits 0 either way.
"""

import os
import sys
import time

from confluent_kafka import Producer

from common import Deadline, check_eq, emit, fail


def base_config(bootstrap):
    return {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        "retry.backoff.ms": 100,
        "topic.metadata.refresh.interval.ms": 1000,
    }


def stream(bootstrap, topic, partition, acked_file, stop_file):
    p = Producer({
        **base_config(bootstrap),
        "acks": "all",
        "enable.idempotence": True,
        "message.timeout.ms": 40000,
    })
    counts = {"ok": 0, "failed": 0}
    errors = {}
    out = open(acked_file, "w", encoding="utf-8")

    def on_delivery(err, msg):
        if err is not None:
            counts["failed"] += 1
            errors[err.name()] = errors.get(err.name(), 0) + 1
            return
        counts["ok"] += 1
        out.write(f"{msg.offset()} {msg.value().decode()}\n")
        out.flush()

    # A bound on the whole run: the test stops the stream long before this.
    deadline = Deadline(120)
    n = 0
    while not os.path.exists(stop_file):
        if deadline.expired():
            fail("the stop file never appeared")
        try:
            p.produce(topic, f"s-{n}".encode(), partition=partition, on_delivery=on_delivery)
            n += 1
        except BufferError:
            pass
        p.poll(0.005)
    left = p.flush(45)
    out.close()
    check_eq(left, 0, "records without a delivery report after flush(45)")
    emit({"sent": n, "ok": counts["ok"], "failed": counts["failed"], "errors": errors})


def burst(bootstrap, topic, partition, acks, n, prefix, timeout_ms):
    p = Producer({
        **base_config(bootstrap),
        "acks": acks,
        "enable.idempotence": False,
        "message.timeout.ms": timeout_ms,
        "request.timeout.ms": min(timeout_ms, 30000),
    })
    acked = {}
    failed = {}

    def on_delivery(err, msg):
        value = msg.value().decode()
        if err is None:
            acked[value] = msg.offset()
        else:
            failed[value] = err.name()

    for i in range(n):
        p.produce(topic, f"{prefix}-{i}".encode(), partition=partition, on_delivery=on_delivery)
        p.poll(0)
    started = time.monotonic()
    left = p.flush(timeout_ms / 1000 + 15)
    check_eq(left, 0, "records without a delivery report")
    emit({"acked": acked, "failed": failed, "flush_s": round(time.monotonic() - started, 2)})


def main():
    args = sys.argv[1:]
    if len(args) == 6 and args[0] == "stream":
        stream(args[1], args[2], int(args[3]), args[4], args[5])
    elif len(args) == 8 and args[0] == "burst":
        burst(args[1], args[2], int(args[3]), args[4], int(args[5]), args[6], int(args[7]))
    else:
        fail(f"usage: see {sys.argv[0]}")


if __name__ == "__main__":
    main()
