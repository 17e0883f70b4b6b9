//! Finding the programs the tests drive: the `rivulet` binary, the Python venv
//! and its client libraries, kcat, promtool; and skipping (or, on CI, failing)
//! when one is missing.

use std::{
    env,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use crate::process::run_cmd;

/// How long a Python client script may run before the test fails.
pub const PY_TIMEOUT: Duration = Duration::from_secs(50);

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// Resolves a path given in an environment variable: relative paths are
/// taken from the workspace root, since `cargo test` runs each test binary in
/// its package directory while scripts set paths from the root.
fn from_root(path: impl AsRef<Path>) -> PathBuf {
    let path = path.as_ref();
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        workspace_root().join(path)
    }
}

/// The `rivulet` binary under test: `$RIVULET_BIN`, else
/// `$CARGO_TARGET_DIR/debug/rivulet`, else `target/debug/rivulet` in the
/// workspace. Panics with instructions when it is not there.
pub fn rivulet_bin() -> PathBuf {
    let path = if let Some(bin) = env::var_os("RIVULET_BIN") {
        from_root(bin)
    } else if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        from_root(dir).join("debug").join("rivulet")
    } else {
        workspace_root()
            .join("target")
            .join("debug")
            .join("rivulet")
    };
    assert!(
        path.is_file(),
        "the rivulet binary is missing at {}: run `cargo build --bins` first \
         (or set RIVULET_BIN to the binary to test)",
        path.display()
    );
    path
}

/// A `rivulet` command for the client subcommands (`rivulet topic ...`)
/// pointed at `bootstrap` through `RIVULET_BOOTSTRAP_SERVER`, so it works
/// wherever the subcommand defines `--bootstrap-server`:
/// `rivulet_cmd(b, &["topic", "list"])`.
pub fn rivulet_cmd(bootstrap: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(rivulet_bin());
    cmd.args(args).env("RIVULET_BOOTSTRAP_SERVER", bootstrap);
    cmd
}

/// The Python interpreter of the test venv: `$RIVULET_TEST_PYTHON`, else
/// `.venv/bin/python` in the workspace root.
pub fn python() -> PathBuf {
    match env::var_os("RIVULET_TEST_PYTHON") {
        Some(p) => from_root(p),
        None => workspace_root().join(".venv").join("bin").join("python"),
    }
}

/// True when running on CI, where a missing tool is a failure, not a skip.
fn on_ci() -> bool {
    env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Handles a missing prerequisite: panics on CI, else prints `SKIPPED: why`
/// (straight to stderr, so it shows even when test output is captured) and
/// returns false.
fn missing(why: &str) -> bool {
    if on_ci() {
        panic!("{why} (CI is set, so missing tools are failures; .ci/run installs them)");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
    false
}

/// True when the program `name` is on `PATH`. Otherwise panics on CI, and
/// elsewhere prints `SKIPPED: ...` and returns false, so the test returns early
/// (see the `require_tools!` macro).
pub fn require_tool(name: &str) -> bool {
    if find_on_path(name).is_some() {
        return true;
    }
    missing(&format!(
        "`{name}` is not on PATH (Debian: apt-get install {})",
        debian_package(name)
    ))
}

fn debian_package(tool: &str) -> &str {
    match tool {
        "promtool" => "prometheus",
        other => other,
    }
}

/// True when `path` exists. Otherwise panics on CI, and elsewhere prints
/// `SKIPPED: ...` and returns false; `package` is the Debian package that
/// installs it.
pub fn require_file(path: &str, package: &str) -> bool {
    Path::new(path).exists()
        || missing(&format!(
            "{path} is missing (Debian: apt-get install {package})"
        ))
}

/// Whether the program `name` is on `PATH` (no skipping, no panic).
pub fn on_path(name: &str) -> bool {
    find_on_path(name).is_some()
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// True when the venv's Python can import `module`. Otherwise panics on CI,
/// and elsewhere prints `SKIPPED: ...` and returns false (see `require_py!`).
pub fn require_py_module(module: &str) -> bool {
    let py = python();
    if !py.exists() {
        return missing(&format!(
            "no Python venv at {} (python3 -m venv .venv && .venv/bin/pip install \
             confluent-kafka kafka-python aiokafka, or set RIVULET_TEST_PYTHON)",
            py.display()
        ));
    }
    let out = run_cmd(
        Command::new(&py).args(["-c", &format!("import {module}")]),
        None,
        Duration::from_secs(30),
    );
    if out.status.success() {
        return true;
    }
    missing(&format!(
        "Python module `{module}` is not importable with {}: {}",
        py.display(),
        out.stderr.trim()
    ))
}

/// Runs `tests/py/<script>` with the venv's Python and `args`, waits at most
/// [`PY_TIMEOUT`], asserts it exited 0 (showing its stderr otherwise) and
/// returns its stdout.
#[track_caller]
pub fn run_py(script: &str, args: &[&str]) -> String {
    run_py_timeout(script, args, PY_TIMEOUT)
}

/// [`run_py`] with a chosen timeout.
#[track_caller]
pub fn run_py_timeout(script: &str, args: &[&str], timeout: Duration) -> String {
    let out = run_cmd(&mut py_command(script, args), None, timeout);
    out.assert_success(&format!("python script {script} {args:?}"));
    out.stdout
}

/// The command that [`run_py`] runs, for scripts that must run in the
/// background.
pub fn py_command(script: &str, args: &[&str]) -> Command {
    let script_path = workspace_root().join("tests").join("py").join(script);
    let mut cmd = Command::new(python());
    cmd.arg(&script_path)
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// A kcat command with `-b bootstrap` and a short metadata timeout already set.
pub fn kcat(bootstrap: &str) -> Command {
    let mut cmd = Command::new("kcat");
    cmd.args(["-b", bootstrap, "-m", "10"]);
    cmd
}

/// A topic name unique within this test process: `<prefix>-<pid>-<n>`.
pub fn unique_topic(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// The last line of a script's stdout that is JSON (the scripts print
/// their summary last), or `Null` when there is none.
pub fn last_json(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or(serde_json::Value::Null)
}
