//! Named crash points for the crash-safety tests.
//!
//! When `DEPOT_TEST_KILL_AT` names a step, the process sends itself SIGKILL on reaching it, so a
//! test can stop a real `depot` process at every step of an operation and check what a kill at
//! that moment leaves behind. Unset (always, outside the tests), a check is one pointer compare.

use std::sync::OnceLock;

pub const ENV: &str = "DEPOT_TEST_KILL_AT";

pub fn reached(step: &str) {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var(ENV).ok().filter(|s| !s.is_empty()));
    if target.as_deref() == Some(step) {
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}
