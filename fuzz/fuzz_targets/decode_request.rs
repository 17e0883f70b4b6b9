//! Fuzzes the broker's request decoder with arbitrary frame bodies.
//!
//! The property: `decode_request` returns (Ok or Err) for every input. It
//! must neither abort on a hostile array length (the allocator below is what
//! the broker installs for exactly that reason) nor panic: libfuzzer-sys
//! turns panics into crashes here, so a decoder panic that `decode_request`
//! would catch in production still gets reported. The body is shared with
//! the stable replay test (`broker/wire/tests/fuzz_replay.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rivulet_wire::{alloc::LazyLargeAlloc, fuzzing};

#[global_allocator]
static GLOBAL: LazyLargeAlloc = LazyLargeAlloc;

fuzz_target!(|data: &[u8]| fuzzing::decode_request(data));
