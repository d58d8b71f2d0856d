//! Reports to the registry, sent from a thread of their own so that a slow or absent registry
//! never holds up a deploy. The registry keeps only an agent's latest report, so a report that
//! could not be sent is replaced by the next one; the one left unsent is kept in
//! `R/.depot/agent/outbox.json` (surviving a restart) and sent when the registry answers again.
//! Reports go to the replica the agent talks to, and move with it (`registries.rs`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use depot_api::client::ClientError;
use depot_api::types::AgentReport;
use depot_api::{ConfigName, HostName};
use depot_release::root::write_atomic;

use super::registries::Registries;

/// The first pause before sending a kept report again; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

enum Message {
    Report(Outgoing),
    /// The registry answered the agent: try a kept report now.
    Nudge,
}

/// A report and whom it is about, as kept in the outbox.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Outgoing {
    config: ConfigName,
    host: HostName,
    report: AgentReport,
}

pub struct Reporter {
    sender: Option<Sender<Message>>,
    thread: Option<JoinHandle<()>>,
    config: ConfigName,
    host: HostName,
}

impl Reporter {
    /// Starts the thread; a report kept by an earlier run is sent first.
    pub fn start(registries: Arc<Registries>, config: ConfigName, host: HostName, outbox: PathBuf) -> Self {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("reporter".into())
            .spawn(move || {
                let mut outbox = Outbox { registries, path: outbox, pending: None, warned: false };
                outbox.pending = outbox.read();
                outbox.send();
                let mut retry = FIRST_RETRY;
                loop {
                    let message = if outbox.pending.is_some() {
                        receiver.recv_timeout(retry)
                    } else {
                        receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
                    };
                    match message {
                        Ok(Message::Report(outgoing)) => outbox.pending = Some(outgoing),
                        Ok(Message::Nudge) => retry = FIRST_RETRY,
                        Err(RecvTimeoutError::Timeout) => retry = (retry * 2).min(MAX_RETRY),
                        Err(RecvTimeoutError::Disconnected) => {
                            outbox.send();
                            return;
                        }
                    }
                    // Only the newest report matters.
                    for message in receiver.try_iter() {
                        if let Message::Report(outgoing) = message {
                            outbox.pending = Some(outgoing);
                        }
                    }
                    if outbox.send() {
                        retry = FIRST_RETRY;
                    }
                }
            })
            .expect("the reporter thread starts");
        Reporter { sender: Some(sender), thread: Some(thread), config, host }
    }

    pub fn send(&self, report: AgentReport) {
        let outgoing = Outgoing { config: self.config.clone(), host: self.host.clone(), report };
        if let Some(sender) = &self.sender {
            let _ = sender.send(Message::Report(outgoing));
        }
    }

    pub fn nudge(&self) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(Message::Nudge);
        }
    }

    /// Sends what is queued (one attempt), keeps it in the outbox if that fails, and stops.
    pub fn finish(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

struct Outbox {
    registries: Arc<Registries>,
    path: PathBuf,
    pending: Option<Outgoing>,
    /// Whether the failure to send `pending` was already said.
    warned: bool,
}

impl Outbox {
    fn read(&self) -> Option<Outgoing> {
        let bytes = std::fs::read(&self.path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(outgoing) => Some(outgoing),
            Err(e) => {
                warn(format!("ignoring the damaged {}: {e}", self.path.display()));
                let _ = std::fs::remove_file(&self.path);
                None
            }
        }
    }

    /// Tries to send the pending report; true when nothing is left to send.
    fn send(&mut self) -> bool {
        let Some(outgoing) = &self.pending else { return true };
        let state = outgoing.report.state.as_str();
        match self.registries.call(|client| client.report_agent(&outgoing.config, &outgoing.host, &outgoing.report)) {
            Ok(()) => {
                if self.warned {
                    warn(format!(
                        "the registry answers again: sent the report `{state}` of {}",
                        outgoing.report.reported_at.format("%H:%M:%SZ")
                    ));
                }
                self.forget();
                true
            }
            Err(e) if permanent(&e) => {
                warn(format!("the registry refused the report `{state}`: {e}; it is dropped"));
                self.forget();
                true
            }
            Err(e) => {
                if let Err(write) = write_atomic(&self.path, &serde_json::to_vec(outgoing).expect("report serialises"))
                {
                    warn(format!("cannot keep the report in {}: {write}", self.path.display()));
                }
                if !self.warned {
                    warn(format!(
                        "cannot report `{state}` to the registry ({e}); it is sent when the registry answers"
                    ));
                    self.warned = true;
                }
                false
            }
        }
    }

    fn forget(&mut self) {
        self.pending = None;
        self.warned = false;
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn(format!("cannot remove {}: {e}", self.path.display())),
        }
    }
}

/// A refusal that sending again will not change (a revoked token, a report the registry rejects).
fn permanent(error: &ClientError) -> bool {
    matches!(error, ClientError::Api { status, .. } if (400..500).contains(status) && *status != 408 && *status != 429)
}

fn warn(text: String) {
    eprintln!("warning: {text}");
}
