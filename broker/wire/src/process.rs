//! The process's own resource use, read from `/proc/self`, for the
//! `process_*` series Prometheus client libraries export by convention
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, ...). Shared by the broker and the operator, which
//! both lack the `prometheus` crate's `process` feature (it pulls `procfs`).
//!
//! Plain values, no metrics types: each binary puts them in its own registry.
//! On systems without `/proc` every read returns `None` and the series stay 0.

use std::{fs, time::SystemTime};

/// One reading of the process's resource use.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: u64,
    /// Threads.
    pub threads: u64,
    /// Start time, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Bytes this process caused to be read from storage (`/proc/self/io`).
    pub disk_read_bytes: u64,
    /// Bytes this process caused to be written to storage.
    pub disk_write_bytes: u64,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` where it does not exist.
    pub fn read() -> Option<ProcessStats> {
        let stat = fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may
        // itself contain spaces and parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state); field n is at index n - 3.
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let ticks = clock_ticks()?;
        let page = page_size()?;
        let (utime, stime) = (field(14)?, field(15)?);
        let start_ticks = field(22)?;
        let boot = boot_time_seconds().unwrap_or(0.0);
        let io = fs::read_to_string("/proc/self/io").unwrap_or_default();
        let io_field = |name: &str| {
            io.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Some(ProcessStats {
            cpu_seconds: (utime + stime) as f64 / ticks,
            resident_bytes: field(24)? * page,
            virtual_bytes: field(23)?,
            open_fds: fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
            max_fds: max_fds().unwrap_or(0),
            threads: field(20)?,
            start_time_seconds: boot + start_ticks as f64 / ticks,
            disk_read_bytes: io_field("read_bytes:"),
            disk_write_bytes: io_field("write_bytes:"),
        })
    }
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf reads a constant and has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

fn page_size() -> Option<u64> {
    // SAFETY: sysconf reads a constant and has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().filter(|p| *p > 0)
}

fn max_fds() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn boot_time_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let btime = stat.lines().find_map(|l| l.strip_prefix("btime "))?;
    let btime: f64 = btime.trim().parse().ok()?;
    // Sanity: a boot time in the future means an unreadable clock.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    (btime <= now).then_some(btime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_this_process() {
        let stats = ProcessStats::read().expect("/proc/self on Linux");
        assert!(stats.resident_bytes > 0);
        assert!(stats.open_fds > 0 && stats.open_fds <= stats.max_fds);
        assert!(stats.threads >= 1);
        assert!(stats.start_time_seconds > 1.0e9);
    }
}
