"""aiokafka producer -> consumer round trip with assign()/seek.

usage: aiokafka_roundtrip.py BOOTSTRAP TOPIC   (partition 0 empty)
"""

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from common import BASE_TS, check, check_eq, emit, fail

N = 25


async def run(bootstrap, topic):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                request_timeout_ms=15000)
    await asyncio.wait_for(producer.start(), 20)
    try:
        for i in range(N):
            md = await asyncio.wait_for(producer.send_and_wait(
                topic, key=f"a{i}".encode(), value=f"aio-{i}".encode(), partition=0,
                timestamp_ms=BASE_TS + i, headers=[("src", b"aiokafka")]), 15)
            check_eq((md.partition, md.offset), (0, i), f"metadata of record {i}")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="none",
                                request_timeout_ms=15000)
    await asyncio.wait_for(consumer.start(), 20)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got = []
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while len(got) < N and loop.time() < end:
            batch = await consumer.getmany(tp, timeout_ms=500)
            got.extend(batch.get(tp, []))
        check_eq(len(got), N, "records consumed within 30s")
        for i, r in enumerate(got):
            check_eq((r.offset, r.key, r.value, r.timestamp),
                     (i, f"a{i}".encode(), f"aio-{i}".encode(), BASE_TS + i), f"record {i}")
            check_eq(list(r.headers), [("src", b"aiokafka")], f"headers of record {i}")
        consumer.seek(tp, 20)
        batch = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
        check(batch.get(tp), "nothing consumed after seek(20)")
        check_eq(batch[tp][0].offset, 20, "offset after seek(20)")
    finally:
        await consumer.stop()


def main():
    if len(sys.argv) != 3:
        fail(f"usage: {sys.argv[0]} BOOTSTRAP TOPIC")
    bootstrap, topic = sys.argv[1:]
    asyncio.run(asyncio.wait_for(run(bootstrap, topic), 50))
    emit({"records": N})


if __name__ == "__main__":
    main()
