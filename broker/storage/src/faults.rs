//! Fault injection at the storage I/O sites, for tests of disk failures.
//!
//! Every place the storage layer writes, allocates, fsyncs or truncates
//! calls [`check`] first with its [`Site`] and the file it is about to
//! touch. Off (the default) that is one relaxed atomic load: no lock, no
//! allocation, and appends call it once per request, never per record.
//! On, each call matches the file against the active rules and, when one
//! fires, fails the operation with the rule's error (or sleeps first, for
//! slow disks) exactly where the real syscall would have failed.
//!
//! Rules come from two places:
//! - a control file ([`watch_file`], the broker's
//!   `storage.fault.injection.file`): a black-box test edits it while the
//!   broker runs. It is re-read at most every [`FILE_POLL`], so a change
//!   applies within that time;
//! - [`inject`], for this crate's unit tests: a rule that lasts as long as
//!   the returned guard. Rules name a path fragment (the test's own
//!   directory), so tests running in parallel never see each other's faults.
//!
//! Control file format, one rule per line (`#` starts a comment):
//!
//! ```text
//! <site> <action> [<path fragment>]
//! ```
//!
//! `site` is `write` (segment appends), `fsync` (any fsync or index
//! write-back), `roll` (creating a segment's files), `index` (allocating
//! index space), `checkpoint` (snapshot and small metadata files),
//! `truncate`, or `any`; `action` is `eio`, `enospc` or `delay=<ms>`; the
//! rule applies to files whose path contains the fragment (all files when
//! it is omitted). An injected `write` failure first writes half the
//! buffer, as a real short write before ENOSPC would, so the torn-tail
//! handling is exercised too.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

/// Where in the storage layer an I/O operation happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// Writing batches to a segment's `.log`.
    Write,
    /// fsync of a segment, index, directory or small file.
    Fsync,
    /// Creating a new segment's files (a roll).
    Roll,
    /// Allocating or resizing index space.
    Index,
    /// Writing a snapshot or a small metadata file.
    Checkpoint,
    /// Cutting a segment file (recovery, truncation, a torn write).
    Truncate,
}

/// What a firing rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fail with `EIO`: the device failed.
    Eio,
    /// Fail with `ENOSPC`: the file system is full.
    Enospc,
    /// Sleep this long, then go on (a slow disk).
    Delay(Duration),
}

/// One injected fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The site it applies to; `None` for every site.
    pub site: Option<Site>,
    /// What happens there.
    pub action: Action,
    /// Applies to paths containing this; empty for every path.
    pub path_fragment: String,
}

impl Rule {
    fn matches(&self, site: Site, path: &Path) -> bool {
        self.site.is_none_or(|s| s == site)
            && (self.path_fragment.is_empty()
                || path.to_string_lossy().contains(&self.path_fragment))
    }
}

/// How often the control file is re-read while fault injection is on.
pub const FILE_POLL: Duration = Duration::from_millis(50);

/// Whether any source of rules exists; the only thing the hot path reads.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The rule sources; touched only when [`ENABLED`] is set.
static STATE: Mutex<State> = Mutex::new(State {
    file: None,
    file_rules: Vec::new(),
    read_at: None,
    injected: Vec::new(),
    next_id: 0,
});

struct State {
    file: Option<PathBuf>,
    file_rules: Vec<Rule>,
    read_at: Option<Instant>,
    injected: Vec<(u64, Rule)>,
    next_id: u64,
}

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Turns fault injection on, with rules read from `control` (which need
/// not exist yet: a missing or empty file injects nothing). Meant for
/// tests only; the broker logs loudly when it is configured.
pub fn watch_file(control: &Path) {
    let mut state = state();
    state.file = Some(control.to_path_buf());
    state.read_at = None;
    ENABLED.store(true, Ordering::Release);
}

/// A rule injected by [`inject`]; dropping it removes the rule.
#[must_use = "the fault lasts only as long as the guard"]
pub struct Injected(u64);

impl Drop for Injected {
    fn drop(&mut self) {
        state().injected.retain(|(id, _)| *id != self.0);
    }
}

/// Injects `rule` until the returned guard is dropped.
pub fn inject(rule: Rule) -> Injected {
    let mut state = state();
    let id = state.next_id;
    state.next_id += 1;
    state.injected.push((id, rule));
    ENABLED.store(true, Ordering::Release);
    Injected(id)
}

/// Fails (or delays) the operation at `site` on `path` if a rule says so.
#[inline]
pub(crate) fn check(site: Site, path: &Path) -> io::Result<()> {
    if !ENABLED.load(Ordering::Relaxed) {
        return Ok(());
    }
    match firing(site, path) {
        Some(Action::Delay(d)) => {
            std::thread::sleep(d);
            Ok(())
        }
        Some(Action::Eio) => Err(io::Error::from_raw_os_error(libc::EIO)),
        Some(Action::Enospc) => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
        None => Ok(()),
    }
}

/// The action of the first rule matching `site` and `path`, if any.
#[cold]
fn firing(site: Site, path: &Path) -> Option<Action> {
    let mut state = state();
    refresh(&mut state);
    state
        .injected
        .iter()
        .map(|(_, r)| r)
        .chain(&state.file_rules)
        .find(|r| r.matches(site, path))
        .map(|r| r.action)
}

/// Re-reads the control file when the last read is older than [`FILE_POLL`].
fn refresh(state: &mut State) {
    let Some(file) = &state.file else { return };
    if state.read_at.is_some_and(|at| at.elapsed() < FILE_POLL) {
        return;
    }
    let text = std::fs::read_to_string(file).unwrap_or_default();
    state.file_rules = text
        .lines()
        .filter_map(|line| match parse_rule(line) {
            Ok(rule) => rule,
            Err(e) => {
                tracing::warn!(file = %file.display(), line, error = e, "ignoring fault rule");
                None
            }
        })
        .collect();
    state.read_at = Some(Instant::now());
}

/// Parses one control-file line; `Ok(None)` for blank lines and comments.
pub fn parse_rule(line: &str) -> Result<Option<Rule>, &'static str> {
    let line = line.split('#').next().unwrap_or_default();
    let mut words = line.split_whitespace();
    let Some(site) = words.next() else {
        return Ok(None);
    };
    let site = match site {
        "write" => Some(Site::Write),
        "fsync" => Some(Site::Fsync),
        "roll" => Some(Site::Roll),
        "index" => Some(Site::Index),
        "checkpoint" => Some(Site::Checkpoint),
        "truncate" => Some(Site::Truncate),
        "any" => None,
        _ => return Err("unknown site"),
    };
    let action = match words.next().ok_or("missing action")? {
        "eio" => Action::Eio,
        "enospc" => Action::Enospc,
        other => {
            let ms = other
                .strip_prefix("delay=")
                .and_then(|ms| ms.parse().ok())
                .ok_or("action must be eio, enospc or delay=<ms>")?;
            Action::Delay(Duration::from_millis(ms))
        }
    };
    let path_fragment = words.next().unwrap_or_default().to_string();
    if words.next().is_some() {
        return Err("too many words");
    }
    Ok(Some(Rule {
        site,
        action,
        path_fragment,
    }))
}

/// Writes all of `buf` at `position`, unless a `write` rule fires: then
/// half of it is written first (a short write), and the error returned.
pub(crate) fn write_all_at(
    file: &std::fs::File,
    path: &Path,
    buf: &[u8],
    position: u64,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    if let Err(e) = check(Site::Write, path) {
        file.write_all_at(&buf[..buf.len() / 2], position)?;
        return Err(e);
    }
    file.write_all_at(buf, position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_with_and_without_a_path() {
        assert_eq!(parse_rule("  # nothing"), Ok(None));
        assert_eq!(parse_rule(""), Ok(None));
        assert_eq!(
            parse_rule("fsync eio t-0"),
            Ok(Some(Rule {
                site: Some(Site::Fsync),
                action: Action::Eio,
                path_fragment: "t-0".into()
            }))
        );
        assert_eq!(
            parse_rule("any delay=250"),
            Ok(Some(Rule {
                site: None,
                action: Action::Delay(Duration::from_millis(250)),
                path_fragment: String::new()
            }))
        );
        assert!(parse_rule("fsync sometimes").is_err());
        assert!(parse_rule("disk eio").is_err());
        assert!(parse_rule("write enospc a b").is_err());
    }

    #[test]
    fn an_injected_rule_fires_on_its_paths_only_and_ends_with_its_guard() {
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("00000000000000000000.log");
        let guard = inject(Rule {
            site: Some(Site::Fsync),
            action: Action::Eio,
            path_fragment: dir.path().to_string_lossy().into_owned(),
        });
        let err = check(Site::Fsync, &mine).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert!(check(Site::Write, &mine).is_ok(), "other sites unaffected");
        assert!(check(Site::Fsync, Path::new("/elsewhere/x.log")).is_ok());
        drop(guard);
        assert!(check(Site::Fsync, &mine).is_ok());
    }

    #[test]
    fn the_control_file_is_read_back_within_the_poll_interval() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("data").join("t-0").join("x.log");
        let fragment = dir.path().join("data").to_string_lossy().into_owned();
        // Another test may own the file source; this one uses its own file
        // and restores nothing, since every rule is scoped to its own dir.
        let control = dir.path().join("faults");
        watch_file(&control);
        std::fs::write(&control, format!("write enospc {fragment}\n")).unwrap();
        std::thread::sleep(FILE_POLL * 2);
        let err = check(Site::Write, &target).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        std::fs::write(&control, "").unwrap();
        std::thread::sleep(FILE_POLL * 2);
        assert!(check(Site::Write, &target).is_ok());
    }
}
