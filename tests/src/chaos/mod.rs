//! The fault campaign: brokers in network namespaces ([`cluster`]), faults
//! drawn from a seed ([`faults`]), probes and availability figures
//! ([`probe`]), and whole runs with their checker ([`run`]).
//!
//! Used by `tests/tests/chaos.rs` (short seeds and named scenarios in CI)
//! and by the `rivulet-chaos` binary (long campaigns; see
//! docs/reliability.md).

pub mod cluster;
pub mod faults;
pub mod probe;
pub mod run;

pub use cluster::NetCluster;
pub use faults::{Fault, Schedule};
pub use run::{run, RunOptions, RunReport};
