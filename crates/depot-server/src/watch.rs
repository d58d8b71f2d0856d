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
    /// Set once, when the registry begins to shut down: every wait ends then.
    closing: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

/// Counts a waiting request in the `watchers` gauge for as long as it lives.
pub struct Waiting<'a> {
    receiver: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    metrics: &'a Metrics,
}

impl Waiting<'_> {
    /// Returns when a revision newer than `after` is announced, at `deadline`, or when the
    /// registry begins to shut down, whichever comes first.
    pub async fn until_newer(&mut self, after: u64, deadline: tokio::time::Instant) {
        let closing = self.closing.wait_for(|closing| *closing);
        let newer = async {
            while self.receiver.changed().await.is_ok() {
                if *self.receiver.borrow_and_update() > after {
                    return;
                }
            }
        };
        tokio::select! {
            _ = closing => {}
            _ = newer => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.metrics.watchers.dec();
    }
}

impl Watchers {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Watchers { channels: Mutex::new(HashMap::new()), closing: watch::channel(false).0, metrics }
    }

    /// Subscribe before reading the configuration, so that no change can slip between.
    pub fn subscribe(&self, name: &ConfigName) -> Waiting<'_> {
        let mut channels = self.channels.lock().expect("watchers lock");
        let sender = channels.entry(name.clone()).or_insert_with(|| watch::channel(0).0);
        self.metrics.watchers.inc();
        Waiting { receiver: sender.subscribe(), closing: self.closing.subscribe(), metrics: &self.metrics }
    }

    /// Ends every wait, now and from now on, so that a shutdown does not wait for them.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Wakes every request waiting on `name`.
    pub fn notify(&self, name: &ConfigName, revision: u64) {
        let channels = self.channels.lock().expect("watchers lock");
        if let Some(sender) = channels.get(name) {
            sender.send_replace(revision);
        }
    }
}
