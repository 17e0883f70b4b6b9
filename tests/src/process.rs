//! Child processes with a deadline.
//!
//! [`run_cmd`] runs a command to completion (feeding stdin, capturing both
//! output streams) and kills it when it overruns; [`Background`] is a child
//! that runs while the test does something else, with its output in files,
//! killed on drop so a failing test leaves nothing behind.

use std::{
    fs::File,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

/// What a finished command left behind.
#[derive(Debug)]
pub struct CmdOutput {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote on stdout, lossily decoded as UTF-8.
    pub stdout: String,
    /// Everything it wrote on stderr, lossily decoded as UTF-8.
    pub stderr: String,
}

impl CmdOutput {
    /// Panics (showing the command, both streams and `what`) unless the
    /// command exited 0.
    #[track_caller]
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what}: exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `cmd` with `stdin` as its standard input, waits at most `timeout`,
/// and returns its output. A command still running at the deadline is killed
/// and the test panics with whatever it printed so far.
pub fn run_cmd(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> CmdOutput {
    let described = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));

    let writer = stdin.map(|data| {
        let data = data.to_vec();
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // A child that exits early closes the pipe: that is its business, and
        // shows up in its exit status, so a write error is not ours to report.
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let out = drain(child.stdout.take().expect("stdout is piped"));
    let err = drain(child.stderr.take().expect("stderr is piped"));

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {described}: {e}"),
        }
    };
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let stdout = join_drain(out);
    let stderr = join_drain(err);
    match status {
        Some(status) => CmdOutput {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{described} did not finish within {timeout:?} and was killed\n\
             --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
        ),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

fn join_drain(handle: thread::JoinHandle<Vec<u8>>) -> String {
    String::from_utf8_lossy(&handle.join().unwrap_or_default()).into_owned()
}

/// A child process running alongside the test, stdout and stderr in files.
/// Dropping it kills it.
pub struct Background {
    child: Option<Child>,
    described: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Background {
    /// Starts `cmd` with no stdin, its output going to `<dir>/<name>.stdout`
    /// and `<dir>/<name>.stderr`.
    pub fn spawn(cmd: &mut Command, dir: &Path, name: &str) -> Background {
        let described = format!("{cmd:?}");
        let stdout_path = dir.join(format!("{name}.stdout"));
        let stderr_path = dir.join(format!("{name}.stderr"));
        let stdout = File::create(&stdout_path).expect("create stdout file");
        let stderr = File::create(&stderr_path).expect("create stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
        Background {
            child: Some(child),
            described,
            stdout_path,
            stderr_path,
        }
    }

    /// What the process wrote on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// What the process wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits for the process to exit; past `timeout` it is killed and the test
    /// panics with its output.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("process already waited for");
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return status;
                }
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.child = None;
                    panic!(
                        "{} did not finish within {timeout:?} and was killed\n\
                         --- stdout ---\n{}\n--- stderr ---\n{}",
                        self.described,
                        self.stdout(),
                        self.stderr()
                    );
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for {}: {e}", self.described),
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
