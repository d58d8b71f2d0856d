//! Handlers grouped by resource, named after the operation.

pub mod admin;
pub mod agents;
pub mod blobs;
pub mod components;
pub mod configs;
pub mod pipelines;
pub mod tokens;
