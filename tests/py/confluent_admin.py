"""confluent-kafka AdminClient against a single rivulet broker.

usage: confluent_admin.py SCENARIO BOOTSTRAP TOPIC
SCENARIO: topics | configs | partitions | delete | cluster
"""

import sys

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from common import check, check_eq, emit, fail

TIMEOUT = 15


DYNAMIC_TOPIC = ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def source_of(entry):
    """A config entry's source as an int, whichever form the client gives."""
    return int(getattr(entry.source, "value", entry.source))


def admin_for(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def wait_all(futures):
    return {k: f.result(timeout=TIMEOUT) for k, f in futures.items()}


def expect_error(future, code, what):
    """The future must fail with KafkaError `code`."""
    try:
        future.result(timeout=TIMEOUT)
    except KafkaException as e:
        err = e.args[0]
        check_eq(err.code(), code, f"{what}: error code ({err})")
        return err
    fail(f"{what}: succeeded, expected error {KafkaError(code).name()}")


def expect_some_error(future, what):
    try:
        future.result(timeout=TIMEOUT)
    except KafkaException as e:
        return e.args[0]
    fail(f"{what}: succeeded, expected an error")


def topic_configs(admin, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res])[res].result(timeout=TIMEOUT)


def partitions_of(admin, topic):
    md = admin.list_topics(topic=topic, timeout=TIMEOUT)
    t = md.topics.get(topic)
    check(t is not None, f"list_topics does not show {topic}")
    check(t.error is None, f"list_topics({topic}) error: {t.error}")
    return t.partitions


def scenario_topics(bootstrap, topic):
    admin = admin_for(bootstrap)
    configs = {"retention.ms": "3600000", "cleanup.policy": "delete", "max.message.bytes": "200000"}
    wait_all(admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1, config=configs)],
                                 operation_timeout=10, request_timeout=TIMEOUT))

    again = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                                request_timeout=TIMEOUT)[topic]
    expect_error(again, KafkaError.TOPIC_ALREADY_EXISTS, "creating an existing topic")
    bad_name = admin.create_topics([NewTopic("bad/name", num_partitions=1, replication_factor=1)],
                                   request_timeout=TIMEOUT)["bad/name"]
    expect_error(bad_name, KafkaError.TOPIC_EXCEPTION, "creating a topic named bad/name")
    zero = topic + "-zero"
    no_parts = admin.create_topics([NewTopic(zero, num_partitions=0, replication_factor=1)],
                                   request_timeout=TIMEOUT)[zero]
    expect_error(no_parts, KafkaError.INVALID_PARTITIONS, "creating a topic with 0 partitions")
    bad_cfg = topic + "-badcfg"
    bad_cfg_f = admin.create_topics([NewTopic(bad_cfg, num_partitions=1, replication_factor=1,
                                              config={"retention.ms": "soon"})],
                                    request_timeout=TIMEOUT)[bad_cfg]
    expect_some_error(bad_cfg_f, "creating a topic with retention.ms=soon")

    md = admin.list_topics(timeout=TIMEOUT)
    check(topic in md.topics, f"list_topics lacks {topic}: {sorted(md.topics)}")
    check(zero not in md.topics, f"{zero} was created despite 0 partitions")
    check(bad_cfg not in md.topics, f"{bad_cfg} was created despite an invalid config")
    parts = md.topics[topic].partitions
    check_eq(sorted(parts), [0, 1, 2], "partition ids")
    for p in parts.values():
        check_eq(p.leader, 0, f"leader of partition {p.id}")
        check_eq(list(p.replicas), [0], f"replicas of partition {p.id}")
        check_eq(list(p.isrs), [0], f"ISR of partition {p.id}")
    check_eq(sorted(md.brokers), [0], "broker ids")

    cfg = topic_configs(admin, topic)
    for k, v in configs.items():
        check(k in cfg, f"describe_configs lacks {k}: {sorted(cfg)}")
        check_eq(cfg[k].value, v, f"describe_configs {k}")
        check_eq(source_of(cfg[k]), DYNAMIC_TOPIC, f"source of {k}")
    check("segment.bytes" in cfg, f"describe_configs lacks the default segment.bytes: {sorted(cfg)}")
    check(cfg["segment.bytes"].is_default, "segment.bytes was not set, so it must be a default")

    broker = ConfigResource(ResourceType.BROKER, "0")
    bcfg = admin.describe_configs([broker])[broker].result(timeout=TIMEOUT)
    check(len(bcfg) > 0, "describe_configs(BROKER 0) returned nothing")
    emit({"topic": topic, "configs": len(cfg), "broker_configs": len(bcfg)})


def scenario_configs(bootstrap, topic):
    admin = admin_for(bootstrap)
    wait_all(admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                           config={"retention.ms": "3600000"})],
                                 request_timeout=TIMEOUT))

    # AlterConfigs replaces the whole set of dynamic configs: retention.ms,
    # not named here, must go back to its default.
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"segment.ms": "600000"})
    wait_all(admin.alter_configs([res], request_timeout=TIMEOUT))
    cfg = topic_configs(admin, topic)
    check_eq(cfg["segment.ms"].value, "600000", "segment.ms after alter_configs")
    check_eq(source_of(cfg["segment.ms"]), DYNAMIC_TOPIC, "segment.ms source")
    check(source_of(cfg["retention.ms"]) != DYNAMIC_TOPIC,
          f"alter_configs must replace all dynamic configs, but retention.ms is still "
          f"{cfg['retention.ms'].value} (source {source_of(cfg['retention.ms'])})")

    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "2000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "300000", incremental_operation=AlterConfigOpType.SET),
    ])
    wait_all(admin.incremental_alter_configs([res], request_timeout=TIMEOUT))
    cfg = topic_configs(admin, topic)
    check_eq(cfg["retention.ms"].value, "2000", "retention.ms after incremental SET")
    check_eq(cfg["max.message.bytes"].value, "300000", "max.message.bytes after incremental SET")
    check_eq(cfg["segment.ms"].value, "600000", "segment.ms must survive an incremental alter")

    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("segment.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    wait_all(admin.incremental_alter_configs([res], request_timeout=TIMEOUT))
    cfg = topic_configs(admin, topic)
    check(source_of(cfg["segment.ms"]) != DYNAMIC_TOPIC,
          f"segment.ms still dynamic after DELETE: {cfg['segment.ms'].value}")
    check_eq(cfg["retention.ms"].value, "2000", "retention.ms after deleting segment.ms")

    bad = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET),
    ])
    err = expect_some_error(admin.incremental_alter_configs([bad], request_timeout=TIMEOUT)[bad],
                            "setting an unknown topic config")
    bad_value = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "not-a-number", incremental_operation=AlterConfigOpType.SET),
    ])
    err2 = expect_some_error(
        admin.incremental_alter_configs([bad_value], request_timeout=TIMEOUT)[bad_value],
        "setting retention.ms=not-a-number")
    check_eq(topic_configs(admin, topic)["retention.ms"].value, "2000",
             "retention.ms after a rejected change")
    emit({"unknown_config_error": err.name(), "bad_value_error": err2.name()})


def scenario_partitions(bootstrap, topic):
    admin = admin_for(bootstrap)
    wait_all(admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)],
                                 request_timeout=TIMEOUT))
    wait_all(admin.create_partitions([NewPartitions(topic, 4)], request_timeout=TIMEOUT))
    check_eq(sorted(partitions_of(admin, topic)), [0, 1, 2, 3], "partitions after growing to 4")

    # The new partitions take writes.
    p = Producer({"bootstrap.servers": bootstrap, "topic.metadata.refresh.interval.ms": 500})
    delivered = []
    p.produce(topic, b"to-3", partition=3, on_delivery=lambda err, m: delivered.append((err, m)))
    check_eq(p.flush(TIMEOUT), 0, "messages left after flush")
    check_eq(len(delivered), 1, "delivery reports")
    check(delivered[0][0] is None, f"produce to new partition 3 failed: {delivered[0][0]}")
    check_eq(delivered[0][1].offset(), 0, "offset of the first record in partition 3")

    shrink = admin.create_partitions([NewPartitions(topic, 2)], request_timeout=TIMEOUT)[topic]
    expect_error(shrink, KafkaError.INVALID_PARTITIONS, "shrinking 4 -> 2 partitions")
    same = admin.create_partitions([NewPartitions(topic, 4)], request_timeout=TIMEOUT)[topic]
    expect_error(same, KafkaError.INVALID_PARTITIONS, "'growing' 4 -> 4 partitions")
    missing = topic + "-missing"
    nf = admin.create_partitions([NewPartitions(missing, 3)], request_timeout=TIMEOUT)[missing]
    expect_error(nf, KafkaError.UNKNOWN_TOPIC_OR_PART, "growing a missing topic")
    check_eq(sorted(partitions_of(admin, topic)), [0, 1, 2, 3], "partitions after refused changes")
    emit({"partitions": 4})


def scenario_delete(bootstrap, topic):
    admin = admin_for(bootstrap)
    keep = topic + "-keep"
    wait_all(admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1),
                                  NewTopic(keep, num_partitions=1, replication_factor=1)],
                                 request_timeout=TIMEOUT))
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(3):
        p.produce(topic, f"old-{i}".encode(), partition=0)
    check_eq(p.flush(TIMEOUT), 0, "messages left after flush")

    wait_all(admin.delete_topics([topic], operation_timeout=10, request_timeout=TIMEOUT))
    md = admin.list_topics(timeout=TIMEOUT)
    check(topic not in md.topics, f"{topic} still listed after delete_topics")
    check(keep in md.topics, f"{keep} vanished when deleting {topic}")
    res = ConfigResource(ResourceType.TOPIC, topic)
    expect_error(admin.describe_configs([res])[res], KafkaError.UNKNOWN_TOPIC_OR_PART,
                 "describe_configs of a deleted topic")
    expect_error(admin.delete_topics([topic], request_timeout=TIMEOUT)[topic],
                 KafkaError.UNKNOWN_TOPIC_OR_PART, "deleting a deleted topic")

    # A topic re-created under the same name starts empty.
    wait_all(admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                                 request_timeout=TIMEOUT))
    delivered = []
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(topic, b"new", partition=0, on_delivery=lambda err, m: delivered.append((err, m)))
    check_eq(p.flush(TIMEOUT), 0, "messages left after flush")
    check(delivered and delivered[0][0] is None, f"produce after re-create failed: {delivered}")
    check_eq(delivered[0][1].offset(), 0, "first offset of a re-created topic")
    emit({"deleted": topic})


def scenario_cluster(bootstrap, topic):
    admin = admin_for(bootstrap)
    desc = admin.describe_cluster(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    check(desc.cluster_id, f"describe_cluster: empty cluster id {desc.cluster_id!r}")
    check_eq([n.id for n in desc.nodes], [0], "node ids")
    host, port = bootstrap.rsplit(":", 1)
    check_eq((desc.nodes[0].host, desc.nodes[0].port), (host, int(port)), "node 0 address")
    check(desc.controller is not None, "describe_cluster: no controller")
    check_eq(desc.controller.id, 0, "controller id")
    md = admin.list_topics(timeout=TIMEOUT)
    check_eq(md.cluster_id, desc.cluster_id, "cluster id from Metadata vs DescribeCluster")
    emit({"cluster_id": desc.cluster_id})


def main():
    if len(sys.argv) != 4:
        fail(f"usage: {sys.argv[0]} SCENARIO BOOTSTRAP TOPIC")
    scenario, bootstrap, topic = sys.argv[1:]
    scenarios = {
        "topics": scenario_topics,
        "configs": scenario_configs,
        "partitions": scenario_partitions,
        "delete": scenario_delete,
        "cluster": scenario_cluster,
    }
    if scenario not in scenarios:
        fail(f"unknown scenario {scenario}")
    scenarios[scenario](bootstrap, topic)


if __name__ == "__main__":
    main()
