"""One aiokafka group consumer run: consume, commit, stop.

usage: group_aiokafka.py BOOTSTRAP TOPIC GROUP COUNT

The same contract as group_kafka_python.py, with AIOKafkaConsumer: joins
GROUP, takes exactly COUNT records from the committed offsets, commits the
position after the last record taken on each partition, checks committed(),
and prints {"records": [[partition, offset, value], ...], "committed": {...}}.
"""

import asyncio
import sys

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from common import check_eq, emit, fail


async def run(bootstrap, topic, group, count):
    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         session_timeout_ms=10000, heartbeat_interval_ms=1000,
                         request_timeout_ms=30000)
    await asyncio.wait_for(c.start(), 30)
    try:
        records = []
        end = asyncio.get_running_loop().time() + 40
        while len(records) < count and asyncio.get_running_loop().time() < end:
            batch = await c.getmany(timeout_ms=200, max_records=count - len(records))
            for tp_records in batch.values():
                for r in tp_records:
                    records.append((r.partition, r.offset, r.value.decode()))
        check_eq(len(records), count, "records received")
        nxt = {}
        for p, o, _ in records:
            nxt[p] = max(nxt.get(p, 0), o + 1)
        await asyncio.wait_for(c.commit({TopicPartition(topic, p): o for p, o in nxt.items()}), 20)
        for p, o in nxt.items():
            got = await asyncio.wait_for(c.committed(TopicPartition(topic, p)), 20)
            check_eq(got, o, f"committed() of partition {p}")
    finally:
        await c.stop()
    print(f"[group_aiokafka] took {count}, committed {nxt}", file=sys.stderr)
    emit({"records": records, "committed": nxt})


def main():
    if len(sys.argv) != 5:
        fail(__doc__)
    asyncio.run(run(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))


if __name__ == "__main__":
    main()
