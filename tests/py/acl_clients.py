"""ACLs with confluent-kafka: AdminClient manages them, users' clients see
them enforced, over a SASL_PLAINTEXT listener with PLAIN users.

Usage: acl_clients.py SCENARIO JSON_OPTIONS

JSON_OPTIONS: {"bootstrap": ..., "prefix": ..., "passwords": {user: pw}}.
Topics and groups are named with the prefix so runs never collide.
Scenarios:

- setup: the super user `admin` creates topics <p>orders-1, <p>orders-2
  and <p>payments, writes 5 records to each, and creates the ACLs:
  alice READ on the prefix <p>orders- and on group <p>app; bob WRITE on
  the prefix <p>orders-, DENY WRITE on <p>orders-2.
- enforce: what each user may and may not do (see the checks); prints the
  error codes seen.
- filters: DescribeAcls with MATCH and PREFIXED filters, DeleteAcls of
  bob's ACLs, after which bob's writes are refused.
- after_restart: alice's ACLs still apply and admin still lists them.
"""

import json
import sys

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from common import Deadline, check, check_eq, emit, fail


def conf(opts, user, extra=None):
    c = {
        "bootstrap.servers": opts["bootstrap"],
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": user,
        "sasl.password": opts["passwords"][user],
    }
    c.update(extra or {})
    return c


def names(opts):
    p = opts["prefix"]
    return p + "orders-1", p + "orders-2", p + "payments"


def produce(opts, user, topic, count, extra=None):
    """Writes `count` records; returns the delivery error codes (None for success)."""
    results = []
    errors = []
    producer = Producer(conf(opts, user, dict({"error_cb": errors.append}, **(extra or {}))))
    for i in range(count):
        producer.produce(
            topic,
            value=f"{user}-{i}".encode(),
            on_delivery=lambda err, msg: results.append(err.code() if err else None),
        )
    deadline = Deadline(30)
    while len(results) < count and not deadline.expired():
        try:
            producer.poll(0.2)
        except KafkaException as e:
            return [e.args[0].code()]
        fatal = [e for e in errors if e.fatal()]
        if fatal:
            return [fatal[0].code()]
    producer.flush(5)
    check(len(results) == count, f"{user}: {len(results)} of {count} deliveries reported")
    return results


def setup(opts):
    admin = AdminClient(conf(opts, "admin"))
    orders1, orders2, payments = names(opts)
    p = opts["prefix"]
    fs = admin.create_topics([NewTopic(t, 1, 1) for t in (orders1, orders2, payments)])
    for f in fs.values():
        f.result(timeout=30)
    for t in (orders1, orders2, payments):
        check_eq(produce(opts, "admin", t, 5), [None] * 5, f"admin writes to {t}")
    acls = [
        AclBinding(ResourceType.TOPIC, p + "orders-", ResourcePatternType.PREFIXED,
                   "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW),
        AclBinding(ResourceType.GROUP, p + "app", ResourcePatternType.LITERAL,
                   "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW),
        AclBinding(ResourceType.TOPIC, p + "orders-", ResourcePatternType.PREFIXED,
                   "User:bob", "*", AclOperation.WRITE, AclPermissionType.ALLOW),
        AclBinding(ResourceType.TOPIC, orders2, ResourcePatternType.LITERAL,
                   "User:bob", "*", AclOperation.WRITE, AclPermissionType.DENY),
    ]
    for f in admin.create_acls(acls, request_timeout=30).values():
        f.result(timeout=30)
    # A user without ALTER on the cluster may not create ACLs.
    alice = AdminClient(conf(opts, "alice"))
    refused = admin_error(alice.create_acls([acls[0]], request_timeout=30))
    check_eq(refused, "CLUSTER_AUTHORIZATION_FAILED", "alice creating an ACL")
    emit({"acls": len(acls)})


def admin_error(futures):
    for f in futures.values():
        try:
            f.result(timeout=30)
        except KafkaException as e:
            return e.args[0].name()
    return None


def consume(opts, user, topic, group, want):
    """Reads up to `want` records of `topic` in `group`; returns (count, error name)."""
    consumer = Consumer(conf(opts, user, {
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }))
    consumer.subscribe([topic])
    got = 0
    error = None
    deadline = Deadline(30)
    while got < want and error is None and not deadline.expired():
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            error = msg.error().name()
            continue
        got += 1
    if got == want and error is None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as e:
            error = e.args[0].name()
    consumer.close()
    return got, error


def visible_topics(opts, user):
    md = AdminClient(conf(opts, user)).list_topics(timeout=30)
    return sorted(t for t in md.topics if t.startswith(opts["prefix"]))


def topic_error(opts, user, topic):
    md = AdminClient(conf(opts, user)).list_topics(topic=topic, timeout=30)
    err = md.topics[topic].error
    return err.name() if err else None


def enforce(opts):
    orders1, orders2, payments = names(opts)
    p = opts["prefix"]
    out = {}
    # alice: READ on the prefix and her group.
    check_eq(consume(opts, "alice", orders1, p + "app", 5), (5, None), "alice reads orders-1")
    check_eq(visible_topics(opts, "alice"), sorted([orders1, orders2]), "alice's topic list")
    out["alice_payments"] = topic_error(opts, "alice", payments)
    check_eq(out["alice_payments"], "TOPIC_AUTHORIZATION_FAILED", "alice describing payments")
    out["alice_other_group"] = consume(opts, "alice", orders1, p + "other", 5)[1]
    check_eq(out["alice_other_group"], "GROUP_AUTHORIZATION_FAILED", "alice in another group")
    # READ does not grant WRITE: an idempotent producer is refused its
    # producer id, a plain one its topic.
    idempotent = {"enable.idempotence": True}
    out["alice_idempotent_write"] = produce(opts, "alice", orders1, 1, idempotent)[0]
    check_eq(out["alice_idempotent_write"], KafkaError.CLUSTER_AUTHORIZATION_FAILED,
             "alice's idempotent producer")
    out["alice_write"] = produce(opts, "alice", orders1, 1, {"enable.idempotence": False})[0]
    check_eq(out["alice_write"], KafkaError.TOPIC_AUTHORIZATION_FAILED, "alice writing")
    # bob: WRITE on the prefix (enough for idempotence), DENY on orders-2.
    check_eq(produce(opts, "bob", orders1, 3, idempotent), [None] * 3, "bob writes orders-1")
    out["bob_denied"] = produce(opts, "bob", orders2, 1, idempotent)[0]
    check_eq(out["bob_denied"], KafkaError.TOPIC_AUTHORIZATION_FAILED, "DENY wins over ALLOW")
    out["bob_payments"] = produce(opts, "bob", payments, 1)[0]
    check_eq(out["bob_payments"], KafkaError.TOPIC_AUTHORIZATION_FAILED, "bob writing payments")
    # A transactional id bob has no ACL for.
    producer = Producer(conf(opts, "bob", {"transactional.id": p + "tx"}))
    try:
        producer.init_transactions(20)
        fail("bob initialised transactions without an ACL on the transactional id")
    except KafkaException as e:
        out["bob_transactional"] = e.args[0].name()
    check_eq(out["bob_transactional"], "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
             "bob's transactional producer")
    emit(out)


def binding_filter(resource_type, name, pattern, principal=None):
    return AclBindingFilter(resource_type, name, pattern, principal, None,
                            AclOperation.ANY, AclPermissionType.ANY)


def filters(opts):
    admin = AdminClient(conf(opts, "admin"))
    orders1, _, _ = names(opts)
    p = opts["prefix"]
    match = admin.describe_acls(
        binding_filter(ResourceType.TOPIC, orders1, ResourcePatternType.MATCH)
    ).result(timeout=30)
    check_eq(sorted((b.principal, b.operation.name) for b in match),
             [("User:alice", "READ"), ("User:bob", "WRITE")], "ACLs that apply to orders-1")
    prefixed = admin.describe_acls(
        binding_filter(ResourceType.ANY, None, ResourcePatternType.PREFIXED)
    ).result(timeout=30)
    check_eq(len([b for b in prefixed if b.name.startswith(p)]), 2, "PREFIXED ACLs")
    fs = admin.delete_acls([binding_filter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:bob")])
    deleted = [b for f in fs.values() for b in f.result(timeout=30)]
    check_eq(len(deleted), 2, "bob's ACLs deleted")
    left = admin.describe_acls(
        binding_filter(ResourceType.ANY, None, ResourcePatternType.ANY)
    ).result(timeout=30)
    check_eq(sorted(b.principal for b in left if b.name.startswith(p)),
             ["User:alice", "User:alice"], "ACLs left")
    check_eq(produce(opts, "bob", orders1, 1, {"enable.idempotence": False})[0],
             KafkaError.TOPIC_AUTHORIZATION_FAILED, "bob after his ACLs were deleted")
    emit({"matched": len(match), "deleted": len(deleted)})


def after_restart(opts):
    orders1, _, payments = names(opts)
    p = opts["prefix"]
    admin = AdminClient(conf(opts, "admin"))
    all_acls = admin.describe_acls(
        binding_filter(ResourceType.ANY, None, ResourcePatternType.ANY)
    ).result(timeout=30)
    check_eq(len([b for b in all_acls if b.name.startswith(p)]), 2, "ACLs after the restart")
    got = consume(opts, "alice", orders1, p + "app", 3)
    check_eq(got[1], None, "alice reads after the restart")
    check_eq(topic_error(opts, "alice", payments), "TOPIC_AUTHORIZATION_FAILED",
             "alice describing payments after the restart")
    emit({"acls": len(all_acls)})


SCENARIOS = {
    "setup": setup,
    "enforce": enforce,
    "filters": filters,
    "after_restart": after_restart,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](json.loads(sys.argv[2]))
