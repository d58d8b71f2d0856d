//! Blocking queries: one watch channel per configuration carrying its latest revision. A waiting
//! request holds only a receiver, so thousands of watchers cost little, and one write wakes them
//! all at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use depot_api::ConfigName;
use tokio::sync::watch;

use crate::metrics::Metrics;

pub struct Watchers {
    channels: Mutex<HashMap<ConfigName, watch::Sender<u64>>>,
    metrics: Arc<Metrics>,
}

/// Counts a waiting request in the `watchers` gauge for as long as it lives.
pub struct Waiting<'a> {
    pub receiver: watch::Receiver<u64>,
    metrics: &'a Metrics,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.metrics.watchers.dec();
    }
}

impl Watchers {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Watchers { channels: Mutex::new(HashMap::new()), metrics }
    }

    /// Subscribe before reading the configuration, so that no change can slip between.
    pub fn subscribe(&self, name: &ConfigName) -> Waiting<'_> {
        let mut channels = self.channels.lock().expect("watchers lock");
        let sender = channels.entry(name.clone()).or_insert_with(|| watch::channel(0).0);
        self.metrics.watchers.inc();
        Waiting { receiver: sender.subscribe(), metrics: &self.metrics }
    }

    /// Wakes every request waiting on `name`.
    pub fn notify(&self, name: &ConfigName, revision: u64) {
        let channels = self.channels.lock().expect("watchers lock");
        if let Some(sender) = channels.get(name) {
            sender.send_replace(revision);
        }
    }
}
