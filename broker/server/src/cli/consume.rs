//! `rivulet consume`: read records and print them, like the console consumer.

use std::time::{Duration, Instant};

use anyhow::bail;
use rivulet_wire::client::OwnedRecord;

use super::ConnectArgs;

/// `rivulet consume ...`
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Topic to read.
    #[arg(long)]
    topic: String,
    /// Only this partition (default: all).
    #[arg(long)]
    partition: Option<i32>,
    /// Start at the earliest offset (default: the latest).
    #[arg(long, conflicts_with_all = ["offset", "from_timestamp"])]
    from_beginning: bool,
    /// Start at this offset (needs --partition unless every partition should start there).
    #[arg(long, conflicts_with = "from_timestamp")]
    offset: Option<i64>,
    /// Start at the first record at or after this time (ms since the epoch).
    #[arg(long)]
    from_timestamp: Option<i64>,
    /// Stop after this many records.
    #[arg(long)]
    max_messages: Option<usize>,
    /// Stop when no record arrives for this long (default: run until killed).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Output: a template (%k key, %v value, %o offset, %p partition, %T timestamp, %h headers) or `json`.
    #[arg(long, default_value = "%v")]
    format: String,
}

/// Renders one record with a format template or as JSON.
pub fn render(format: &str, partition: i32, r: &OwnedRecord) -> String {
    let text =
        |b: &Option<bytes::Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    if format == "json" {
        let headers: serde_json::Map<String, serde_json::Value> = r
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    text(v)
                        .map(serde_json::Value::String)
                        .unwrap_or(serde_json::Value::Null),
                )
            })
            .collect();
        return serde_json::json!({
            "partition": partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": text(&r.key),
            "value": text(&r.value),
            "headers": headers,
        })
        .to_string();
    }
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            if c == '\\' && chars.peek() == Some(&'t') {
                chars.next();
                out.push('\t');
            } else {
                out.push(c);
            }
            continue;
        }
        match chars.next() {
            Some('k') => out.push_str(&text(&r.key).unwrap_or_default()),
            Some('v') => out.push_str(&text(&r.value).unwrap_or_default()),
            Some('o') => out.push_str(&r.offset.to_string()),
            Some('p') => out.push_str(&partition.to_string()),
            Some('T') => out.push_str(&r.timestamp.to_string()),
            Some('h') => {
                let hs: Vec<String> = r
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}={}", text(v).unwrap_or_default()))
                    .collect();
                out.push_str(&hs.join(","));
            }
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Runs `rivulet consume`.
pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let (mut client, topic) = super::connect_to_topic(&args.connect, &args.topic).await?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) if topic.partitions.iter().any(|x| x.partition == p) => vec![p],
        Some(p) => bail!("topic `{}` has no partition {p}", args.topic),
        None => topic.partitions.iter().map(|p| p.partition).collect(),
    };
    let mut positions = Vec::new();
    for &p in &partitions {
        let start = if let Some(o) = args.offset {
            o
        } else if let Some(ts) = args.from_timestamp {
            let (offset, _) = client.list_offsets(&args.topic, p, ts).await?;
            if offset < 0 {
                client.list_offsets(&args.topic, p, -1).await?.0
            } else {
                offset
            }
        } else {
            let which = if args.from_beginning { -2 } else { -1 };
            client.list_offsets(&args.topic, p, which).await?.0
        };
        positions.push((p, start));
    }
    let mut printed = 0usize;
    let mut last_data = Instant::now();
    loop {
        let mut got_any = false;
        for (p, position) in positions.iter_mut() {
            let result = client
                .fetch(&args.topic, *p, *position, 1 << 20, 100)
                .await?;
            // Past whole batches, not just their records: compaction can
            // leave a batch whose last offsets hold no record.
            let next = result.next_offset;
            for r in result.records {
                if r.offset < *position {
                    continue;
                }
                *position = r.offset + 1;
                println!("{}", render(&args.format, *p, &r));
                printed += 1;
                got_any = true;
                if args.max_messages.is_some_and(|m| printed >= m) {
                    return Ok(());
                }
            }
            *position = (*position).max(next);
        }
        if got_any {
            last_data = Instant::now();
        } else if let Some(t) = args.timeout_ms {
            if last_data.elapsed() >= Duration::from_millis(t) {
                if let Some(m) = args.max_messages {
                    bail!("timed out after {printed} of {m} records");
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn templates_render_fields() {
        let r = OwnedRecord {
            offset: 7,
            timestamp: 99,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
        };
        assert_eq!(
            render("%k=%v@%p/%o %T %h 100%%", 2, &r),
            "k=v@2/7 99 h=x 100%"
        );
        let json: serde_json::Value = serde_json::from_str(&render("json", 2, &r)).unwrap();
        assert_eq!(json["offset"], 7);
        assert_eq!(json["headers"]["h"], "x");
    }
}
