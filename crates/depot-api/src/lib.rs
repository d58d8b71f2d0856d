//! The wire contract between `depot serve`, the CLI and the agent. Only this crate defines types
//! that cross the network: names (validated on both sides), requests, responses, error codes.

pub mod bounded;
#[cfg(feature = "client")]
pub mod client;
pub mod error;
pub mod names;
pub mod pipeline;
pub mod rollout;
pub mod semver_order;
pub mod types;

pub use error::{ErrorBody, ErrorCode};
pub use names::{
    ComponentName, ConfigName, Digest, HostName, NameError, PipelineName, StageName, TokenName, VersionLabel,
};
