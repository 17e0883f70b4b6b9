"""A broker on a full disk, with confluent-kafka.

usage:
  disk_faults.py fill BOOTSTRAP TOPIC ACKED_FILE SECONDS
      produce 4 KiB records (acks=all, no retries, so a refusal reaches the
      application as the broker's error) until the broker refuses one, then
      keep producing for a while: every further record must be refused too,
      each within the client's timeout. Writes "partition offset value" per
      acknowledged record. Summary: acknowledged count and errors by name.
  disk_faults.py produce BOOTSTRAP TOPIC FIRST N ACKED_FILE
      produce N records (acks=all, retries on), all must be acknowledged.
  disk_faults.py latency BOOTSTRAP SLOW_TOPIC SLOW_PARTITIONS FAST_TOPIC N
      keep a producer per partition of SLOW_TOPIC busy (acks=1, whose
      fsyncs the test slowed down) while producing N records one at a time
      to FAST_TOPIC (acks=all); summary: the fast records' latencies (max,
      median, ms) and how many slow records were acknowledged meanwhile.
  disk_faults.py commit BOOTSTRAP TOPIC GROUP OFFSET ok|any
      commit OFFSET for partition 0 of TOPIC in GROUP (a synchronous
      commit): it must be answered within 15 s, and with `ok` succeed
      (with `any` an error is fine too: a small record may still fit).
  disk_faults.py verify BOOTSTRAP TOPIC ACKED_FILE...
      read partition 0 from its start to its high watermark: it must hold
      exactly the acknowledged records, at their offsets, and nothing else
      (a refused write left nothing behind).
"""

import os
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from cluster_failover_clients import read_acked, read_partition
from common import Deadline, check, check_eq, emit, fail

VALUE_PAD = "x" * 4000


def producer(bootstrap, **extra):
    return Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 0,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        **extra,
    })


def value(seq):
    return f"v{seq}-{VALUE_PAD}"


def fill(bootstrap, topic, acked_file, seconds):
    p = producer(bootstrap, **{
        "enable.idempotence": False,
        "retries": 0,
        "message.timeout.ms": 10000,
        "request.timeout.ms": 10000,
        "max.in.flight.requests.per.connection": 1,
    })
    out = open(acked_file, "w", encoding="utf-8")
    state = {"acked": 0, "errors": {}, "refused_at": None, "acked_after_refusal": 0}

    def on_delivery(err, msg):
        if err is not None:
            name = err.name()
            state["errors"][name] = state["errors"].get(name, 0) + 1
            if state["refused_at"] is None:
                state["refused_at"] = time.monotonic()
            return
        if state["refused_at"] is not None:
            state["acked_after_refusal"] += 1
        state["acked"] += 1
        out.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")
        out.flush()

    dl = Deadline(seconds)
    seq = 0
    sent_after = 0
    while not dl.expired():
        if state["refused_at"] is not None:
            # Keep asking a while: the broker must go on refusing (and
            # answering) without hanging or dying.
            if sent_after >= 20:
                break
            sent_after += 1
        p.produce(topic, value(seq).encode(), partition=0, on_delivery=on_delivery)
        seq += 1
        # One at a time: each answer is about one record.
        left = p.flush(15)
        check_eq(left, 0, f"records without a delivery report 15 s after sending #{seq}")
    out.close()
    check(state["refused_at"] is not None,
          f"the broker never refused a write within {seconds} s: {state}")
    emit({
        "acked": state["acked"],
        "errors": state["errors"],
        "acked_after_refusal": state["acked_after_refusal"],
        "sent": seq,
    })


def produce(bootstrap, topic, first, n, acked_file):
    p = producer(bootstrap, **{"enable.idempotence": True, "message.timeout.ms": 20000})
    out = open(acked_file, "w", encoding="utf-8")
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err.name())
            return
        out.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")

    for seq in range(first, first + n):
        p.produce(topic, value(seq).encode(), partition=0, on_delivery=on_delivery)
        p.poll(0)
    left = p.flush(30)
    out.close()
    check_eq(left, 0, "records without a delivery report after flush(30)")
    check(not failed, f"{len(failed)} deliveries failed: {failed[:5]}")
    emit({"acked": n})


def latency(bootstrap, slow_topic, slow_partitions, fast_topic, n):
    stop = threading.Event()
    slow_acked = [0]

    def keep_busy(part):
        p = producer(bootstrap, **{"acks": "1", "message.timeout.ms": 30000})

        def on_delivery(err, _msg):
            if err is None:
                slow_acked[0] += 1

        seq = 0
        while not stop.is_set():
            if len(p) < 5:
                p.produce(slow_topic, value(seq).encode(), partition=part,
                          on_delivery=on_delivery)
                seq += 1
            p.poll(0.05)
        # What is still queued would take a slow fsync each: drop it.
        p.purge()
        p.flush(10)

    workers = [threading.Thread(target=keep_busy, args=(part,)) for part in range(slow_partitions)]
    for w in workers:
        w.start()
    time.sleep(1.0)
    fast = producer(bootstrap, **{"enable.idempotence": True, "message.timeout.ms": 20000})
    latencies = []
    failed = []

    def on_delivery(err, _msg):
        if err is not None:
            failed.append(err.name())

    # The first record also sets the producer up (metadata, producer id).
    fast.produce(fast_topic, value(-1).encode(), partition=0, on_delivery=on_delivery)
    check_eq(fast.flush(20), 0, "the first fast record without a delivery report")
    for seq in range(n):
        started = time.monotonic()
        fast.produce(fast_topic, value(seq).encode(), partition=0, on_delivery=on_delivery)
        left = fast.flush(20)
        check_eq(left, 0, "fast record without a delivery report after 20 s")
        latencies.append((time.monotonic() - started) * 1000)
        # Spread over several slow fsyncs.
        time.sleep(0.2)
    stop.set()
    for w in workers:
        w.join(60)
    check(not failed, f"fast deliveries failed: {failed[:5]}")
    latencies.sort()
    emit({
        "max_ms": round(latencies[-1]),
        "median_ms": round(latencies[len(latencies) // 2]),
        "slow_acked": slow_acked[0],
    })


def commit(bootstrap, topic, group, offset, expect):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
    })
    started = time.monotonic()
    error = None
    try:
        parts = c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        errs = [p.error for p in parts if p.error is not None]
        if errs:
            error = str(errs[0])
    except KafkaException as e:
        error = e.args[0].name() if e.args else str(e)
    took = time.monotonic() - started
    c.close()
    check(took < 15, f"the commit took {took:.1f} s")
    if expect == "ok":
        check(error is None, f"the commit failed: {error}")
    emit({"error": error, "ms": round(took * 1000)})


def verify(bootstrap, topic, acked_files):
    acked = read_acked(acked_files)
    check(acked, "no acknowledged records to verify")
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"verify-{topic}-{os.getpid()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": True,
    })
    try:
        records, hi = read_partition(c, topic, 0)
    except KafkaException as e:
        fail(f"reading back: {e}")
    c.close()
    expected = sorted((o, v) for _, o, v in acked)
    if records != expected:
        stored = dict(records)
        missing = [(o, v[:12]) for o, v in expected if stored.get(o) != v]
        known = {o for o, _ in expected}
        extra = [(o, v[:12]) for o, v in records if o not in known]
        fail(f"partition 0 holds {len(records)} records up to {hi}, {len(expected)} were "
             f"acknowledged; missing or moved {missing[:5]}, never acknowledged {extra[:5]}")
    emit({"records": len(records), "high_watermark": hi})


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "fill":
        fill(args[0], args[1], args[2], float(args[3]))
    elif cmd == "produce":
        produce(args[0], args[1], int(args[2]), int(args[3]), args[4])
    elif cmd == "latency":
        latency(args[0], args[1], int(args[2]), args[3], int(args[4]))
    elif cmd == "commit":
        commit(args[0], args[1], args[2], int(args[3]), args[4])
    elif cmd == "verify":
        verify(args[0], args[1], args[2:])
    else:
        fail(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
