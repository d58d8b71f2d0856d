//! `depot release`: cut a semver release in a git repository (seed 003's flow). Everything is
//! checked and planned first; the plan is printed (all of it with --dry-run); only then are the
//! files written, committed, tagged and pushed.

mod cargo;
mod files;
mod git;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use semver::{Prerelease, Version};

use self::files::VersionFile;
use self::git::Git;
use crate::cli::{ReleaseArgs, ReleaseTarget};
use crate::printer::{Printer, hinted};

/// A file the release rewrites.
#[derive(Debug, serde::Serialize)]
struct Change {
    path: PathBuf,
    #[serde(skip)]
    old: String,
    #[serde(skip)]
    new: String,
    diff: String,
    /// Ignored by git (a `Cargo.lock` or `package-lock.json` that the repository does not
    /// keep): written, so that the checkout stays consistent, but not committed.
    ignored_by_git: bool,
}

#[derive(Debug, serde::Serialize)]
struct Plan {
    current: String,
    next: String,
    files: Vec<Change>,
    /// None when the files already hold the version.
    commit: Option<String>,
    tag: String,
    signed: bool,
    push: Vec<String>,
    warnings: Vec<String>,
    refusals: Vec<String>,
}

pub fn run(args: ReleaseArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let git = Git::discover()?;
    let files = files::discover(git.root())?;
    let pyproject = git.root().join("pyproject.toml");
    if files.is_empty()
        && pyproject.is_file()
        && let Some((message, hint)) = files::dynamic_pyproject(&fs_err::read_to_string(&pyproject)?)
    {
        return Err(hinted(message, hint));
    }
    if files.is_empty()
        && let Some(members) = cargo::virtual_members(git.root())
    {
        let listed: Vec<String> =
            members.iter().map(|(path, version)| format!("{} has {version}", path.display())).collect();
        let quoted: Vec<String> = members.iter().map(|(path, _)| format!("\"{}\"", path.display())).collect();
        return Err(hinted(
            format!(
                "Cargo.toml is a virtual workspace with no `[workspace.package] version`, and its members have \
                 versions of their own ({})",
                listed.join(", ")
            ),
            format!(
                "list the members released together in depot.toml: [release] files = [{}] (or give them a \
                 [workspace.package] version, inherited with `version.workspace = true`)",
                quoted.join(", ")
            ),
        ));
    }
    if files.is_empty() {
        return Err(hinted(
            format!("no version file at {}", git.root().display()),
            "depot release reads Cargo.toml, package.json or pyproject.toml at the repository's root, or the \
             files listed in depot.toml under [release] files = [\"VERSION\"]",
        ));
    }
    let versions: Vec<String> = files.iter().map(|f| format!("{} has {}", f.path.display(), f.version)).collect();
    if files.iter().any(|f| f.version != files[0].version) {
        return Err(hinted(
            format!("the version files disagree: {}", versions.join(", ")),
            "make them agree (one commit), then run depot release again",
        ));
    }
    let raw = files[0].version.clone();
    let current = depot_api::semver_order::parse(&raw).ok_or_else(|| {
        hinted(format!("{} is not a semver version ({})", raw, versions.join(", ")), "use X.Y.Z, such as 0.1.0")
    })?;
    let prefix = if raw.starts_with('v') { "v" } else { "" };
    let plan = plan(&git, &files, &current, prefix, &args)?;
    if plan.refusals.is_empty() || args.dry_run || printer.json {
        print_plan(&plan, printer, args.dry_run);
    } else {
        // Refused: the plan is not printed as if it were about to happen, only why it will not.
        for warning in &plan.warnings {
            printer.message(format!("warning: {warning}"));
        }
    }
    if !plan.refusals.is_empty() {
        for refusal in &plan.refusals {
            printer.message(format!("error: {refusal}"));
        }
        return Ok(ExitCode::FAILURE);
    }
    if args.dry_run {
        printer.message("dry run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm(&format!("Release {}?", plan.tag))? {
        printer.message("cancelled: nothing was changed");
        return Ok(ExitCode::FAILURE);
    }
    apply(&git, &plan, printer)?;
    Ok(ExitCode::SUCCESS)
}

/// The next version, or why there is none.
fn next_version(current: &Version, target: &ReleaseTarget, pre: Option<&str>) -> Result<Version, String> {
    let pre_release = !current.pre.is_empty();
    let mut next = match target {
        ReleaseTarget::Patch if pre_release => Version::new(current.major, current.minor, current.patch),
        ReleaseTarget::Patch => Version::new(current.major, current.minor, current.patch + 1),
        ReleaseTarget::Minor if pre_release && current.patch == 0 => Version::new(current.major, current.minor, 0),
        ReleaseTarget::Minor => Version::new(current.major, current.minor + 1, 0),
        ReleaseTarget::Major if pre_release && current.minor == 0 && current.patch == 0 => {
            Version::new(current.major, 0, 0)
        }
        ReleaseTarget::Major => Version::new(current.major + 1, 0, 0),
        ReleaseTarget::Rc | ReleaseTarget::Final if !pre_release => {
            return Err(format!(
                "{current} is not a release candidate; start one with `depot release minor --pre rc` (or patch, major)"
            ));
        }
        ReleaseTarget::Rc => {
            let next = depot_api::semver_order::next_after([current.to_string().as_str()], &current.to_string())
                .and_then(|v| depot_api::semver_order::parse(&v))
                .ok_or_else(|| format!("cannot number the release candidate after {current}"))?;
            return Ok(next);
        }
        ReleaseTarget::Final => Version::new(current.major, current.minor, current.patch),
        ReleaseTarget::Version(version) => {
            let mut version = version.clone();
            version.build = semver::BuildMetadata::EMPTY;
            version
        }
    };
    if let Some(pre) = pre {
        if matches!(target, ReleaseTarget::Rc | ReleaseTarget::Final) {
            return Err("--pre goes with patch, minor, major or a version".to_owned());
        }
        next.pre = Prerelease::new(&format!("{pre}.1")).map_err(|e| e.to_string())?;
    }
    Ok(next)
}

fn plan(git: &Git, files: &[VersionFile], current: &Version, prefix: &str, args: &ReleaseArgs) -> anyhow::Result<Plan> {
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();
    let next = match next_version(current, &args.target, args.pre.as_deref()) {
        Ok(next) => next,
        Err(reason) => {
            refusals.push(reason);
            current.clone()
        }
    };
    let tag = format!("v{next}");
    // The same version again is a tag of what the files already hold (they were bumped by hand);
    // anything else must be above the current version.
    let already_there = next == *current && matches!(args.target, ReleaseTarget::Version(_));
    if refusals.is_empty() && !already_there && next.cmp_precedence(current) != std::cmp::Ordering::Greater {
        refusals.push(format!("{next} is not above the current version {current}"));
    }
    let dirty = git.dirty()?;
    if !dirty.is_empty() {
        let shown: Vec<&str> = dirty.iter().take(5).map(String::as_str).collect();
        refusals.push(format!(
            "the working tree is not clean ({}{}); commit or stash first",
            shown.join(", "),
            if dirty.len() > 5 { ", …" } else { "" }
        ));
    }
    if git.tag_exists(&tag) {
        refusals.push(format!("the tag {tag} exists already"));
    }
    let branch = git.branch();
    let remote = git.remote(branch.as_deref());
    match &branch {
        None => refusals.push("HEAD is detached; check out the branch to release from".to_owned()),
        Some(branch) => {
            let default = git.default_branch(&remote);
            if *branch != default {
                warnings.push(format!("releasing from {branch}, not from the default branch {default}"));
            }
        }
    }

    let version = format!("{prefix}{next}");
    let mut edits = Edits::default();
    for file in files {
        let new = file.with_version(&version)?;
        edits.edit(git.root(), &file.path, |_| Ok(new))?;
    }
    if files.iter().any(|f| f.kind == files::Kind::Cargo) {
        let workspace = cargo::release(git.root(), files)?;
        for manifest in &workspace.manifests {
            edits.edit(git.root(), manifest, |text| {
                let (new, cannot) = cargo::follow_requirements(git.root(), manifest, text, &workspace.released, &next)?;
                refusals.extend(cannot);
                Ok(new)
            })?;
        }
        for lock in &workspace.locks {
            if git.root().join(lock).is_file() {
                edits.edit(git.root(), lock, |text| cargo::lock(text, &workspace.released, &version))?;
            }
        }
    }
    for file in files.iter().filter(|f| f.kind == files::Kind::PackageJson) {
        for name in ["package-lock.json", "npm-shrinkwrap.json"] {
            let lock = file.path.with_file_name(name);
            if git.root().join(&lock).is_file() {
                edits.edit(git.root(), &lock, |text| Ok(files::npm_lock(text, &file.version, &version)))?;
            }
        }
    }
    for file in files.iter().filter(|f| f.kind == files::Kind::Pyproject) {
        let lock = file.path.with_file_name("uv.lock");
        if git.root().join(&lock).is_file() {
            edits.edit(git.root(), &lock, |text| files::uv_lock(text, &file.text, &file.version, &version))?;
        }
    }
    let changelog = Path::new("CHANGELOG.md");
    // A release candidate leaves the Unreleased section where it is: the final release takes it.
    if git.root().join(changelog).is_file() && !already_there && next.pre.is_empty() {
        let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
        edits.edit(git.root(), changelog, |text| {
            let Some(new) = files::changelog(text, &next.to_string(), &date) else {
                warnings.push("CHANGELOG.md has no `## [Unreleased]` section: left as it is".to_owned());
                return Ok(text.to_owned());
            };
            Ok(match files::changelog_links(&new, &next.to_string(), &tag) {
                Ok(Some(linked)) => linked,
                Ok(None) => new,
                Err(line) => {
                    warnings.push(format!(
                        "CHANGELOG.md's link `{line}` is not of the form `[Unreleased]: …/PREVIOUS...HEAD`: its \
                         links were left as they are"
                    ));
                    new
                }
            })
        })?;
    }
    let mut changes: Vec<Change> = edits
        .files
        .into_iter()
        .map(|(path, old, new)| {
            let ignored = git.ignored(&path);
            change(path, old, new, ignored)
        })
        .collect();
    changes.retain(|c| c.old != c.new);
    let commit = changes.iter().any(|c| !c.ignored_by_git).then(|| format!("chore(release): {tag}"));
    let mut push = Vec::new();
    if args.push {
        let branch = branch.unwrap_or_else(|| "HEAD".to_owned());
        push.push(format!("git push {remote} {branch}"));
        push.push(format!("git push {remote} refs/tags/{tag}"));
    }
    Ok(Plan {
        current: current.to_string(),
        next: next.to_string(),
        files: changes,
        commit,
        tag,
        signed: args.sign,
        push,
        warnings,
        refusals,
    })
}

/// The files a release rewrites, each read once; later steps rewrite what earlier ones wrote.
#[derive(Default)]
struct Edits {
    /// Path (relative to the root), text as read, text to write.
    files: Vec<(PathBuf, String, String)>,
}

impl Edits {
    fn edit(
        &mut self,
        root: &Path,
        path: &Path,
        rewrite: impl FnOnce(&str) -> anyhow::Result<String>,
    ) -> anyhow::Result<()> {
        match self.files.iter_mut().find(|(p, _, _)| p == path) {
            Some((_, _, new)) => *new = rewrite(new)?,
            None => {
                let old = fs_err::read_to_string(root.join(path))?;
                let new = rewrite(&old)?;
                self.files.push((path.to_owned(), old, new));
            }
        }
        Ok(())
    }
}

fn change(path: PathBuf, old: String, new: String, ignored_by_git: bool) -> Change {
    let name = path.display().to_string();
    let diff = similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(2)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string();
    Change { path, old, new, diff, ignored_by_git }
}

fn print_plan(plan: &Plan, printer: &Printer, dry_run: bool) {
    if printer.json {
        printer.json(plan);
        return;
    }
    for warning in &plan.warnings {
        printer.message(format!("warning: {warning}"));
    }
    printer.data(format!("release {} → {}", plan.current, plan.next));
    for change in &plan.files {
        let ignored = if change.ignored_by_git { " (ignored by git: written, not committed)" } else { "" };
        if dry_run {
            printer.data(change.diff.trim_end());
            if change.ignored_by_git {
                printer.data(format!("  {}{ignored}", change.path.display()));
            }
        } else {
            printer.data(format!("  write  {}{ignored}", change.path.display()));
        }
    }
    match &plan.commit {
        Some(message) => printer.data(format!("  commit \"{message}\"")),
        None => printer.data("  commit (none: the files hold the version already)"),
    }
    printer.data(format!("  tag    {} ({})", plan.tag, if plan.signed { "annotated, signed" } else { "annotated" }));
    for command in &plan.push {
        printer.data(format!("  push   {command}"));
    }
}

/// Replaces the file's content atomically, keeping its mode; a symlink's target is what changes.
fn write_keeping_mode(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = fs_err::canonicalize(path)?;
    let mode = fs_err::metadata(&path)?.permissions().mode();
    depot_release::root::write_atomic(&path, text.as_bytes())?;
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    let mut stderr = std::io::stderr();
    write!(stderr, "{question} [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer)? == 0 && !std::io::stdin().is_terminal() {
        writeln!(stderr)?;
    }
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Writes, commits, tags and pushes. Files written are restored if the commit fails.
fn apply(git: &Git, plan: &Plan, printer: &Printer) -> anyhow::Result<()> {
    for change in &plan.files {
        write_keeping_mode(&git.root().join(&change.path), &change.new)?;
    }
    if let Some(message) = &plan.commit {
        let mut add = vec!["add", "--"];
        let paths: Vec<String> =
            plan.files.iter().filter(|c| !c.ignored_by_git).map(|c| c.path.display().to_string()).collect();
        add.extend(paths.iter().map(String::as_str));
        let committed = git.run(&add).and_then(|_| git.run(&["commit", "-q", "-m", message]));
        if let Err(error) = committed {
            for change in &plan.files {
                let _ = write_keeping_mode(&git.root().join(&change.path), &change.old);
            }
            let _ = git.run(&["reset", "-q", "--"]);
            return Err(error.context("the commit failed; the files were restored"));
        }
        printer.message(format!("committed \"{message}\""));
    }
    let sign = if plan.signed { "-s" } else { "-a" };
    git.run(&["tag", sign, &plan.tag, "-m", &plan.tag]).map_err(|e| {
        hinted(
            format!("{e:#}"),
            "the release commit is made; fix the cause and run `git tag -a TAG -m TAG`, or undo it with `git reset --hard HEAD~1`",
        )
    })?;
    printer.message(format!("tagged {}", plan.tag));
    for command in &plan.push {
        let args: Vec<&str> = command.split(' ').skip(1).collect();
        git.run(&args)?;
        printer.message(format!("ran {command}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(current: &str, target: ReleaseTarget, pre: Option<&str>) -> Result<String, String> {
        next_version(&Version::parse(current).unwrap(), &target, pre).map(|v| v.to_string())
    }

    #[test]
    fn the_next_version() {
        assert_eq!(next("1.4.2", ReleaseTarget::Patch, None).unwrap(), "1.4.3");
        assert_eq!(next("1.4.2", ReleaseTarget::Minor, None).unwrap(), "1.5.0");
        assert_eq!(next("1.4.2", ReleaseTarget::Major, None).unwrap(), "2.0.0");
        assert_eq!(next("1.4.2", ReleaseTarget::Minor, Some("rc")).unwrap(), "1.5.0-rc.1");
        assert_eq!(next("1.5.0-rc.1", ReleaseTarget::Rc, None).unwrap(), "1.5.0-rc.2");
        assert_eq!(next("1.5.0-rc.2", ReleaseTarget::Final, None).unwrap(), "1.5.0");
        assert_eq!(next("1.5.0-rc.2", ReleaseTarget::Minor, None).unwrap(), "1.5.0", "finishes the pre-release");
        assert_eq!(next("1.5.1-rc.1", ReleaseTarget::Minor, None).unwrap(), "1.6.0");
        assert!(next("1.4.2", ReleaseTarget::Rc, None).unwrap_err().contains("--pre rc"));
        assert!(next("1.4.2", ReleaseTarget::Final, None).is_err());
    }
}
