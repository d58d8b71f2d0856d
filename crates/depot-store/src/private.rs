//! The registry's files are for its own user alone: the database holds the environment values of
//! every stage (and token hashes), the blobs hold the environment layers. Directories are created
//! 0700 and files 0600 from the start, and an existing path that others may read (a data
//! directory made before this rule, or by hand) is tightened when the store opens it, with a
//! warning that says so.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::Result;

/// The mode of the registry's directories.
pub(crate) const DIR_MODE: u32 = 0o700;
/// The mode of the registry's files.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents with mode 0700, and tightens `dir` itself to 0700 when
/// others may use it. Parents that exist are left as they are: they may be shared (`/var/lib`).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    create_missing_dirs(dir)?;
    tighten(dir, DIR_MODE);
    Ok(())
}

/// Creates `dir` and its missing parents with mode 0700; an existing directory is left as it is.
pub(crate) fn create_missing_dirs(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("failed to create directory `{}`: {e}", dir.display())))?;
    Ok(())
}

/// Creates the file `path` empty with mode 0600 unless it exists, and tightens it to 0600 when
/// it exists and others may read it.
pub(crate) fn create_private_file(path: &Path) -> Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("failed to open `{}`: {e}", path.display())))?;
    tighten(path, FILE_MODE);
    Ok(())
}

/// Removes the permission bits of `path` beyond `allowed`, when it exists and has any, with a
/// warning; a path that cannot be changed (another owner) is named in a warning too, since the
/// registry still works.
pub(crate) fn tighten(path: &Path, allowed: u32) {
    let Ok(metadata) = std::fs::metadata(path) else { return };
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & !allowed == 0 {
        return;
    }
    let tightened = mode & allowed;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(tightened)) {
        Ok(()) => tracing::warn!(
            "{} was open to other users (mode {mode:04o}); changed to {tightened:04o}: it holds secrets \
             (environment values, token hashes)",
            path.display()
        ),
        Err(e) => tracing::warn!(
            "{} is open to other users (mode {mode:04o}) and could not be changed to {tightened:04o} ({e}); \
             it holds secrets: chmod it, or chown it to the user that runs the registry",
            path.display()
        ),
    }
}
