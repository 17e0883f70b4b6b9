//! Rivulet's Kafka wire layer.
//!
//! Everything between a socket and a typed Kafka message, and nothing of the
//! broker's logic:
//!
//! - [`frame`]: size-prefixed framing with a hard cap checked before any
//!   allocation.
//! - [`request`]: server-side decoding of request frames and encoding of
//!   response frames, over the `kafka-protocol` crate.
//! - [`alloc`]: [`alloc::LazyLargeAlloc`], the global allocator that keeps a
//!   known kafka-protocol decoder defect (hostile array lengths) from
//!   aborting the process. Binaries that decode untrusted input install it.
//! - [`batch`]: a zero-copy view of RecordBatch v2 headers.
//! - [`process`]: the process's CPU, memory, file descriptors and disk I/O
//!   from `/proc`, for the `process_*` series of both binaries.
//! - `fuzzing` (hidden): fuzz target bodies and a seeded mutation loop,
//!   shared by the cargo-fuzz targets and the stable replay tests.
//! - [`client`]: a small async client (admin, produce, fetch) for the CLI,
//!   the operator, tests and benchmarks.
//!
//! `kafka-protocol` is re-exported so that users of this crate name the
//! same message types this crate was built against.

pub mod alloc;
pub mod batch;
#[cfg(feature = "client")]
pub mod client;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod process;
pub mod request;
pub mod scram;
pub mod uuid_text;

pub use kafka_protocol;

pub use crate::error::{ClientError, DecodeError, EncodeError, FrameError};
