//! The content store under `R/.depot/store/`: one read-only object per distinct (content, mode),
//! hardlinked into every release that has such a file. N releases cost only the bytes that differ.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::Result;
use crate::digest::to_hex;

pub struct ContentStore {
    objects: PathBuf,
    tmp: PathBuf,
}

/// What putting content into the store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The object was new and was written.
    Written,
    /// An identical object was already there.
    Present,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    pub fn new(store_dir: &Path) -> Self {
        ContentStore { objects: store_dir.join("objects"), tmp: store_dir.join("tmp") }
    }

    pub fn create_dirs(&self) -> Result<()> {
        fs_err::create_dir_all(&self.objects)?;
        fs_err::create_dir_all(&self.tmp)?;
        Ok(())
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// `objects/ab/cdef…-444`: the content digest and the file mode, since hardlinks share a mode.
    pub fn object_path(&self, sha256: &str, mode: u32) -> PathBuf {
        self.objects.join(&sha256[..2]).join(format!("{}-{mode:o}", &sha256[2..]))
    }

    /// Stores `data` (a whole file held in memory) unless an identical object exists.
    pub fn put_bytes(&self, data: &[u8], mode: u32) -> Result<(String, Put)> {
        let sha256 = to_hex(&Sha256::digest(data));
        let object = self.object_path(&sha256, mode);
        if object.exists() {
            return Ok((sha256, Put::Present));
        }
        let temp = self.temp_path();
        write_file(&temp, mode, |file| file.write_all(data))?;
        self.install(&temp, &object)?;
        Ok((sha256, Put::Written))
    }

    /// Streams `reader` into the store, hashing as it goes.
    pub fn put_reader(&self, reader: &mut dyn Read, mode: u32) -> Result<(String, u64, Put)> {
        let temp = self.temp_path();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        write_file(&temp, mode, |file| {
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                hasher.update(&buf[..n]);
                size += n as u64;
                file.write_all(&buf[..n])?;
            }
            Ok(())
        })
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })?;
        let sha256 = to_hex(&hasher.finalize());
        let object = self.object_path(&sha256, mode);
        if object.exists() {
            fs_err::remove_file(&temp)?;
            return Ok((sha256, size, Put::Present));
        }
        self.install(&temp, &object)?;
        Ok((sha256, size, Put::Written))
    }

    /// Makes `dest` a hardlink of the object, or a copy when `copy` is set or linking is not
    /// possible (another file system, the link-count limit).
    pub fn materialise(&self, sha256: &str, mode: u32, dest: &Path, copy: bool) -> Result<()> {
        let object = self.object_path(sha256, mode);
        if !copy {
            match std::fs::hard_link(&object, dest) {
                Ok(()) => return Ok(()),
                Err(e) if link_not_possible(&e) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("failed to link {} to {}: {e}", object.display(), dest.display()),
                    )
                    .into());
                }
            }
        }
        fs_err::copy(&object, dest)?;
        fs_err::set_permissions(dest, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// Deletes every object whose name is not in `keep` (`objects/ab/cdef…-444` → `abcdef…-444`).
    /// Returns the count and bytes freed.
    pub fn sweep(&self, keep: &HashSet<String>) -> Result<(u64, u64)> {
        let (mut count, mut bytes) = (0u64, 0u64);
        if !self.objects.exists() {
            return Ok((0, 0));
        }
        for prefix in fs_err::read_dir(&self.objects)? {
            let prefix = prefix?;
            let prefix_name = prefix.file_name().to_string_lossy().into_owned();
            for object in fs_err::read_dir(prefix.path())? {
                let object = object?;
                let name = format!("{prefix_name}{}", object.file_name().to_string_lossy());
                if !keep.contains(&name) {
                    bytes += object.metadata().map(|m| m.len()).unwrap_or(0);
                    fs_err::remove_file(object.path())?;
                    count += 1;
                }
            }
        }
        Ok((count, bytes))
    }

    /// The name [`ContentStore::sweep`] knows an object by.
    pub fn object_name(sha256: &str, mode: u32) -> String {
        format!("{sha256}-{mode:o}")
    }

    /// Removes temporary files left by an interrupted operation.
    pub fn clean_tmp(&self) -> Result<()> {
        if self.tmp.exists() {
            for entry in fs_err::read_dir(&self.tmp)? {
                fs_err::remove_file(entry?.path())?;
            }
        }
        Ok(())
    }

    fn temp_path(&self) -> PathBuf {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{}-{n}", std::process::id()))
    }

    fn install(&self, temp: &Path, object: &Path) -> Result<()> {
        let parent = object.parent().expect("object paths have a parent");
        match std::fs::rename(temp, object) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !parent.exists() => {
                fs_err::create_dir_all(parent)?;
                fs_err::rename(temp, object)?;
                Ok(())
            }
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("failed to rename {} to {}: {e}", temp.display(), object.display()),
            )
            .into()),
        }
    }
}

fn write_file(path: &Path, mode: u32, body: impl FnOnce(&mut std::fs::File) -> io::Result<()>) -> Result<()> {
    let mut file = fs_err::File::create(path)?;
    body(file.file_mut()).map_err(|e| io::Error::new(e.kind(), format!("failed to write {}: {e}", path.display())))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn link_not_possible(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::MLINK.raw_os_error() || code == rustix::io::Errno::XDEV.raw_os_error() || code == rustix::io::Errno::PERM.raw_os_error())
}
