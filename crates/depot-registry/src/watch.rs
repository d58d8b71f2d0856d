//! Blocking queries: one watch channel per configuration that someone waits on, carrying what its
//! agents may run now ([`ConfigView`]: the current revision and the rollout that decides which
//! host runs which revision), each revision already serialized. A waiting request holds only a
//! receiver, so thousands of watchers cost little; one write wakes them all, and each answers
//! with the shared bytes of the revision its host may run, without reading the database. A
//! channel lives only while someone waits on it: names that do not exist, and configurations
//! deleted, leave nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use depot_api::{ConfigName, HostName};
use tokio::sync::watch;

use depot_store::{Change, ConfigView, Metadata, StoreError};

/// A configuration as its watchers answer it: the view and the JSON of each revision in it.
pub(crate) struct Snapshot {
    pub view: ConfigView,
    json: BTreeMap<u64, Bytes>,
}

impl Snapshot {
    pub fn new(view: ConfigView) -> Self {
        let json = view
            .revisions
            .iter()
            .map(|(revision, config)| {
                (*revision, Bytes::from(serde_json::to_vec(config).expect("a configuration serializes")))
            })
            .collect();
        Snapshot { view, json }
    }

    /// See [`answer`].
    pub fn answer(&self, host: Option<&HostName>, after: u64) -> Option<u64> {
        answer(&self.view, host, after)
    }

    /// The JSON of `revision` (one of the view's).
    pub fn json(&self, revision: u64) -> Option<Bytes> {
        self.json.get(&revision).cloned()
    }
}

/// The revision `host` may run, when a blocking query that waits to pass `after` must answer
/// with it: a host's query answers when its revision differs from the one it runs (a rollout
/// may send it back), a query with no host when the configuration has a newer revision.
pub(crate) fn answer(view: &ConfigView, host: Option<&HostName>, after: u64) -> Option<u64> {
    let revision = view.revision_for(host);
    let answers = match host {
        Some(_) => revision != after,
        None => revision > after,
    };
    answers.then_some(revision)
}

/// What a configuration's channel last announced.
#[derive(Clone)]
enum Announcement {
    /// Nothing since the first request began waiting.
    Nothing,
    View(Arc<Snapshot>),
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
    /// Waits until `host` (see [`Snapshot::answer`]) may run another revision than `after`, and
    /// returns that revision's JSON; `None` at `deadline`, on deletion, or when the registry
    /// begins to shut down (the caller then reads the configuration as it stands).
    pub async fn until_answer(
        &mut self,
        host: Option<&HostName>,
        after: u64,
        deadline: tokio::time::Instant,
    ) -> Option<Bytes> {
        let closing = self.closing.wait_for(|closing| *closing);
        let answer = async {
            while self.receiver.changed().await.is_ok() {
                match &*self.receiver.borrow_and_update() {
                    Announcement::View(snapshot) => {
                        if let Some(revision) = snapshot.answer(host, after) {
                            return snapshot.json(revision);
                        }
                    }
                    Announcement::Deleted => return None,
                    Announcement::Nothing => {}
                }
            }
            None
        };
        tokio::select! {
            json = answer => json,
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

    /// Announces `view` to every request waiting on its configuration. Two writes may announce
    /// out of order; an older state never replaces a newer one.
    fn notify(&self, view: ConfigView) {
        let channels = self.channels.lock().expect("watchers lock");
        if let Some(sender) = channels.get(&view.current.name) {
            let generation = view.generation();
            let snapshot = Arc::new(Snapshot::new(view));
            sender.send_if_modified(|current| match current {
                Announcement::View(announced) if announced.view.generation() >= generation => false,
                _ => {
                    *current = Announcement::View(snapshot);
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
            match metadata.config_view(&name) {
                Ok(view) => self.notify(view),
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
