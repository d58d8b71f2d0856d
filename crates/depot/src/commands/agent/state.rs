//! What the agent keeps in `R/.depot/agent/`: the lock that makes it the only agent of the root
//! (holding its pid, so that `depot agent retry` can wake it), and `state.json`, which both of
//! them change only under `state.lock` so that neither loses the other's change.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use depot_release::root::write_atomic;

use crate::printer::hinted;

/// What the agent remembers between cycles and restarts.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// The configuration hash whose release is active.
    pub active_hash: Option<String>,
    /// Hashes that failed, not tried again until the configuration moves to another hash or
    /// `depot agent retry` clears them.
    pub failed_hashes: Vec<String>,
}

/// The agent's directory in a release root.
#[derive(Debug, Clone)]
pub struct AgentDir {
    path: PathBuf,
}

impl AgentDir {
    pub fn new(root: &Path) -> Self {
        AgentDir { path: root.join(".depot").join("agent") }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn create(&self) -> anyhow::Result<()> {
        // The layers downloaded here include environment layers: the directory is the agent's
        // alone (each file is 0600 too, as every temporary file is).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.join("blobs"))
            .with_context(|| format!("cannot create {}", self.join("blobs").display()))?;
        fs_err::create_dir_all(self.join("configs"))?;
        Ok(())
    }

    /// Takes the agent lock, or says which agent holds it. The lock file then holds our pid.
    pub fn lock(&self, root: &Path) -> anyhow::Result<File> {
        let path = self.join("lock");
        let mut file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?;
        // `depot agent retry` takes the lock for an instant to see whether an agent runs.
        let mut locked = file.try_lock().is_ok();
        for _ in 0..5 {
            if locked {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            locked = file.try_lock().is_ok();
        }
        if !locked {
            let holder = read_pid(&mut file).map_or_else(String::new, |pid| format!(" (pid {pid})"));
            return Err(hinted(
                format!("another depot agent already runs on {}{holder}", root.display()),
                format!("one agent per root: stop that one first; it holds the lock {}", path.display()),
            ));
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(file)
    }

    /// The pid of the agent running on this root, if one is.
    pub fn running_agent(&self) -> anyhow::Result<Option<u32>> {
        let path = self.join("lock");
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        if file.try_lock().is_ok() {
            return Ok(None);
        }
        // An agent runs; it writes its pid just after taking the lock.
        for _ in 0..20 {
            if let Some(pid) = read_pid(&mut file) {
                return Ok(Some(pid));
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Err(anyhow::anyhow!("an agent holds {} but its pid cannot be read", path.display()))
    }

    pub fn load_state(&self) -> anyhow::Result<State> {
        let path = self.join("state.json");
        match fs_err::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                hinted(
                    format!("{} is damaged: {e}", path.display()),
                    "remove it: the agent then deploys the configuration again, reusing the release on disk",
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads, changes and writes the state (temporary file, rename, fsync) under `state.lock`.
    pub fn update_state<T>(&self, change: impl FnOnce(&mut State) -> T) -> anyhow::Result<T> {
        let lock = File::create(self.join("state.lock"))?;
        lock.lock()?;
        let mut state = self.load_state()?;
        let result = change(&mut state);
        write_atomic(&self.join("state.json"), &serde_json::to_vec_pretty(&state)?)?;
        Ok(result)
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
