//! A real Prometheus server for a test: started on a free port with a
//! given configuration, queried through its HTTP API, killed on drop.
//! Also reads the PromQL of Rivulet's dashboards and alert rules.

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{metrics::http_get, tools::workspace_root, Background};

/// A running `prometheus`.
pub struct Prometheus {
    addr: String,
    _process: Background,
}

impl Prometheus {
    /// Starts `prometheus` with `config` (a prometheus.yml path), its data in
    /// `dir`, and waits until it answers.
    pub fn start(config: &Path, dir: &Path) -> Prometheus {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("pick a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let process = Background::spawn(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn"),
            dir,
            "prometheus",
        );
        let prometheus = Prometheus {
            addr,
            _process: process,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http_get(&prometheus.addr, "/-/ready"), Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "prometheus did not become ready:\n{}",
                prometheus._process.stderr()
            );
            thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    /// GETs an API path and returns `data`, failing on an error status.
    pub fn api(&self, path: &str) -> Result<Value> {
        let (status, body) = http_get(&self.addr, path)?;
        let v: Value = serde_json::from_str(&body).with_context(|| format!("{path}: {body}"))?;
        if status != 200 || v["status"] != "success" {
            bail!("{path} -> {status}: {body}");
        }
        Ok(v["data"].clone())
    }

    /// Evaluates `expr` now; the result vector.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The alerts Prometheus holds: (name, state) pairs.
    pub fn alerts(&self) -> Result<Vec<(String, String)>> {
        let data = self.api("/api/v1/alerts")?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let name = a["labels"]["alertname"].as_str().unwrap_or_default();
                (
                    name.to_string(),
                    a["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }
}

/// Percent-encodes a query parameter value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The monitoring files' directory.
pub fn monitoring_dir() -> PathBuf {
    workspace_root().join("manifests/monitoring")
}

/// Every panel query of every dashboard: (dashboard uid, panel title, expr).
pub fn dashboard_queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let dir = monitoring_dir().join("dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dashboards directory")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read dashboard");
        let d: Value = serde_json::from_str(&text).expect("dashboard JSON");
        let uid = d["uid"].as_str().unwrap_or_default().to_string();
        for panel in d["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.push((
                    uid.clone(),
                    panel["title"].as_str().unwrap_or_default().to_string(),
                    target["expr"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out
}

/// Every alert of the rules file: (name, expr).
pub fn alert_rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(monitoring_dir().join("rivulet-rules.yaml"))
        .expect("read rivulet-rules.yaml");
    let rules: Value = serde_saphyr::from_str(&text).expect("rules YAML");
    rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["alert"].as_str().unwrap_or_default().to_string(),
                r["expr"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The rules file with every `for:` shortened to `for_`, for a test that
/// cannot wait minutes.
pub fn rules_with_short_for(for_: &str) -> String {
    let text = std::fs::read_to_string(monitoring_dir().join("rivulet-rules.yaml"))
        .expect("read rivulet-rules.yaml");
    text.lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: {for_}", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A dashboard query with its variables set: every namespace and cluster,
/// and `rate_interval` for `$__rate_interval`.
pub fn resolve_variables(expr: &str, rate_interval: &str) -> String {
    expr.replace("$namespace", ".*")
        .replace("$cluster", ".*")
        .replace("$__rate_interval", rate_interval)
}
