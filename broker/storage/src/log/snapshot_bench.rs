//! Open-time measurements for producer state snapshots. Ignored tests that
//! print timings and assert nothing about time; run them in release:
//!
//! ```text
//! cargo test -j2 -p rivulet-storage --release -- --ignored --nocapture snapshot_bench
//! ```
//!
//! Every open runs on a warm page cache, so the numbers are CPU and
//! syscall cost, not disk reads; on a cold cache a full walk also reads
//! every segment from disk, which a snapshot avoids.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::*;
use crate::{
    snapshot,
    test_util::{batch, BatchSpec},
};

/// Appends `batches` one-record batches from `producers` idempotent
/// producers taking turns, with current-looking timestamps (a time index
/// entry of timestamp 0 at the segment base is all zeros, which reads as
/// unused slack and would make every open rebuild the segment's indexes).
fn produce(log: &mut Log, batches: usize, producers: i64) {
    let mut next_sequence = vec![0; producers as usize];
    for i in 0..batches {
        let pid = i as i64 % producers;
        let seq = &mut next_sequence[pid as usize];
        let timestamp = 1_700_000_000_000 + i as i64;
        let mut bytes = batch(&BatchSpec {
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: *seq,
            base_timestamp: timestamp,
            max_timestamp: timestamp,
            ..BatchSpec::default()
        });
        *seq += 1;
        log.append(&mut bytes, 1, 0).unwrap();
    }
}

/// Moves each partition's snapshots into `stash` (or back), so the same
/// logs open with and without them.
fn move_snapshots(dirs: &[PathBuf], stash: &Path, away: bool) {
    for (i, dir) in dirs.iter().enumerate() {
        let parked = stash.join(i.to_string());
        std::fs::create_dir_all(&parked).unwrap();
        let (from, to) = if away { (dir, &parked) } else { (&parked, dir) };
        for offset in snapshot::list(from).unwrap() {
            let name = snapshot::path(from, offset);
            std::fs::rename(&name, to.join(name.file_name().unwrap())).unwrap();
        }
    }
}

/// Opens every log in `dirs` once, each dropped without a close (the
/// directories stay as a crash left them), and returns the total time and
/// the batch headers read.
fn open_all(dirs: &[PathBuf], config: &LogConfig) -> (Duration, u64) {
    let started = Instant::now();
    let mut walked = 0;
    for dir in dirs {
        let log = Log::open(dir, config.clone()).unwrap();
        walked += log.restored_from.1;
    }
    (started.elapsed(), walked)
}

/// Opens the logs in `dirs` as after a kill -9, with their snapshots and
/// without, alternating three times after a warm-up pass (sealing drops old
/// segment pages from the page cache, and a first pass over many
/// directories loads their inodes), and prints the best run of each.
fn compare(dirs: &[PathBuf], config: &LogConfig) {
    let stash = tempfile::tempdir().unwrap();
    // Let the kernel finish writing back what the setup wrote.
    std::process::Command::new("sync").status().unwrap();
    let (warm_up, _) = open_all(dirs, config);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        with.push(open_all(dirs, config));
        move_snapshots(dirs, stash.path(), true);
        without.push(open_all(dirs, config));
        move_snapshots(dirs, stash.path(), false);
    }
    for (what, runs) in [("with snapshots", with), ("without (full walk)", without)] {
        let best = runs.iter().map(|(time, _)| *time).min().expect("runs");
        let headers = runs[0].1;
        println!("  after kill -9, {what}: best {best:?} ({headers} headers read)");
    }
    println!("  (warm-up pass, with snapshots: {warm_up:?})");
}

#[test]
#[ignore = "benchmark: prints open times of one large partition"]
fn snapshot_bench_one_large_partition() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 4 << 20,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config.clone()).unwrap();
    let started = Instant::now();
    produce(&mut log, 1_000_000, 1_000);
    let (segments, end) = (log.segment_count(), log.log_end_offset());
    println!(
        "one partition: {end} batches in {segments} segments, {} MiB, written in {:?}",
        log.size_bytes() >> 20,
        started.elapsed()
    );
    drop(log);
    let dirs = [dir.path().to_path_buf()];

    compare(&dirs, &config);
    let mut clean = Duration::MAX;
    for _ in 0..3 {
        Log::open(dir.path(), config.clone())
            .unwrap()
            .close()
            .unwrap();
        let started = Instant::now();
        let log = Log::open(dir.path(), config.clone()).unwrap();
        clean = clean.min(started.elapsed());
        assert_eq!(log.restored_from.1, 0);
    }
    println!("  after a clean close: best {clean:?} (0 headers read)");
}

#[test]
#[ignore = "benchmark: prints open times of 10,000 partitions (~10 minutes, 1.7 GB)"]
fn snapshot_bench_ten_thousand_partitions() {
    const PARTITIONS: usize = 10_000;
    const BATCHES: usize = 2_000;
    let root = tempfile::tempdir().unwrap();
    // Four segments of 500 batches (81 bytes each) per partition.
    let config = LogConfig {
        segment_bytes: 500 * 81,
        segment_index_bytes: 64 << 10,
        ..LogConfig::default()
    };
    let started = Instant::now();
    let dirs: Vec<PathBuf> = (0..PARTITIONS)
        .map(|p| {
            let dir = root.path().join(format!("topic-{p}"));
            let mut log = Log::open(&dir, config.clone()).unwrap();
            produce(&mut log, BATCHES, 10);
            drop(log); // kill -9
            dir
        })
        .collect();
    println!(
        "{PARTITIONS} partitions of {BATCHES} batches in 4 segments written in {:?}",
        started.elapsed()
    );
    compare(&dirs, &config);
}
