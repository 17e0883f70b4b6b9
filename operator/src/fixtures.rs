//! Test helpers: custom resources from YAML literals, and a fake API
//! server behind kube's mock transport for reconcile tests.

use crate::{
    crd::KafkaCluster,
    validate::{validate, OperatorConfig, ValidatedCluster},
};

/// A three-broker NodePort spec with a per-broker override for broker 2.
pub const NODE_PORT_SPEC: &str = "replicas: 3
listeners:
  external:
    type: NodePort
    nodePortBase: 31090
    host: kafka.example.test
    brokers:
      - id: 2
        host: node-c.example.test
        port: 32000";

/// A `KafkaCluster` named `demo` in namespace `kafka` with the given spec
/// (YAML, as a user would write under `spec:`).
pub fn cluster_from_yaml(spec: &str) -> KafkaCluster {
    let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    let manifest = format!(
        "apiVersion: rivulet.dev/v1alpha1
kind: KafkaCluster
metadata:
  name: demo
  namespace: kafka
  uid: 3f1c7d2e-0000-4000-8000-00000000d3e0
  generation: 1
spec:
{indented}"
    );
    serde_saphyr::from_str(&manifest).expect("test spec is valid YAML for a KafkaCluster")
}

/// [`cluster_from_yaml`], validated with the default operator config.
pub fn validated(spec: &str) -> ValidatedCluster {
    validate(&cluster_from_yaml(spec), &OperatorConfig::default()).expect("test spec is valid")
}

pub use fake::{FakeApi, FakeKafka};

/// An in-memory Kubernetes API server and Kafka cluster for reconcile tests.
mod fake {
    use std::{
        collections::BTreeMap,
        sync::{Arc, Mutex},
    };

    use futures::future::BoxFuture;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use rivulet_wire::error::ClientError;
    use serde_json::{json, Value};
    use tokio::task::JoinHandle;

    use crate::controller::kafka::{BrokerView, ClusterInfo, KafkaAdmin, TopicState};

    /// One request the fake API server answered.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Call {
        /// HTTP method.
        pub method: String,
        /// Path without the query.
        pub path: String,
        /// Decoded query parameters.
        pub query: BTreeMap<String, String>,
        /// JSON body (Null when empty).
        pub body: Value,
    }

    impl Call {
        /// `METHOD path`, the shape scenarios are written in.
        pub fn line(&self) -> String {
            format!("{} {}", self.method, self.path)
        }
    }

    #[derive(Default)]
    struct State {
        objects: BTreeMap<String, Value>,
        /// Status the "cluster" reports for an object, merged into every
        /// answer about it (what a kubelet or controller would write).
        statuses: BTreeMap<String, Value>,
        log: Vec<Call>,
        resource_version: u64,
    }

    /// A fake API server behind `tower_test`'s mock service: it stores what
    /// is applied, answers GET/LIST from that, and logs every call.
    pub struct FakeApi {
        state: Arc<Mutex<State>>,
        _task: JoinHandle<()>,
    }

    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn not_found(path: &str) -> (StatusCode, Value) {
        (
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": format!("{path} not found"), "reason": "NotFound", "code": 404}),
        )
    }

    fn matches_selector(object: &Value, selector: Option<&String>) -> bool {
        let Some(selector) = selector else {
            return true;
        };
        selector.split(',').filter(|s| !s.is_empty()).all(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            object["metadata"]["labels"][k].as_str() == Some(v)
        })
    }

    impl State {
        fn view(&self, path: &str) -> Option<Value> {
            let mut object = self.objects.get(path)?.clone();
            if let Some(status) = self.statuses.get(path) {
                object["status"] = status.clone();
            }
            Some(object)
        }

        fn bump(&mut self, object: &mut Value) {
            self.resource_version += 1;
            object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        }

        fn handle(&mut self, call: &Call) -> (StatusCode, Value) {
            let path = call.path.as_str();
            match call.method.as_str() {
                "GET" => {
                    if let Some(object) = self.view(path) {
                        return (StatusCode::OK, object);
                    }
                    // A collection: list its direct children.
                    let prefix = format!("{path}/");
                    let items: Vec<Value> = self
                        .objects
                        .keys()
                        .filter(|k| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
                        .filter_map(|k| self.view(k))
                        .filter(|o| matches_selector(o, call.query.get("labelSelector")))
                        .collect();
                    let is_collection = path
                        .rsplit('/')
                        .next()
                        .is_some_and(|last| last.ends_with('s'))
                        && path.matches('/').count() % 2 == 1;
                    if items.is_empty() && !is_collection {
                        return not_found(path);
                    }
                    (
                        StatusCode::OK,
                        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                    )
                }
                "PATCH" if call.body.is_array() => {
                    // A JSON patch (what kube's finalizer helper sends).
                    let Some(mut object) = self.objects.get(path).cloned() else {
                        return not_found(path);
                    };
                    for op in call.body.as_array().unwrap() {
                        let pointer = op["path"].as_str().unwrap_or("");
                        let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
                        let target = match object.pointer_mut(parent) {
                            Some(t) => t,
                            None if op["op"] == "add" => {
                                object["metadata"]["finalizers"] = json!([]);
                                object.pointer_mut(parent).unwrap()
                            }
                            None => continue,
                        };
                        match (op["op"].as_str().unwrap_or(""), target) {
                            ("add" | "replace", Value::Object(map)) => {
                                map.insert(last.to_string(), op["value"].clone());
                            }
                            ("add", Value::Array(items)) => items.push(op["value"].clone()),
                            ("remove", Value::Object(map)) => {
                                map.remove(last);
                            }
                            ("remove", Value::Array(items)) => {
                                if let Ok(i) = last.parse::<usize>() {
                                    if i < items.len() {
                                        items.remove(i);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    self.bump(&mut object);
                    self.objects.insert(path.to_string(), object.clone());
                    (StatusCode::OK, object)
                }
                "PATCH" => {
                    if let Some(base) = path.strip_suffix("/status") {
                        let Some(mut object) = self.objects.get(base).cloned() else {
                            return not_found(base);
                        };
                        object["status"] = call.body["status"].clone();
                        self.bump(&mut object);
                        self.objects.insert(base.to_string(), object.clone());
                        return (StatusCode::OK, self.view(base).unwrap_or(object));
                    }
                    let mut object = call.body.clone();
                    if let Some(old) = self.objects.get(path) {
                        object["metadata"]["uid"] = old["metadata"]["uid"].clone();
                        if let Some(status) = old.get("status") {
                            object["status"] = status.clone();
                        }
                    } else {
                        object["metadata"]["uid"] = json!(format!("uid-{}", self.objects.len()));
                    }
                    self.bump(&mut object);
                    self.objects.insert(path.to_string(), object);
                    (StatusCode::OK, self.view(path).unwrap_or_default())
                }
                "POST" => {
                    let mut object = call.body.clone();
                    let name = object["metadata"]["name"]
                        .as_str()
                        .unwrap_or("unnamed")
                        .to_string();
                    let full = format!("{path}/{name}");
                    if self.objects.contains_key(&full) {
                        return (
                            StatusCode::CONFLICT,
                            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "AlreadyExists", "code": 409}),
                        );
                    }
                    self.bump(&mut object);
                    self.objects.insert(full, object.clone());
                    (StatusCode::CREATED, object)
                }
                "PUT" => {
                    let current = self
                        .objects
                        .get(path)
                        .map(|o| o["metadata"]["resourceVersion"].clone());
                    if current != Some(call.body["metadata"]["resourceVersion"].clone()) {
                        return (
                            StatusCode::CONFLICT,
                            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Conflict", "code": 409}),
                        );
                    }
                    let mut object = call.body.clone();
                    self.bump(&mut object);
                    self.objects.insert(path.to_string(), object.clone());
                    (StatusCode::OK, object)
                }
                "DELETE" => match self.objects.remove(path) {
                    Some(object) => {
                        self.statuses.remove(path);
                        (StatusCode::OK, object)
                    }
                    None => not_found(path),
                },
                other => panic!("fake API server: unexpected method {other}"),
            }
        }
    }

    impl FakeApi {
        /// A client wired to a new fake API server.
        pub fn start() -> (kube::Client, FakeApi) {
            let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
            let state = Arc::new(Mutex::new(State::default()));
            let shared = state.clone();
            let task = tokio::spawn(async move {
                while let Some((request, send)) = handle.next_request().await {
                    let method = request.method().to_string();
                    let path = request.uri().path().to_string();
                    let query = request
                        .uri()
                        .query()
                        .unwrap_or("")
                        .split('&')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').unwrap_or((p, ""));
                            (decode(k), decode(v))
                        })
                        .collect();
                    let bytes = request
                        .into_body()
                        .collect_bytes()
                        .await
                        .expect("request body");
                    let body = if bytes.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&bytes).expect("request body is JSON")
                    };
                    let call = Call {
                        method,
                        path,
                        query,
                        body,
                    };
                    let (status, answer) = {
                        let mut state = shared.lock().unwrap();
                        state.log.push(call.clone());
                        state.handle(&call)
                    };
                    let response = Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap();
                    send.send_response(response);
                }
            });
            (
                kube::Client::new(service, "default"),
                FakeApi { state, _task: task },
            )
        }

        /// Stores an object as if it had been created by someone else.
        pub fn insert(&self, path: &str, object: Value) {
            self.state
                .lock()
                .unwrap()
                .objects
                .insert(path.into(), object);
        }

        /// Sets the status the "cluster" reports for the object at `path`.
        pub fn set_status(&self, path: &str, status: Value) {
            self.state
                .lock()
                .unwrap()
                .statuses
                .insert(path.into(), status);
        }

        /// The object at `path`, with its status.
        pub fn object(&self, path: &str) -> Option<Value> {
            self.state.lock().unwrap().view(path)
        }

        /// Every call so far, and forgets them.
        pub fn take_calls(&self) -> Vec<Call> {
            std::mem::take(&mut self.state.lock().unwrap().log)
        }
    }

    /// A fake Kafka cluster for the [`KafkaAdmin`] seam.
    #[derive(Default)]
    pub struct FakeKafka {
        /// What `cluster_info` answers; `None` is "unreachable".
        pub info: Mutex<Option<ClusterInfo>>,
        /// What each broker reports about itself, by probe address;
        /// an address missing here is unreachable.
        pub brokers: Mutex<BTreeMap<String, BrokerView>>,
        /// Topics by name.
        pub topics: Mutex<BTreeMap<String, TopicState>>,
        /// Admin calls made, e.g. `create_topic orders`.
        pub calls: Mutex<Vec<String>>,
    }

    fn unreachable() -> ClientError {
        ClientError::Timeout
    }

    impl FakeKafka {
        fn record(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }
    }

    impl KafkaAdmin for FakeKafka {
        fn cluster_info<'a>(
            &'a self,
            _: &'a str,
        ) -> BoxFuture<'a, Result<ClusterInfo, ClientError>> {
            Box::pin(async move { self.info.lock().unwrap().clone().ok_or_else(unreachable) })
        }

        fn broker_view<'a>(
            &'a self,
            address: &'a str,
            _: i32,
        ) -> BoxFuture<'a, Result<Option<BrokerView>, ClientError>> {
            Box::pin(async move {
                self.brokers
                    .lock()
                    .unwrap()
                    .get(address)
                    .cloned()
                    .map(Some)
                    .ok_or_else(unreachable)
            })
        }

        fn describe_topic<'a>(
            &'a self,
            _: &'a str,
            topic: &'a str,
        ) -> BoxFuture<'a, Result<Option<TopicState>, ClientError>> {
            Box::pin(async move { Ok(self.topics.lock().unwrap().get(topic).cloned()) })
        }

        fn create_topic<'a>(
            &'a self,
            _: &'a str,
            topic: &'a str,
            partitions: i32,
            replication_factor: i16,
            config: BTreeMap<String, String>,
        ) -> BoxFuture<'a, Result<String, ClientError>> {
            Box::pin(async move {
                self.record(format!(
                    "create_topic {topic} {partitions} {replication_factor}"
                ));
                let state = TopicState {
                    id: format!("id-{topic}"),
                    partitions,
                    replication_factor: i32::from(replication_factor),
                    overrides: config,
                };
                self.topics.lock().unwrap().insert(topic.into(), state);
                Ok(format!("id-{topic}"))
            })
        }

        fn create_partitions<'a>(
            &'a self,
            _: &'a str,
            topic: &'a str,
            total: i32,
        ) -> BoxFuture<'a, Result<(), ClientError>> {
            Box::pin(async move {
                self.record(format!("create_partitions {topic} {total}"));
                if let Some(t) = self.topics.lock().unwrap().get_mut(topic) {
                    t.partitions = total;
                }
                Ok(())
            })
        }

        fn alter_topic_config<'a>(
            &'a self,
            _: &'a str,
            topic: &'a str,
            set: BTreeMap<String, String>,
            delete: Vec<String>,
        ) -> BoxFuture<'a, Result<(), ClientError>> {
            Box::pin(async move {
                self.record(format!(
                    "alter_topic_config {topic} set={set:?} delete={delete:?}"
                ));
                if let Some(t) = self.topics.lock().unwrap().get_mut(topic) {
                    t.overrides.extend(set);
                    t.overrides.retain(|k, _| !delete.contains(k));
                }
                Ok(())
            })
        }

        fn delete_topic<'a>(
            &'a self,
            _: &'a str,
            topic: &'a str,
        ) -> BoxFuture<'a, Result<(), ClientError>> {
            Box::pin(async move {
                self.record(format!("delete_topic {topic}"));
                self.topics.lock().unwrap().remove(topic);
                Ok(())
            })
        }
    }
}
