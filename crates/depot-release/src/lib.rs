//! depot's on-host release engine, shared by the CLI's local verbs and (later) the agent.
//!
//! A release root `R` holds immutable release trees under `R/releases/<version>/`, a relative
//! symlink `R/releases/current` that is switched atomically, and depot's own state under
//! `R/.depot/`: a content store whose objects are hardlinked into every release, one manifest per
//! release, the activation history and the lock. See ARCHITECTURE.md for the invariants.

pub mod archive;
pub mod config;
pub mod deploy;
pub mod digest;
mod error;
pub mod fetch;
pub mod hooks;
pub mod killpoint;
pub mod manifest;
pub mod progress;
pub mod prune;
pub mod root;
pub mod stage;
pub mod store;
pub mod verify;
pub mod version;

pub use error::{Error, Result};
