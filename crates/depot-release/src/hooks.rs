//! Hooks (validate, post-activate) and health checks: shell commands run with a timeout, their
//! output written line by line to the release log, the tail kept for the error message.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::Result;
use crate::root::ReleaseLog;

/// Lines of a hook's output kept for reports.
const TAIL_LINES: usize = 40;

#[derive(Debug, Clone)]
pub struct HookOutcome {
    pub success: bool,
    /// `exited with status 3`, `timed out after 30s`, …
    pub description: String,
    pub tail: Vec<String>,
}

impl HookOutcome {
    /// The description and the last lines of output, for an error message.
    pub fn summary(&self) -> String {
        let tail: Vec<&String> = self.tail.iter().rev().take(3).collect::<Vec<_>>().into_iter().rev().collect();
        if tail.is_empty() {
            self.description.clone()
        } else {
            format!(
                "{}; last output: {}",
                self.description,
                tail.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" | ")
            )
        }
    }

    /// The failure this outcome is, described as `what` (e.g. `validate command`).
    pub fn failure(&self, what: &str) -> CheckFailure {
        CheckFailure { reason: format!("{what} {}", self.summary()), output: self.tail.clone() }
    }
}

/// Why a hook or health check failed, with the last lines of its output (empty for a URL check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFailure {
    pub reason: String,
    pub output: Vec<String>,
}

/// Runs `sh -c command` in `cwd` with `env` added, in its own process group, killed with the whole
/// group when `timeout` passes.
pub fn run(
    name: &str,
    command: &str,
    cwd: &Path,
    env: &[(String, String)],
    timeout: Duration,
    log: &ReleaseLog,
) -> Result<HookOutcome> {
    log.line(&format!("{name}: running `{command}`"));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("failed to start `sh -c {command}` in {}: {e}", cwd.display()))
        })?;

    let (sender, receiver) = mpsc::channel::<String>();
    for pipe in [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).split(b'\n') {
                let Ok(line) = line else { break };
                if sender.send(String::from_utf8_lossy(&line).into_owned()).is_err() {
                    break;
                }
            }
        });
    }
    drop(sender);

    let started = Instant::now();
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut record = |line: String| {
        log.line(&format!("{name}| {line}"));
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    let mut timed_out = false;
    let status = loop {
        while let Ok(line) = receiver.recv_timeout(Duration::from_millis(10)) {
            record(line);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() >= timeout {
            timed_out = true;
            let _ = rustix::process::kill_process_group(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::KILL,
            );
            break child.wait()?;
        }
    };
    // Collect what is left, but do not wait for a stray background process holding the pipes.
    let drain_until = Instant::now() + Duration::from_millis(500);
    while let Some(remaining) = drain_until.checked_duration_since(Instant::now()) {
        match receiver.recv_timeout(remaining) {
            Ok(line) => record(line),
            Err(_) => break,
        }
    }
    let description = if timed_out {
        format!("timed out after {}", humantime::format_duration(timeout))
    } else if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else {
        "was killed by a signal".to_owned()
    };
    let success = !timed_out && status.success();
    log.line(&format!("{name}: {}", if success { "succeeded".to_owned() } else { format!("failed: {description}") }));
    Ok(HookOutcome { success, description, tail: tail.into() })
}

#[derive(Debug, Clone)]
pub enum HealthCheck {
    /// A command that exits 0 when the release is healthy.
    Command(String),
    /// A URL that answers 2xx when the release is healthy.
    Url(String),
}

/// Retries the check until it passes or `timeout` has passed. The error is the last failure.
pub fn wait_healthy(
    check: &HealthCheck,
    cwd: &Path,
    env: &[(String, String)],
    timeout: Duration,
    log: &ReleaseLog,
) -> Result<Result<(), CheckFailure>> {
    let started = Instant::now();
    let mut attempts = 0u32;
    let client = match check {
        HealthCheck::Url(_) => {
            Some(reqwest::blocking::Client::builder().build().map_err(|e| std::io::Error::other(e.to_string()))?)
        }
        HealthCheck::Command(_) => None,
    };
    loop {
        attempts += 1;
        let remaining = timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
        let failure = match check {
            HealthCheck::Command(command) => {
                let outcome = run("health", command, cwd, env, remaining, log)?;
                (!outcome.success).then(|| outcome.failure("health command"))
            }
            HealthCheck::Url(url) => {
                let request = client
                    .as_ref()
                    .expect("client for URL checks")
                    .get(url)
                    .timeout(remaining.min(Duration::from_secs(10)));
                match request.send() {
                    Ok(response) if response.status().is_success() => None,
                    Ok(response) => Some(url_failure(format!("{url} answered {}", response.status()))),
                    Err(e) => Some(url_failure(format!("{url} did not answer: {}", crate::error::chain(&e)))),
                }
            }
        };
        match failure {
            None => {
                log.line(&format!(
                    "health: passed after {attempts} attempt(s) in {:.1}s",
                    started.elapsed().as_secs_f64()
                ));
                return Ok(Ok(()));
            }
            Some(failure) => {
                if started.elapsed() >= timeout {
                    let reason = format!(
                        "health check failed after {attempts} attempt(s) in {}: {}",
                        humantime::format_duration(timeout),
                        failure.reason
                    );
                    log.line(&reason);
                    return Ok(Err(CheckFailure { reason, output: failure.output }));
                }
                std::thread::sleep(Duration::from_millis(250).min(timeout.saturating_sub(started.elapsed())));
            }
        }
    }
}

fn url_failure(reason: String) -> CheckFailure {
    CheckFailure { reason, output: Vec::new() }
}
