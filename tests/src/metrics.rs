//! Scraping the broker's Prometheus endpoint with a plain HTTP/1.0 GET and
//! picking values out of the text exposition format.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use anyhow::{bail, Context, Result};

/// GETs `path` from `addr` (`host:port`) and returns (status code, body).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).context("read HTTP response")?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("malformed HTTP response: {text:?}");
    };
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// One sample line of the exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels in order of appearance.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the sample lines of a `/metrics` body (comments skipped). Label
/// values with escaped quotes are not expected from this broker and not
/// handled.
pub fn parse_samples(body: &str) -> Vec<Sample> {
    body.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.find('}')?;
            let labels = line[open + 1..close]
                .split(',')
                .filter(|kv| !kv.trim().is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                })
                .collect();
            (&line[..open], labels, &line[close + 1..])
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, Vec::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.trim().to_string(),
        labels,
        value,
    })
}

/// The samples named `name` whose labels include all of `labels`.
pub fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_values() {
        let body = "# HELP x y\n# TYPE a_total counter\na_total{topic=\"t1\",b=\"c\"} 12\nup 1\n";
        let s = parse_samples(body);
        assert_eq!(s.len(), 2);
        assert_eq!(find(&s, "a_total", &[("topic", "t1")])[0].value, 12.0);
        assert_eq!(find(&s, "up", &[])[0].value, 1.0);
    }
}
