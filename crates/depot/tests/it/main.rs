//! Integration tests: every test drives the real `depot` binary.

mod common;

mod agent;
mod archives;
mod build;
mod contrib;
mod crash;
mod dashboard;
mod delta;
mod deploy;
mod download;
mod frames;
mod help;
mod http;
mod import;
mod migrate;
mod pack;
mod pipeline;
mod registry;
mod release;
mod replicas;
mod rollout;
mod safety;
mod secrets;
mod serve;
mod ssh;
mod trust;
