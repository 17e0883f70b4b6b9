#!/usr/bin/env python3
"""Generates Rivulet's Grafana dashboards and the monitoring manifests.

Sources: the dashboards defined below, and rivulet-rules.yaml (written by
hand). Outputs, all committed:

- manifests/monitoring/dashboards/*.json: Grafana dashboards (import them);
- manifests/monitoring/grafana-dashboards.yaml: the same as ConfigMaps with
  the Grafana sidecar's `grafana_dashboard: "1"` label;
- manifests/monitoring/prometheus-rule.yaml: rivulet-rules.yaml as a
  Prometheus operator PrometheusRule;
- charts/rivulet/files/monitoring/: copies the chart's templates read.

    python3 manifests/monitoring/generate.py          # write
    python3 manifests/monitoring/generate.py --check  # exit 1 if stale

Standard library only. tests/tests/monitoring_files.rs runs --check.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHART_FILES = ROOT / "charts/rivulet/files/monitoring"

# Label filters every broker query carries; `$namespace` and `$cluster`
# are dashboard variables over the scrape labels.
S = 'namespace=~"$namespace",cluster=~"$cluster"'
RATE = "$__rate_interval"
# Per-partition panels leave out Kafka's internal topics, whose many
# partitions would drown the users' own.
USER = ',topic!~"__.*"'


# What a time series' value axis is titled when the panel does not say:
# the unit's tick labels already carry bytes, seconds and percent; counts
# ("short") need the panel's own word (records, partitions, ...).
AXIS = {"Bps": "bytes/s", "bytes": "bytes", "s": "seconds", "ms": "milliseconds",
        "percentunit": "", "ops": "per second", "reqps": "requests/s", "short": ""}


def p(title, unit, *targets, kind="timeseries", w=8, h=7, desc="", axis=None):
    """A panel: targets are (expr, legend) pairs; `axis` titles the value axis."""
    return {"title": title, "unit": unit, "targets": targets, "kind": kind, "w": w, "h": h, "desc": desc,
            "axis": AXIS[unit] if axis is None else axis}


def stat(title, unit, expr, desc=""):
    return p(title, unit, (expr, title), kind="stat", w=4, h=4, desc=desc)


def q99(metric, by, extra=""):
    sel = S + extra
    return f"histogram_quantile(0.99, sum by ({by}, le) (rate({metric}_bucket{{{sel}}}[{RATE}])))"


OVERVIEW = [
    stat("Brokers up", "short", f"count(kafka_broker_info{{{S}}})"),
    stat("Active controllers", "short", f"sum(kafka_controller_kafkacontroller_activecontrollercount{{{S}}})"),
    stat("Offline partitions", "short", f"sum(kafka_controller_kafkacontroller_offlinepartitionscount{{{S}}})"),
    stat("Under-replicated partitions", "short", f"sum(kafka_server_replicamanager_underreplicatedpartitions{{{S}}})"),
    stat("Under min ISR", "short", f"sum(kafka_server_replicamanager_underminisrpartitioncount{{{S}}})"),
    stat("Fenced brokers", "short", f"sum(kafka_controller_kafkacontroller_fencedbrokercount{{{S}}})"),
    p("Bytes in / out", "Bps",
      (f"sum(rate(kafka_server_brokertopicmetrics_bytesin_total{{{S}}}[{RATE}]))", "in"),
      (f"sum(rate(kafka_server_brokertopicmetrics_bytesout_total{{{S}}}[{RATE}]))", "out")),
    p("Records in", "short",
      (f"sum by (pod) (rate(kafka_server_brokertopicmetrics_messagesin_total{{{S}}}[{RATE}]))", "{{pod}}"),
      axis="records/s"),
    p("Request latency p99", "s",
      (q99("kafka_network_requestmetrics_totaltime_seconds", "request", ',request=~"Produce|Fetch|OffsetCommit"'), "{{request}}")),
    p("Consumer lag by group", "short",
      (f"sum by (consumergroup) (kafka_consumergroup_lag_sum{{{S}}})", "{{consumergroup}}"), axis="records"),
    p("Log dir free", "percentunit",
      (f"min by (pod) (kafka_log_logdir_free_bytes{{{S}}} / kafka_log_logdir_total_bytes{{{S}}})", "{{pod}}")),
    p("Partitions and leaders", "short",
      (f"sum by (pod) (kafka_server_replicamanager_partitioncount{{{S}}})", "partitions {{pod}}"),
      (f"sum by (pod) (kafka_server_replicamanager_leadercount{{{S}}})", "leaders {{pod}}"), axis="partitions"),
]

# The operator exports process_* series too, and its target may match the
# variables (it has no `cluster` label, which ".*" matches): broker process
# panels keep the targets that are brokers.
BROKER_TARGET = f"on (job, instance) kafka_broker_info{{{S}}}"

BROKERS = [
    p("CPU", "percentunit", (f"rate(process_cpu_seconds_total{{{S}}}[{RATE}]) and {BROKER_TARGET}", "{{pod}}")),
    p("Resident memory", "bytes", (f"process_resident_memory_bytes{{{S}}} and {BROKER_TARGET}", "{{pod}}")),
    p("Open files and threads", "short", (f"process_open_fds{{{S}}} and {BROKER_TARGET}", "files {{pod}}"),
      (f"process_threads{{{S}}} and {BROKER_TARGET}", "threads {{pod}}")),
    p("Connections by listener", "short",
      (f"sum by (pod, listener) (kafka_server_socket_server_metrics_connection_count{{{S}}})", "{{pod}} {{listener}}"),
      axis="connections"),
    p("Worker idle ratio", "percentunit",
      (f"kafka_server_kafkarequesthandlerpool_requesthandleravgidle_percent{{{S}}}", "{{pod}}")),
    p("Requests by API", "reqps",
      (f"sum by (request) (rate(kafka_network_requestmetrics_requests_total{{{S}}}[{RATE}])) > 0", "{{request}}")),
    p("Produce phases p99", "s",
      (q99("kafka_network_requestmetrics_requestqueuetime_seconds", "request", ',request="Produce"'), "queue"),
      (q99("kafka_network_requestmetrics_localtime_seconds", "request", ',request="Produce"'), "local"),
      (q99("kafka_network_requestmetrics_remotetime_seconds", "request", ',request="Produce"'), "remote (acks=all)"),
      (q99("kafka_network_requestmetrics_responsesendtime_seconds", "request", ',request="Produce"'), "send")),
    p("Fetch phases p99", "s",
      (q99("kafka_network_requestmetrics_localtime_seconds", "request", ',request="Fetch"'), "local"),
      (q99("kafka_network_requestmetrics_remotetime_seconds", "request", ',request="Fetch"'), "remote (long poll)"),
      (q99("kafka_network_requestmetrics_responsesendtime_seconds", "request", ',request="Fetch"'), "send")),
    p("Disk writes", "Bps",
      (f"rate(kafka_server_kafkaserver_linux_disk_write_bytes{{{S}}}[{RATE}])", "{{pod}}")),
    p("fsync latency p99", "s", (q99("kafka_log_logflushstats_logflush_seconds", "pod"), "{{pod}}")),
    p("fsyncs", "ops",
      (f"sum by (pod) (rate(kafka_log_logflushstats_logflush_seconds_count{{{S}}}[{RATE}]))", "{{pod}}")),
    p("Log dir free bytes", "bytes", (f"kafka_log_logdir_free_bytes{{{S}}}", "free {{pod}}"),
      (f"kafka_log_logdir_size_bytes{{{S}}}", "data {{pod}}")),
]

TOPICS = [
    p("Bytes in by topic", "Bps",
      (f"sum by (topic) (rate(kafka_server_brokertopicmetrics_bytesin_total{{{S}}}[{RATE}]))", "{{topic}}")),
    p("Bytes out by topic", "Bps",
      (f"sum by (topic) (rate(kafka_server_brokertopicmetrics_bytesout_total{{{S}}}[{RATE}]))", "{{topic}}")),
    p("Records in by topic", "short",
      (f"sum by (topic) (rate(kafka_server_brokertopicmetrics_messagesin_total{{{S}}}[{RATE}]))", "{{topic}}"),
      axis="records/s"),
    p("Log size by topic (all replicas)", "bytes",
      (f"sum by (topic) (kafka_log_log_size{{{S}}})", "{{topic}}")),
    p("Partitions by topic", "short", (f"sum by (topic) (kafka_topic_partitions{{{S}}})", "{{topic}}"),
      axis="partitions"),
    p("Failed produce / fetch requests", "reqps",
      (f"sum by (topic) (rate(kafka_server_brokertopicmetrics_failedproducerequests_total{{{S}}}[{RATE}]))", "produce {{topic}}"),
      (f"sum by (topic) (rate(kafka_server_brokertopicmetrics_failedfetchrequests_total{{{S}}}[{RATE}]))", "fetch {{topic}}")),
    p("High watermark by partition", "short",
      (f"sum by (topic, partition) (kafka_topic_partition_current_offset{{{S}{USER}}})", "{{topic}}/{{partition}}"),
      axis="offset", desc="Internal topics (__consumer_offsets, ...) left out."),
    p("Smallest ISR by topic", "short",
      (f"min by (topic) (kafka_topic_partition_in_sync_replica{{{S}}})", "{{topic}}"),
      axis="replicas", desc="In-sync replicas of the topic's partition with the fewest."),
]

GROUPS = [
    p("Lag by group and topic", "short",
      (f"sum by (consumergroup, topic) (kafka_consumergroup_lag_sum{{{S}}})", "{{consumergroup}} {{topic}}"), w=12,
      axis="records"),
    p("Lag by partition", "short",
      (f"sum by (consumergroup, topic, partition) (kafka_consumergroup_lag{{{S}}})",
       "{{consumergroup}} {{topic}}/{{partition}}"), w=12, axis="records"),
    p("Consumption rate", "short",
      (f"sum by (consumergroup, topic) (rate(kafka_consumergroup_current_offset{{{S}}}[{RATE}]))",
       "{{consumergroup}} {{topic}}"), axis="records/s"),
    p("Members", "short", (f"sum by (consumergroup) (kafka_consumergroup_members{{{S}}})", "{{consumergroup}}"),
      axis="members"),
    p("Groups by state", "short",
      (f"sum by (state) (kafka_coordinator_group_groupmetadatamanager_numgroups{{{S}}})", "{{state}}"), axis="groups"),
    p("Rebalances and commits", "ops",
      (f"sum(rate(kafka_server_group_coordinator_metrics_group_completed_rebalance_total{{{S}}}[{RATE}]))", "rebalances"),
      (f"sum(rate(kafka_server_group_coordinator_metrics_offset_commit_total{{{S}}}[{RATE}]))", "offset commits")),
]

REPLICATION = [
    p("Under-replicated partitions", "short",
      (f"sum by (pod) (kafka_server_replicamanager_underreplicatedpartitions{{{S}}})", "{{pod}}"), axis="partitions"),
    p("ISR shrinks / expands", "ops",
      (f"sum by (pod) (rate(kafka_server_replicamanager_isrshrinks_total{{{S}}}[{RATE}]))", "shrinks {{pod}}"),
      (f"sum by (pod) (rate(kafka_server_replicamanager_isrexpands_total{{{S}}}[{RATE}]))", "expands {{pod}}")),
    p("Max follower lag", "short", (f"kafka_server_replicafetchermanager_maxlag{{{S}}}", "{{pod}}"), axis="records"),
    p("Reassignments", "short",
      (f"sum(kafka_server_replicamanager_reassigningpartitions{{{S}}})", "partitions reassigning"),
      (f"sum(rivulet_reassignment_adding_replicas_pending{{{S}}})", "replicas not yet in sync"), axis="partitions"),
    p("Quorum role", "short",
      (f"max by (pod, current_state) (kafka_server_raftmetrics_current_state{{{S}}}) > 0", "{{pod}} {{current_state}}")),
    p("Quorum epoch and leader", "short",
      (f"max(kafka_server_raftmetrics_current_epoch{{{S}}})", "epoch"),
      (f"max(kafka_server_raftmetrics_current_leader{{{S}}})", "leader id")),
    p("Metadata log offsets", "short",
      (f"kafka_server_raftmetrics_high_watermark{{{S}}}", "committed {{pod}}"),
      (f"kafka_server_raftmetrics_log_end_offset{{{S}}}", "applied {{pod}}"), axis="offset"),
    p("Metadata commit latency", "ms",
      (f"kafka_server_raftmetrics_commit_latency_avg{{{S}}}", "{{pod}}")),
    p("Quorum traffic", "Bps",
      (f"rate(kafka_server_raftchannelmetrics_outgoing_byte_total{{{S}}}[{RATE}])", "out {{pod}}"),
      (f"rate(kafka_server_raftchannelmetrics_incoming_byte_total{{{S}}}[{RATE}])", "in {{pod}}")),
]

OP = 'namespace=~"$namespace"'
# The operator's process series are told from the brokers' by their scrape
# target, which also serves an operator-only series; the job name depends
# on how it is scraped (the chart's ServiceMonitor makes it the Service's).
OPERATOR_TARGET = f"rivulet_operator_leader{{{OP}}}"
OPERATOR = [
    p("Reconciles", "ops",
      (f"sum by (controller) (rate(rivulet_operator_reconciles_total{{{OP}}}[{RATE}]))", "{{controller}}")),
    p("Reconcile failures", "ops",
      (f"sum by (controller, error) (rate(rivulet_operator_reconcile_failures_total{{{OP}}}[{RATE}]))",
       "{{controller}} {{error}}")),
    p("Reconcile duration p99", "s",
      (f"histogram_quantile(0.99, sum by (controller, le) "
       f"(rate(rivulet_operator_reconcile_duration_seconds_bucket{{{OP}}}[{RATE}])))", "{{controller}}")),
    p("Clusters by state", "short", (f"sum by (state) (rivulet_operator_clusters{{{OP}}})", "{{state}}"),
      axis="KafkaClusters"),
    p("Leader", "short", (f"max by (pod) (rivulet_operator_leader{{{OP}}})", "{{pod}}")),
    p("Operator memory", "bytes",
      (f"process_resident_memory_bytes{{{OP}}} and on (job, instance) {OPERATOR_TARGET}", "{{pod}}")),
    p("Operator CPU", "percentunit",
      (f"rate(process_cpu_seconds_total{{{OP}}}[{RATE}]) and on (job, instance) {OPERATOR_TARGET}", "{{pod}}")),
]

DASHBOARDS = [
    ("rivulet-overview", "Rivulet / Cluster overview", OVERVIEW, "kafka_broker_info"),
    ("rivulet-brokers", "Rivulet / Brokers", BROKERS, "kafka_broker_info"),
    ("rivulet-topics", "Rivulet / Topics", TOPICS, "kafka_broker_info"),
    ("rivulet-consumer-groups", "Rivulet / Consumer groups and lag", GROUPS, "kafka_broker_info"),
    ("rivulet-replication", "Rivulet / Replication and quorum", REPLICATION, "kafka_broker_info"),
    ("rivulet-operator", "Rivulet / Operator", OPERATOR, "rivulet_operator_reconciles_total"),
]

DS = {"type": "prometheus", "uid": "${datasource}"}


def variables(anchor, with_cluster):
    v = [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0},
        {"name": "namespace", "label": "Namespace", "type": "query", "datasource": DS,
         "query": {"query": f"label_values({anchor}, namespace)", "refId": "namespace"},
         "definition": f"label_values({anchor}, namespace)", "refresh": 2, "includeAll": True,
         "multi": True, "allValue": ".*", "current": {}, "hide": 0, "sort": 1},
    ]
    if with_cluster:
        q = f'label_values({anchor}{{namespace=~"$namespace"}}, cluster)'
        v.append({"name": "cluster", "label": "Cluster", "type": "query", "datasource": DS,
                  "query": {"query": q, "refId": "cluster"}, "definition": q, "refresh": 2,
                  "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "hide": 0, "sort": 1})
    return v


def panel(pid, x, y, spec):
    targets = [
        {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
        for i, (expr, legend) in enumerate(spec["targets"])
    ]
    out = {
        "id": pid, "type": spec["kind"], "title": spec["title"], "datasource": DS,
        "gridPos": {"h": spec["h"], "w": spec["w"], "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": spec["unit"]}, "overrides": []},
        "targets": targets,
    }
    if spec["desc"]:
        out["description"] = spec["desc"]
    if spec["kind"] == "timeseries":
        out["fieldConfig"]["defaults"]["custom"] = {"axisLabel": spec["axis"], "fillOpacity": 10}
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                          "tooltip": {"mode": "multi", "sort": "desc"}}
    else:
        out["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                          "colorMode": "value", "graphMode": "none"}
    return out


def dashboard(uid, title, specs, anchor):
    panels, x, y, row_h = [], 0, 0, 0
    for i, spec in enumerate(specs, start=1):
        if x + spec["w"] > 24:
            x, y, row_h = 0, y + row_h, 0
        panels.append(panel(i, x, y, spec))
        x += spec["w"]
        row_h = max(row_h, spec["h"])
    return {
        "uid": uid, "title": title, "tags": ["rivulet", "kafka"], "timezone": "browser",
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables(anchor, uid != "rivulet-operator")},
        "annotations": {"list": []},
        "panels": panels,
    }


def indent(text, n):
    pad = " " * n
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))


def outputs():
    files = {}
    configmaps = ["# Rivulet's Grafana dashboards as ConfigMaps for the Grafana sidecar\n"
                  "# (label grafana_dashboard: \"1\"). Generated by generate.py; do not edit.\n"]
    for uid, title, specs, anchor in DASHBOARDS:
        text = json.dumps(dashboard(uid, title, specs, anchor), indent=2) + "\n"
        files[HERE / "dashboards" / f"{uid}.json"] = text
        files[CHART_FILES / "dashboards" / f"{uid}.json"] = text
        configmaps.append(
            f"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {uid}-dashboard\n"
            f"  labels:\n    grafana_dashboard: \"1\"\n    app.kubernetes.io/part-of: rivulet\n"
            f"data:\n  {uid}.json: |-\n{indent(text.rstrip(), 4)}\n")
    files[HERE / "grafana-dashboards.yaml"] = "".join(configmaps)
    rules = (HERE / "rivulet-rules.yaml").read_text()
    files[CHART_FILES / "rivulet-rules.yaml"] = rules
    body = "\n".join(l for l in rules.splitlines() if not l.startswith("#"))
    files[HERE / "prometheus-rule.yaml"] = (
        "# rivulet-rules.yaml as a Prometheus operator PrometheusRule. Generated by\n"
        "# generate.py; do not edit. Add the labels your Prometheus selects rules by.\n"
        "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: rivulet\n"
        "  labels:\n    app.kubernetes.io/part-of: rivulet\nspec:\n" + indent(body.strip() + "\n", 2))
    return files


def main(argv):
    check = "--check" in argv
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("stale, regenerate with `python3 manifests/monitoring/generate.py`: " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
