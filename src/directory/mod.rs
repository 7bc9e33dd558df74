//! The directory: the Graph-shaped model, the store trait, and its
//! in-memory implementation.
//!
//! Storage adapters implement [`DirectoryStore`]; the
//! [`conformance`] suite (feature `conformance`) checks that an adapter keeps
//! every guarantee the core relies on.

#[cfg(feature = "conformance")]
pub mod conformance;
mod memory;
mod model;
mod store;

pub use memory::MemoryStore;
pub use model::*;
pub use store::{DirectoryStore, Expect, Versioned, Write, WriteBatch};
