//! Fuzzes the checks the broker runs on a Produce request's records before
//! the log appends them: batch headers, sizes, CRC-32C, record counts, the
//! compacted-topic key check and `compression.type` (which decompresses).
//!
//! The property: every input returns (no panic, no abort, no unbounded
//! allocation, a zip bomb included), and accepted records re-validate the
//! same. The body (and the meaning of the first input byte) is
//! `rivulet_server::fuzzing::batch_validator`, shared with the stable replay
//! test (`broker/server/tests/fuzz_replay.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rivulet_server::fuzzing::batch_validator;
use rivulet_wire::alloc::LazyLargeAlloc;

#[global_allocator]
static GLOBAL: LazyLargeAlloc = LazyLargeAlloc;

fuzz_target!(|data: &[u8]| batch_validator(data));
