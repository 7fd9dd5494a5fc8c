//! The vocabulary every other cairn crate speaks: validated relative paths, typed ids, entries,
//! content-defined chunking, filters, conflict-copy names and time expressions.
//!
//! Pure and synchronous: nothing here touches the network, the clock or a file system (chunking
//! reads from any `std::io::Read` the caller hands it), so every rule can be tested in isolation.

pub mod chunking;
pub mod conflict;
pub mod entry;
pub mod filter;
pub mod id;
pub mod path;
pub mod schedule;
pub mod timespec;

pub use chunking::{chunk_reader, ChunkParams, ChunkRef, FileDigest};
pub use entry::{Entry, EntryKind};
pub use filter::{Filter, FilterDecision};
pub use id::{ChunkId, ContentHash, DeviceId, PackId, Seq};
pub use path::RelPath;
pub use schedule::Schedule;

/// Errors of the model: always about a value a user or a peer supplied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("invalid id {value:?}: {reason}")]
    InvalidId { value: String, reason: &'static str },
    #[error("invalid time {value:?}: {reason}")]
    InvalidTime { value: String, reason: String },
    #[error("reading {what}")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
