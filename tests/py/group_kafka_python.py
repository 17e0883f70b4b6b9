"""One kafka-python group consumer run: consume, commit, close.

usage: group_kafka_python.py BOOTSTRAP TOPIC GROUP COUNT

Joins GROUP (subscribe, auto_offset_reset=earliest, no auto-commit), takes
exactly COUNT records from where the group's committed offsets say, commits
the position after the last record taken on each partition synchronously,
checks committed() reads those back, closes, and prints
{"records": [[partition, offset, value], ...], "committed": {partition: offset}}.
"""

import sys

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from common import Deadline, check_eq, emit, fail


def main():
    if len(sys.argv) != 5:
        fail(__doc__)
    bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      session_timeout_ms=10000, heartbeat_interval_ms=1000,
                      request_timeout_ms=30000)
    records = []
    dl = Deadline(40)
    while len(records) < count and not dl.expired():
        batch = c.poll(timeout_ms=200, max_records=count - len(records))
        for tp_records in batch.values():
            for r in tp_records:
                records.append((r.partition, r.offset, r.value.decode()))
    check_eq(len(records), count, "records received")
    nxt = {}
    for p, o, _ in records:
        nxt[p] = max(nxt.get(p, 0), o + 1)
    c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in nxt.items()})
    for p, o in nxt.items():
        check_eq(c.committed(TopicPartition(topic, p)), o, f"committed() of partition {p}")
    c.close(autocommit=False)
    print(f"[group_kafka_python] took {count}, committed {nxt}", file=sys.stderr)
    emit({"records": records, "committed": nxt})


if __name__ == "__main__":
    main()
