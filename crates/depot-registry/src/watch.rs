//! Blocking queries: one watch channel per configuration that someone waits on, carrying its
//! latest revision, already serialized. A waiting request holds only a receiver, so thousands of
//! watchers cost little; one write wakes them all, and each answers with the shared bytes, without
//! reading the database. A channel lives only while someone waits on it: names that do not exist,
//! and configurations deleted, leave nothing behind.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use depot_api::ConfigName;
use depot_api::types::Config;
use tokio::sync::watch;

use depot_store::{Change, Metadata, StoreError};

/// What a configuration's channel last announced.
#[derive(Clone)]
enum Announcement {
    /// Nothing since the first request began waiting.
    Nothing,
    /// A revision and the configuration's JSON at that revision.
    Revision(u64, Bytes),
    Deleted,
}

pub(crate) struct Watchers {
    channels: Mutex<HashMap<ConfigName, watch::Sender<Announcement>>>,
    /// Set once, when the registry begins to shut down: every wait ends then.
    closing: watch::Sender<bool>,
    waiting: AtomicUsize,
}

impl Default for Watchers {
    fn default() -> Self {
        Watchers { channels: Mutex::default(), closing: watch::channel(false).0, waiting: AtomicUsize::new(0) }
    }
}

/// One request waiting on one configuration. Dropping the last one for a name removes its channel.
pub(crate) struct Waiting<'a> {
    name: ConfigName,
    receiver: watch::Receiver<Announcement>,
    closing: watch::Receiver<bool>,
    watchers: &'a Watchers,
}

impl Waiting<'_> {
    /// Waits until a revision newer than `after` is announced and returns its JSON; `None` at
    /// `deadline`, on deletion, or when the registry begins to shut down (the caller then reads
    /// the configuration as it stands).
    pub async fn until_newer(&mut self, after: u64, deadline: tokio::time::Instant) -> Option<Bytes> {
        let closing = self.closing.wait_for(|closing| *closing);
        let newer = async {
            while self.receiver.changed().await.is_ok() {
                match &*self.receiver.borrow_and_update() {
                    Announcement::Revision(revision, json) if *revision > after => return Some(json.clone()),
                    Announcement::Deleted => return None,
                    Announcement::Revision(..) | Announcement::Nothing => {}
                }
            }
            None
        };
        tokio::select! {
            json = newer => json,
            _ = closing => None,
            _ = tokio::time::sleep_until(deadline) => None,
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.watchers.waiting.fetch_sub(1, Ordering::Relaxed);
        let mut channels = self.watchers.channels.lock().expect("watchers lock");
        // Subscribing happens under this lock too, so the count cannot grow meanwhile; this
        // request's receiver is still alive, hence 1 for the last.
        if channels.get(&self.name).is_some_and(|sender| sender.receiver_count() <= 1) {
            channels.remove(&self.name);
        }
    }
}

impl Watchers {
    /// Subscribe before reading the configuration, so that no change can slip between.
    pub fn subscribe(&self, name: &ConfigName) -> Waiting<'_> {
        let mut channels = self.channels.lock().expect("watchers lock");
        let sender = channels.entry(name.clone()).or_insert_with(|| watch::channel(Announcement::Nothing).0);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting { name: name.clone(), receiver: sender.subscribe(), closing: self.closing.subscribe(), watchers: self }
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Configurations with a channel now (as many as are waited on).
    #[cfg(test)]
    pub fn channels(&self) -> usize {
        self.channels.lock().expect("watchers lock").len()
    }

    /// Ends every wait, now and from now on, so that a shutdown does not wait for them.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Announces `config` to every request waiting on it. Two writes may announce out of order;
    /// an older revision never replaces a newer one.
    fn notify(&self, config: &Config) {
        let channels = self.channels.lock().expect("watchers lock");
        if let Some(sender) = channels.get(&config.name) {
            let json = Bytes::from(serde_json::to_vec(config).expect("a configuration serializes"));
            sender.send_if_modified(|current| match current {
                Announcement::Revision(revision, _) if *revision >= config.revision => false,
                _ => {
                    *current = Announcement::Revision(config.revision, json);
                    true
                }
            });
        }
    }

    /// Announces a committed change, read from `metadata` as it stands now (so that changes
    /// announced out of order, or twice, end on the newest revision). Called on the thread that
    /// committed it, or the store's listener thread: never on an async worker.
    pub fn announce(&self, metadata: &Metadata, change: Change) {
        let names = match change {
            Change::Config(name) => match ConfigName::parse(&name) {
                Ok(name) => vec![name],
                Err(_) => return,
            },
            Change::Everything => {
                self.channels.lock().expect("watchers lock").keys().cloned().collect::<Vec<ConfigName>>()
            }
        };
        for name in names {
            if !self.channels.lock().expect("watchers lock").contains_key(&name) {
                continue;
            }
            match metadata.config(&name) {
                Ok(config) => self.notify(&config),
                Err(StoreError::UnknownConfig(_)) => self.notify_deleted(&name),
                Err(error) => tracing::error!("reading configuration {name} to announce it failed: {error}"),
            }
        }
    }

    /// Wakes every request waiting on `name`, which no longer exists.
    fn notify_deleted(&self, name: &ConfigName) {
        let channels = self.channels.lock().expect("watchers lock");
        if let Some(sender) = channels.get(name) {
            sender.send_replace(Announcement::Deleted);
        }
    }
}
