//! Where output goes: data on stdout (one JSON document with `--json`), messages on stderr,
//! progress bars on stderr only when it is a terminal.

use std::io::{IsTerminal, Write};

use depot_release::progress::{NoProgress, Progress};
use indicatif::{ProgressBar, ProgressStyle};

pub struct Printer {
    pub json: bool,
}

impl Printer {
    pub fn new(json: bool) -> Self {
        Printer { json }
    }

    /// A human message on stderr.
    pub fn message(&self, text: impl AsRef<str>) {
        let _ = writeln!(std::io::stderr(), "{}", text.as_ref());
    }

    /// Data for humans on stdout (never called with `--json`).
    pub fn data(&self, text: impl AsRef<str>) {
        let _ = writeln!(std::io::stdout(), "{}", text.as_ref());
    }

    /// The one JSON document of a `--json` run.
    pub fn json(&self, value: &impl serde::Serialize) {
        let text = serde_json::to_string_pretty(value).expect("output serialises");
        let _ = writeln!(std::io::stdout(), "{text}");
    }

    pub fn progress(&self) -> Box<dyn Progress> {
        if std::io::stderr().is_terminal() { Box::new(Bar::default()) } else { Box::new(NoProgress) }
    }
}

#[derive(Default)]
struct Bar {
    bar: std::sync::Mutex<Option<ProgressBar>>,
}

impl Progress for Bar {
    fn start(&self, what: &str, total: Option<u64>) {
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template("{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{msg:>12} {spinner} {bytes} {bytes_per_sec}").expect("valid template"),
            ),
        };
        bar.set_message(what.to_owned());
        if let Some(old) = self.bar.lock().expect("bar lock").replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = self.bar.lock().expect("bar lock").as_ref() {
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("bar lock").take() {
            bar.finish_and_clear();
        }
    }
}

/// `error: …`, each cause as `Caused by: …`, and a `hint: …` when the error has one.
pub fn print_error(error: &anyhow::Error) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {error}");
    for cause in error.chain().skip(1) {
        let _ = writeln!(stderr, "  Caused by: {cause}");
    }
    let hint = error.chain().find_map(|cause| cause.downcast_ref::<depot_release::Error>()).and_then(|e| e.hint());
    // The registry's hint (or the client's own), and those of the client configuration.
    let hint = hint.or_else(|| {
        error.chain().find_map(|cause| {
            if let Some(e) = cause.downcast_ref::<depot_api::client::ClientError>() {
                e.hint()
            } else if let Some(e) = cause.downcast_ref::<depot_server::tls::TlsError>() {
                Some(e.hint().to_owned())
            } else if let Some(e) = cause.downcast_ref::<Hinted>() {
                Some(e.hint.clone())
            } else {
                cause.downcast_ref::<crate::client_config::ConfigError>().and_then(|e| e.hint())
            }
        })
    });
    if let Some(hint) = hint {
        let _ = writeln!(stderr, "hint: {hint}");
    }
}

/// An error of the CLI's own that comes with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    Hinted { message: message.into(), hint: hint.into() }.into()
}

pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}
