//! The high watermark checkpoint: Kafka's `replication-offset-checkpoint`
//! file in the data directory, so a restarted replica knows at once how far
//! its log is committed and serves committed reads without waiting for its
//! leader or followers to report.
//!
//! Format, as Kafka writes it: a version line (`0`), a count line, then one
//! `topic partition offset` line per partition. Written atomically (temp
//! file, fsync, rename) every `replica.high.watermark.checkpoint.interval.ms`
//! and on clean shutdown. A missing or unreadable file is not an error: the
//! replica then starts from its log start, as before, and learns the real
//! value from the cluster.
//!
//! A checkpointed value can only be stale (lower than the real one), never
//! ahead of what every in-sync replica had, since only committed high
//! watermarks are written; it is capped at the recovered log end on restore.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
};

/// The file's name inside the data directory.
pub const FILE: &str = "replication-offset-checkpoint";

/// High watermarks by (topic, partition).
pub type HighWatermarks = BTreeMap<(String, i32), i64>;

/// The checkpoint's path in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Reads the checkpoint; empty when it is missing or cannot be parsed.
pub fn read(data_dir: &Path) -> HighWatermarks {
    let path = path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text).unwrap_or_else(|reason| {
            tracing::warn!(file = %path.display(), reason, "ignoring unreadable high watermark checkpoint");
            HighWatermarks::new()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HighWatermarks::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read high watermark checkpoint");
            HighWatermarks::new()
        }
    }
}

/// Parses the file's text.
pub fn parse(text: &str) -> Result<HighWatermarks, &'static str> {
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("0") {
        return Err("unknown version");
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("bad entry count")?;
    let mut out = HighWatermarks::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        // Topic names never contain spaces, so the last two fields are numbers.
        let mut fields = line.rsplitn(3, ' ');
        let offset = fields.next().and_then(|f| f.parse::<i64>().ok());
        let partition = fields.next().and_then(|f| f.parse::<i32>().ok());
        let topic = fields.next();
        match (topic, partition, offset) {
            (Some(t), Some(p), Some(o)) if !t.is_empty() && o >= 0 => {
                out.insert((t.to_string(), p), o);
            }
            _ => return Err("bad entry"),
        }
    }
    if out.len() != count {
        return Err("entry count does not match");
    }
    Ok(out)
}

/// Writes the checkpoint atomically.
pub fn write(data_dir: &Path, hws: &HighWatermarks) -> std::io::Result<()> {
    let mut text = format!("0\n{}\n", hws.len());
    for ((topic, partition), hw) in hws {
        text.push_str(&format!("{topic} {partition} {hw}\n"));
    }
    let target = path(data_dir);
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
    }
    std::fs::rename(&tmp, &target)?;
    // The rename itself must survive a crash too.
    std::fs::File::open(data_dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut hws = HighWatermarks::new();
        hws.insert(("orders".into(), 0), 42);
        hws.insert(("orders".into(), 11), 0);
        hws.insert(("__consumer_offsets".into(), 7), 1_000_000_000_000);
        write(dir.path(), &hws).unwrap();
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(text.starts_with("0\n3\n"), "{text}");
        assert!(text.contains("orders 11 0\n"), "{text}");
        assert_eq!(read(dir.path()), hws);
        // Rewriting replaces it whole.
        hws.remove(&("orders".into(), 0));
        write(dir.path(), &hws).unwrap();
        assert_eq!(read(dir.path()), hws);
    }

    #[test]
    fn missing_or_damaged_files_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).is_empty());
        for bad in [
            "",
            "1\n0\n",
            "0\n2\norders 0 5\n",
            "0\n1\norders x 5\n",
            "0\n1\norders 0 -3\n",
            "0\n1\n 0 5\n",
        ] {
            std::fs::write(path(dir.path()), bad).unwrap();
            assert!(read(dir.path()).is_empty(), "{bad:?}");
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
