//! The transaction coordinator (KIP-98, and KIP-890's transaction version
//! 2): transactional ids, their producer ids and epochs, and the two-phase
//! end of each transaction, persisted in the internal topic
//! `__transaction_state`.
//!
//! - [`state`]: the pure state machine of one transactional id.
//! - [`tv2`]: its transitions for transaction version 2 clients (KIP-890
//!   part 2: an epoch bump at every end, partitions added by the leaders).
//! - [`records`]: Kafka's key and value formats of `__transaction_state`.
//! - [`coordinator`]: the async shell: the table, ownership of the
//!   partitions this broker leads (loaded when it becomes their leader,
//!   as the group coordinator does with `__consumer_offsets`), persistence,
//!   expiry of open transactions and of idle transactional ids.
//! - [`markers`]: WriteTxnMarkers to every partition of an ended
//!   transaction, retried until each leader has written its marker.
//!
//! A transactional id is placed in `__transaction_state` as Kafka places
//! it (Java's `hashCode`, [`crate::group::partition_for`]), and the
//! coordinator epoch written into markers is that partition's leader
//! epoch, so a deposed coordinator's late markers are refused.

pub mod coordinator;
mod loading;
pub mod markers;
pub mod records;
pub mod state;
pub mod tv2;

pub use coordinator::TxnCoordinator;

/// The internal topic holding transaction metadata.
pub const TRANSACTION_TOPIC: &str = "__transaction_state";
