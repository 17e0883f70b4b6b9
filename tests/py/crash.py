"""Durability around a kill -9 of the broker, with confluent-kafka.

usage:
  crash.py produce BOOTSTRAP TOPIC PARTITIONS N ACKED_FILE
      produce N records (acks=all), wait for every delivery report, write one
      line "partition offset value" per acknowledged record; all must succeed.
  crash.py stream BOOTSTRAP TOPIC PARTITIONS N ACKED_FILE
      the same at a steady pace, while the test kills and restarts the broker;
      failures are allowed (they were never acknowledged), and each
      acknowledgement is written (and flushed) the moment it arrives.
  crash.py verify BOOTSTRAP TOPIC PARTITIONS ACKED_FILE
      read every partition from its start to its high watermark; every
      acknowledged record must be at its acknowledged offset.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from common import Deadline, check, check_eq, emit, fail


def produce(bootstrap, topic, partitions, n, acked_file, stream):
    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "linger.ms": 2,
        "message.timeout.ms": 10000 if stream else 30000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
    })
    counts = {"ok": 0, "failed": 0}
    out = open(acked_file, "w", encoding="utf-8")

    def on_delivery(err, msg):
        if err is not None:
            counts["failed"] += 1
            return
        counts["ok"] += 1
        out.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")
        out.flush()

    for i in range(n):
        while True:
            try:
                p.produce(topic, f"crash-{i}".encode(), key=str(i).encode(),
                          partition=i % partitions, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        if stream and i % 20 == 19:
            time.sleep(0.01)
    left = p.flush(40)
    out.close()
    if not stream:
        check_eq(left, 0, "records without a delivery report after flush(40)")
        check_eq(counts["failed"], 0, "failed deliveries")
        check_eq(counts["ok"], n, "acknowledged records")
    emit({"acked": counts["ok"], "failed": counts["failed"], "undelivered": left})


def read_acked(path):
    acked = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            part, off, value = line.split()
            acked.append((int(part), int(off), value))
    return acked


def verify(bootstrap, topic, partitions, acked_file):
    acked = read_acked(acked_file)
    check(acked, "no acknowledged records to verify")
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"verify-{topic}",
        "enable.auto.commit": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": True,
    })
    stored = {}
    for part in range(partitions):
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
        check_eq(lo, 0, f"low watermark of partition {part}")
        if hi == 0:
            continue
        c.assign([TopicPartition(topic, part, 0)])
        dl = Deadline(30)
        seen = {}
        while not dl.expired():
            m = c.poll(min(1.0, dl.left()))
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    break
                fail(f"consumer error on partition {part}: {m.error()}")
            seen[m.offset()] = m.value().decode()
        check_eq(len(seen), hi, f"records read from partition {part} (high watermark {hi})")
        stored[part] = seen
        c.unassign()
    c.close()

    missing = [(p, o, v) for p, o, v in acked if stored.get(p, {}).get(o) != v]
    check(not missing,
          f"{len(missing)} of {len(acked)} acknowledged records are not at their offsets, "
          f"e.g. {[(p, o, v, stored.get(p, {}).get(o)) for p, o, v in missing[:5]]}")
    emit({"acked": len(acked), "stored": sum(len(s) for s in stored.values())})


def main():
    args = sys.argv[1:]
    if len(args) == 6 and args[0] in ("produce", "stream"):
        mode, bootstrap, topic, partitions, n, acked_file = args
        produce(bootstrap, topic, int(partitions), int(n), acked_file, mode == "stream")
    elif len(args) == 5 and args[0] == "verify":
        _, bootstrap, topic, partitions, acked_file = args
        verify(bootstrap, topic, int(partitions), acked_file)
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
