"""DeleteRecords through confluent-kafka: the low watermark moves, and a
consumer positioned below it (auto.offset.reset=earliest) starts there.

usage: delete_records.py BOOTSTRAP TOPIC   (topic exists, partition 0 empty)
"""

import sys

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from common import Deadline, check_eq, emit, fail

N = 20


def first_offset(bootstrap, topic, start):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"dr-{topic}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    c.assign([TopicPartition(topic, 0, start)])
    dl = Deadline(20)
    try:
        while not dl.expired():
            m = c.poll(min(1.0, dl.left()))
            if m is None:
                continue
            if m.error():
                fail(f"consumer error starting at {start}: {m.error()}")
            return m.offset(), m.value()
        fail(f"no record consumed starting at {start} within 20s")
    finally:
        c.close()


def main():
    if len(sys.argv) != 3:
        fail(f"usage: {sys.argv[0]} BOOTSTRAP TOPIC")
    bootstrap, topic = sys.argv[1:]
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(N):
        p.produce(topic, f"r-{i}".encode(), partition=0)
        p.flush(10)  # one batch per record, so deletion can fall mid-segment
    check_eq(p.flush(10), 0, "messages left after flush")

    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = TopicPartition(topic, 0, 10)
    res = admin.delete_records([tp], request_timeout=15)
    deleted = list(res.values())[0].result(timeout=15)
    check_eq(deleted.low_watermark, 10, "low watermark reported by delete_records")

    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wm-{topic}"})
    lo, hi = probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    check_eq((lo, hi), (10, N), "watermarks after delete_records(10)")
    probe.close()

    listed = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.earliest()},
                                request_timeout=15)
    earliest = list(listed.values())[0].result(timeout=15)
    check_eq(earliest.offset, 10, "ListOffsets earliest after delete_records(10)")

    check_eq(first_offset(bootstrap, topic, 3), (10, b"r-10"),
             "first record when starting below the low watermark")
    check_eq(first_offset(bootstrap, topic, OFFSET_BEGINNING), (10, b"r-10"),
             "first record from the beginning")

    # Deleting "up to the end" (-1) empties the partition.
    res = admin.delete_records([TopicPartition(topic, 0, OFFSET_END)], request_timeout=15)
    deleted = list(res.values())[0].result(timeout=15)
    check_eq(deleted.low_watermark, N, "low watermark after delete_records(OFFSET_END)")
    emit({"low_watermark": N})


if __name__ == "__main__":
    main()
