"""A KafkaUser's application with confluent-kafka: it logs in with what the
operator's Secret holds, as-is, and does what the user's ACLs allow.

Usage: kafka_user_clients.py SCENARIO JSON_OPTIONS

JSON_OPTIONS: {"bootstrap": ..., "prefix": ..., "username": the KafkaUser's
status.username, "secret": the Secret's data (`password`,
`sasl.jaas.config`), and for a TLS listener "ca": the CA file to trust
(SASL_SSL instead of SASL_PLAINTEXT)}. The user may write and read topic <p>orders in group
<p>app, and nothing else.

Scenarios:

- allowed: the login from `sasl.jaas.config` (as a Java client takes it)
  and the one from `password` are the same; the user writes 3 records to
  <p>orders and reads them back in group <p>app; writing <p>payments and
  reading in group <p>other are refused.
- revoked: the login is refused.
"""

import json
import re
import sys

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from common import Deadline, check, check_eq, emit, fail


def jaas_option(jaas, key):
    m = re.search(key + r'="((?:[^"\\]|\\.)*)"', jaas)
    check(m is not None, f"no {key} in sasl.jaas.config")
    return re.sub(r"\\(.)", r"\1", m.group(1))


def conf(opts, extra=None):
    secret = opts["secret"]
    jaas = secret["sasl.jaas.config"]
    check(jaas.startswith("org.apache.kafka.common.security.scram.ScramLoginModule required "),
          f"a SCRAM JAAS line: {jaas}")
    c = {
        "bootstrap.servers": opts["bootstrap"],
        "security.protocol": "SASL_SSL" if opts.get("ca") else "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": jaas_option(jaas, "username"),
        "sasl.password": jaas_option(jaas, "password"),
    }
    if opts.get("ca"):
        c["ssl.ca.location"] = opts["ca"]
    c.update(extra or {})
    return c


def produce(opts, topic, count):
    """Writes `count` records; returns the delivery error codes (None for success)."""
    results, errors = [], []
    producer = Producer(conf(opts, {"error_cb": errors.append, "enable.idempotence": False}))
    for i in range(count):
        producer.produce(topic, value=f"r{i}".encode(),
                         on_delivery=lambda err, msg: results.append(err.code() if err else None))
    deadline = Deadline(30)
    while len(results) < count and not deadline.expired():
        producer.poll(0.2)
        fatal = [e for e in errors
                 if e.fatal() or e.code() == KafkaError._AUTHENTICATION]
        if fatal:
            return [fatal[0].code()]
    producer.flush(5)
    check(len(results) == count, f"{len(results)} of {count} deliveries reported")
    return results


def consume(opts, topic, group, want):
    """Reads up to `want` records in `group`; returns (count, error name)."""
    consumer = Consumer(conf(opts, {"group.id": group, "auto.offset.reset": "earliest",
                                    "enable.auto.commit": False}))
    consumer.subscribe([topic])
    got, error = 0, None
    deadline = Deadline(30)
    while got < want and error is None and not deadline.expired():
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            error = msg.error().name()
            continue
        got += 1
    consumer.close()
    return got, error


def allowed(opts):
    p = opts["prefix"]
    secret = opts["secret"]
    check_eq(jaas_option(secret["sasl.jaas.config"], "password"), secret["password"],
             "the JAAS line's password is the Secret's password")
    check_eq(jaas_option(secret["sasl.jaas.config"], "username"), opts["username"],
             "the JAAS line's user is status.username")
    out = {}
    check_eq(produce(opts, p + "orders", 3), [None] * 3, "writing orders")
    check_eq(consume(opts, p + "orders", p + "app", 3), (3, None), "reading orders in app")
    out["payments"] = produce(opts, p + "payments", 1)[0]
    check_eq(out["payments"], KafkaError.TOPIC_AUTHORIZATION_FAILED, "writing payments")
    out["other_group"] = consume(opts, p + "orders", p + "other", 3)[1]
    check_eq(out["other_group"], "GROUP_AUTHORIZATION_FAILED", "reading in another group")
    emit(out)


def revoked(opts):
    code = produce(opts, opts["prefix"] + "orders", 1)[0]
    check(code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED),
          f"login refused, got {code}")
    emit({"revoked": str(code)})


def main():
    scenario, opts = sys.argv[1], json.loads(sys.argv[2])
    {"allowed": allowed, "revoked": revoked}.get(scenario, lambda _: fail(scenario))(opts)


if __name__ == "__main__":
    main()
