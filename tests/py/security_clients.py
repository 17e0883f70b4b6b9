"""confluent-kafka (librdkafka) over the broker's secured listeners.

Usage: security_clients.py SCENARIO JSON_OPTIONS

JSON_OPTIONS holds the bootstrap address, the topic and the client
properties (security.protocol, ssl.*, sasl.*) exactly as a user would give
them to librdkafka. Scenarios:

- roundtrip: an idempotent acks=all producer (librdkafka's defaults) writes
  20 records, a consumer reads them back; every record exactly once.
- refused: the client must fail to connect (wrong password, unknown user,
  untrusted or expired certificate, plaintext on a TLS port) within a
  bounded time, with an error naming authentication or transport, never a
  hang; prints the error it saw.
- scram_admin: AdminClient upserts a SCRAM user, describes it, logs in as
  it, deletes it, and sees the login refused afterwards.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from common import Deadline, check, check_eq, emit, fail


def client_conf(opts, extra=None):
    conf = {"bootstrap.servers": opts["bootstrap"]}
    conf.update(opts.get("props", {}))
    conf.update(extra or {})
    return conf


def ensure_topic(admin, topic):
    futures = admin.create_topics([NewTopic(topic, 1, 1)], request_timeout=30)
    for f in futures.values():
        try:
            f.result(timeout=30)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def roundtrip(opts):
    topic = opts["topic"]
    admin = AdminClient(client_conf(opts))
    ensure_topic(admin, topic)
    errors = []
    producer = Producer(client_conf(opts, {"error_cb": errors.append}))
    delivered = []

    def on_delivery(err, msg):
        if err is not None:
            fail(f"delivery failed: {err}")
        delivered.append(msg.offset())

    for i in range(20):
        producer.produce(topic, value=f"record-{i}".encode(), on_delivery=on_delivery)
    left = producer.flush(60)
    check_eq(left, 0, "records still queued after flush")
    check_eq(len(delivered), 20, "delivered records")
    consumer = Consumer(
        client_conf(
            opts,
            {"group.id": f"sec-{topic}", "auto.offset.reset": "earliest", "enable.auto.commit": False},
        )
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen = []
    deadline = Deadline(60)
    while len(seen) < 20 and not deadline.expired():
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            fail(f"consume error: {msg.error()}")
        seen.append(msg.value().decode())
    consumer.close()
    check_eq(seen, [f"record-{i}" for i in range(20)], "records read back")
    emit({"produced": len(delivered), "consumed": len(seen)})


def paced(opts):
    """Produces 40 records, one every 0.25 s, then reads them back: long
    enough for several SASL sessions when connections.max.reauth.ms is short."""
    topic = opts["topic"]
    admin = AdminClient(client_conf(opts))
    ensure_topic(admin, topic)
    errors = []
    producer = Producer(client_conf(opts, {"error_cb": errors.append}))
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(str(err))

    for i in range(40):
        producer.produce(topic, value=f"paced-{i}".encode(), on_delivery=on_delivery)
        producer.poll(0)
        time.sleep(0.25)
    check_eq(producer.flush(60), 0, "records still queued after flush")
    check_eq(failed, [], "failed deliveries")
    consumer = Consumer(client_conf(opts, {"group.id": f"paced-{topic}", "enable.auto.commit": False}))
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen = []
    deadline = Deadline(60)
    while len(seen) < 40 and not deadline.expired():
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            seen.append(msg.value().decode())
    consumer.close()
    check_eq(seen, [f"paced-{i}" for i in range(40)], "records read back")
    emit({"consumed": len(seen), "errors": [str(e) for e in errors]})


def refused(opts):
    errors = []
    conf = client_conf(opts, {"error_cb": errors.append, "socket.timeout.ms": 5000})
    admin = AdminClient(conf)
    started = time.monotonic()
    try:
        md = admin.list_topics(timeout=6)
        fail(f"connected although it must be refused: {len(md.topics)} topics")
    except KafkaException as e:
        seen = e.args[0]
    elapsed = time.monotonic() - started
    check(elapsed < 30, f"refusal took {elapsed:.1f}s")
    texts = [str(seen)] + [str(e) for e in errors]
    codes = [e.code() for e in errors]
    emit({"error": str(seen), "callbacks": texts[1:], "codes": codes, "seconds": round(elapsed, 1)})


def scram_admin(opts):
    admin = AdminClient(client_conf(opts))
    user = opts["new_user"]
    password = opts["new_password"]
    mechanism = ScramMechanism.SCRAM_SHA_512
    info = ScramCredentialInfo(mechanism, 8192)
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(user, info, password.encode())]
    )
    for f in futures.values():
        f.result(timeout=30)
    described = admin.describe_user_scram_credentials([user])[user].result(timeout=30)
    infos = described.scram_credential_infos
    check_eq([(i.mechanism, i.iterations) for i in infos], [(mechanism, 8192)], "described credential")
    login = dict(opts)
    login["props"] = dict(opts["props"])
    login["props"].update({"sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": password})
    md = AdminClient(client_conf(login)).list_topics(timeout=15)
    check(md is not None, "the new user logs in")
    # A duplicate alteration in one request is refused for that user.
    futures = admin.alter_user_scram_credentials(
        [
            UserScramCredentialUpsertion(user, info, b"x"),
            UserScramCredentialDeletion(user, mechanism),
        ]
    )
    try:
        futures[user].result(timeout=30)
        fail("a duplicate alteration was accepted")
    except KafkaException as e:
        check_eq(e.args[0].code(), KafkaError.DUPLICATE_RESOURCE, "duplicate alteration error")
    futures = admin.alter_user_scram_credentials([UserScramCredentialDeletion(user, mechanism)])
    for f in futures.values():
        f.result(timeout=30)
    try:
        admin.describe_user_scram_credentials([user])[user].result(timeout=30)
        fail("a deleted user is still described")
    except KafkaException as e:
        check_eq(e.args[0].code(), KafkaError.RESOURCE_NOT_FOUND, "describe a deleted user")
    try:
        AdminClient(client_conf(login, {"socket.timeout.ms": 10000})).list_topics(timeout=10)
        fail("a deleted user still logs in")
    except KafkaException:
        pass
    emit({"user": user, "created_and_deleted": True})


def main():
    scenario, raw = sys.argv[1], sys.argv[2]
    opts = json.loads(raw)
    {"roundtrip": roundtrip, "paced": paced, "refused": refused, "scram_admin": scram_admin}[scenario](opts)


if __name__ == "__main__":
    main()
