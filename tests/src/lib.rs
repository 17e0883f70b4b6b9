//! Harness for Rivulet's black-box tests.
//!
//! The tests in `tests/tests/*.rs` spawn the real `rivulet` binary
//! ([`BrokerProcess`]), drive it with real third-party clients (kcat,
//! confluent-kafka, kafka-python, aiokafka through the scripts in `tests/py/`)
//! or with raw frames ([`KafkaConn`]), kill it, restart it, and look at what it
//! left on disk ([`segments`]).
//!
//! Every child process and every wait here is bounded in time: a broken broker
//! makes a test fail with its log, never hang.
//!
//! Tools that may be missing on a developer's machine (kcat, promtool, the
//! Python venv) are checked with [`require_tool`] / [`require_py_module`]: on CI
//! (`CI` set) a missing tool fails the test, elsewhere the test prints
//! `SKIPPED: ...` and returns.

pub mod broker;
pub mod certs;
pub mod chaos;
pub mod cluster;
pub mod cluster_admin;
pub mod cluster_checks;
pub mod cluster_faults;
pub mod groups;
pub mod kafka;
pub mod metrics;
pub mod netns;
pub mod process;
pub mod prometheus;
pub mod segments;
pub mod tools;
pub mod txn_raw;

pub use broker::{BrokerBuilder, BrokerProcess};
pub use kafka::{connect_retry, encode_batch, now_ms, KafkaConn, Msg, EARLIEST, LATEST};
pub use process::{run_cmd, Background, CmdOutput};
pub use tools::{
    kcat, last_json, py_command, python, require_py_module, require_tool, rivulet_bin, rivulet_cmd,
    run_py, run_py_timeout, unique_topic, workspace_root, PY_TIMEOUT,
};

/// Returns early from the calling test when any of the named external tools
/// (programs on `PATH`) is missing; see [`require_tool`].
#[macro_export]
macro_rules! require_tools {
    ($($tool:expr),+ $(,)?) => {
        $( if !$crate::require_tool($tool) { return; } )+
    };
}

/// Returns early from the calling test when any of the named Python modules
/// is missing from the test venv; see [`require_py_module`].
#[macro_export]
macro_rules! require_py {
    ($($module:expr),+ $(,)?) => {
        $( if !$crate::require_py_module($module) { return; } )+
    };
}
