//! Open-file descriptors per partition: a log keeps its segment files open
//! but not its index files (those are mapped and closed), so a broker with
//! thousands of partitions fits the usual open-file limits. Alone in its
//! test binary, so the process's descriptor count is this test's.

use rivulet_storage::{Log, LogConfig};

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[test]
fn an_open_log_holds_one_descriptor_per_segment() {
    if !std::path::Path::new("/proc/self/fd").exists() {
        eprintln!("SKIPPED: no /proc/self/fd on this system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let before = open_descriptors();
    let logs: Vec<Log> = (0..200)
        .map(|p| Log::open(&dir.path().join(format!("t-{p}")), LogConfig::default()).unwrap())
        .collect();
    let held = open_descriptors() - before;
    assert!(
        held <= logs.len() + 4,
        "{held} descriptors for {} one-segment logs",
        logs.len()
    );
    drop(logs);
    // Reopened after a crash-like drop, the indexes are still closed.
    let logs: Vec<Log> = (0..200)
        .map(|p| Log::open(&dir.path().join(format!("t-{p}")), LogConfig::default()).unwrap())
        .collect();
    let held = open_descriptors() - before;
    assert!(held <= logs.len() + 4, "{held} descriptors after reopening");
}
