//! The git commands `depot release` runs, through the `git` binary so that the user's own
//! configuration (identity, signing, remotes, hooks) applies.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::printer::hinted;

pub struct Git {
    root: PathBuf,
}

impl Git {
    /// The repository holding the current directory.
    pub fn discover() -> anyhow::Result<Self> {
        let output = Command::new("git").args(["rev-parse", "--show-toplevel"]).output().map_err(|e| {
            hinted(format!("cannot run git: {e}"), "install git; `depot release` works in a git repository")
        })?;
        if !output.status.success() {
            return Err(hinted(
                "not in a git repository",
                "run `depot release` in a git checkout (any directory of it)",
            ));
        }
        Ok(Git { root: PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs `git ARGS` at the root; its stdout, trimmed, or an error with its stderr.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("git").args(args).current_dir(&self.root).output()?;
        if !output.status.success() {
            anyhow::bail!("`git {}` failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    fn try_run(&self, args: &[&str]) -> Option<String> {
        self.run(args).ok().filter(|s| !s.is_empty())
    }

    /// Uncommitted changes and untracked files, as `git status --porcelain` lists them.
    pub fn dirty(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.run(&["status", "--porcelain"])?.lines().map(str::to_owned).collect())
    }

    /// Whether git ignores `path` (relative to the root): an untracked path its exclude rules
    /// match, which `git add` refuses. A tracked file is never ignored.
    pub fn ignored(&self, path: &Path) -> bool {
        Command::new("git")
            .args(["check-ignore", "-q", "--"])
            .arg(path)
            .current_dir(&self.root)
            .status()
            .is_ok_and(|status| status.success())
    }

    pub fn tag_exists(&self, tag: &str) -> bool {
        self.try_run(&["rev-parse", "-q", "--verify", &format!("refs/tags/{tag}")]).is_some()
    }

    /// The checked-out branch; none on a detached HEAD.
    pub fn branch(&self) -> Option<String> {
        self.try_run(&["symbolic-ref", "--short", "-q", "HEAD"])
    }

    /// The remote's default branch when known, else `init.defaultBranch`, else `main`.
    pub fn default_branch(&self, remote: &str) -> String {
        self.try_run(&["symbolic-ref", "--short", "-q", &format!("refs/remotes/{remote}/HEAD")])
            .and_then(|head| head.strip_prefix(&format!("{remote}/")).map(str::to_owned))
            .or_else(|| self.try_run(&["config", "init.defaultBranch"]))
            .unwrap_or_else(|| "main".to_owned())
    }

    /// The branch's remote, else `origin`.
    pub fn remote(&self, branch: Option<&str>) -> String {
        branch
            .and_then(|b| self.try_run(&["config", &format!("branch.{b}.remote")]))
            .unwrap_or_else(|| "origin".to_owned())
    }
}
