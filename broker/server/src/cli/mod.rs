//! The client-side commands of the `rivulet` binary: the equivalents of
//! Kafka's `kafka-topics.sh`, `kafka-consumer-groups.sh`, console producer
//! and consumer, and a benchmark.
//! All of them talk to brokers through `rivulet_wire::client`, the same way
//! any Kafka client would.

use std::collections::BTreeMap;

pub mod acl;
pub mod bench;
pub mod consume;
pub mod dev;
pub mod format;
pub mod group;
pub mod produce;
pub mod quorum;
pub mod quota;
pub mod topic;
pub mod transactions;
pub mod user;

/// Where the client commands connect.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Brokers to bootstrap from: host:port[,host:port...].
    #[arg(
        long,
        global = true,
        env = "RIVULET_BOOTSTRAP_SERVER",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_server: String,
    /// Kafka client properties for secured listeners, as Kafka's tools take
    /// them: `security.protocol`, `ssl.truststore.location` (PEM),
    /// `sasl.mechanism` and `sasl.jaas.config` (or librdkafka's names).
    #[arg(
        long,
        global = true,
        env = "RIVULET_COMMAND_CONFIG",
        value_name = "FILE"
    )]
    pub command_config: Option<std::path::PathBuf>,
}

impl ConnectArgs {
    /// A client of the cluster, secured as `--command-config` says.
    pub async fn client(&self) -> anyhow::Result<rivulet_wire::client::Client> {
        use anyhow::Context;
        let security = match &self.command_config {
            None => rivulet_wire::client::ClientSecurity::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("read {}", path.display()))?;
                rivulet_wire::client::ClientSecurity::from_properties(&parse_properties(&text))
                    .with_context(|| format!("--command-config {}", path.display()))?
            }
        };
        rivulet_wire::client::Client::connect_secure(
            &self.bootstrap_server,
            rivulet_wire::client::DEFAULT_CLIENT_ID,
            security,
        )
        .await
        .with_context(|| format!("connect to {}", self.bootstrap_server))
    }
}

/// Connects to the cluster and looks up `topic`, failing with the broker's
/// error (e.g. an unknown topic) in words.
pub async fn connect_to_topic(
    connect: &ConnectArgs,
    topic: &str,
) -> anyhow::Result<(
    rivulet_wire::client::Client,
    rivulet_wire::client::TopicInfo,
)> {
    use anyhow::Context;
    let mut client = connect.client().await?;
    let meta = client.metadata(Some(vec![topic.to_string()])).await?;
    let info = meta
        .topics
        .into_iter()
        .next()
        .context("broker returned no topic metadata")?;
    if info.error_code != 0 {
        anyhow::bail!("topic `{topic}`: {}", code_name(info.error_code));
    }
    Ok((client, info))
}

/// Parses Java-style `.properties` text (`key=value` or `key: value`,
/// `#`/`!` comments) into a map. Continuation lines are not supported.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let idx = l.find(['=', ':'])?;
            Some((l[..idx].trim().to_string(), l[idx + 1..].trim().to_string()))
        })
        .collect()
}

/// Parses repeated `key=value` arguments.
pub fn parse_kv(items: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("{what} `{kv}` is not KEY=VALUE"))
        })
        .collect()
}

/// Kafka's name for an error code, e.g. `UnknownTopicOrPartition (3)`.
pub fn code_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) => format!("{e} ({code})"),
        None => "no error (0)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_like_java() {
        let p = parse_properties("# c\nlog.dirs=/x\n num.partitions : 3 \n! other\nbad\n");
        assert_eq!(p.get("log.dirs").map(String::as_str), Some("/x"));
        assert_eq!(p.get("num.partitions").map(String::as_str), Some("3"));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn kv_requires_equals() {
        assert!(parse_kv(&["a=b".into()], "--config").is_ok());
        assert!(parse_kv(&["ab".into()], "--config").is_err());
    }
}
