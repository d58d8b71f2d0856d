//! An image layer made into a depot layer archive (`.tar.zst`): the same entries, in the same
//! order, with their modes and times, and the whiteouts kept for staging to apply
//! ([`depot_release::stage`]). What a release cannot hold is changed where the meaning is
//! certain and skipped otherwise, and each change is reported:
//! - an absolute symlink target (`/usr/lib/x`) points into the image's own root: it becomes the
//!   same path relative to the link (`../lib/x`);
//! - `..` that climbs above the root from a link's own directories stops at the root, as the
//!   kernel's does (`/..` is `/`);
//! - device nodes and fifos are skipped (a release holds files, directories and links);
//! - owners are dropped (releases belong to the user that deploys them).
//!
//! The layer's bytes are checked against its digests as they pass: the stored blob's sha256
//! (when the source names it) and the uncompressed tar's (`diff_id`). A mismatch stops the
//! import before anything is pushed.

use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use depot_release::digest::HashingReader;
use depot_release::progress::{Progress, ProgressReader};

/// What converting one layer did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Converted {
    pub entries: u64,
    /// Symlinks whose absolute or root-climbing target was rewritten.
    pub links_rewritten: u64,
    /// Entries a release cannot hold, with why.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, serde::Serialize)]
pub struct Skipped {
    pub path: String,
    pub why: &'static str,
}

/// Converts the layer in `raw` (a tar, maybe gzip- or zstd-compressed) into `output`.
pub fn convert(
    raw: Box<dyn Read + Send>,
    blob_sha256: Option<&str>,
    diff_id: &str,
    output: &Path,
    progress: &dyn Progress,
) -> anyhow::Result<Converted> {
    let mut stored = HashingReader::new(ProgressReader::new(raw, progress));
    let mut converted = Converted::default();
    let file = fs_err::File::create(output)?;
    let mut encoder = zstd::Encoder::new(io::BufWriter::new(file), 3)?;
    encoder.multithread(2).ok();
    {
        let decoded = depot_release::archive::decoder(&mut stored).context("the layer is not a tar archive")?;
        let mut uncompressed = HashingReader::new(decoded);
        {
            let mut builder = tar::Builder::new(&mut encoder);
            let mut archive = tar::Archive::new(&mut uncompressed);
            for entry in archive.entries().context("the layer is not a tar archive")? {
                let entry = entry.context("the layer is not a readable tar archive")?;
                copy_entry(entry, &mut builder, &mut converted)?;
            }
            builder.finish()?;
        }
        // What follows the last entry (the end blocks, padding) counts for the digest too.
        io::copy(&mut uncompressed, &mut io::sink()).context("the layer is not a readable tar archive")?;
        let (actual, _) = uncompressed.finish();
        if actual != diff_id {
            bail!("the layer's content has sha256 {actual}, not sha256:{diff_id} as the image says: it is damaged");
        }
    }
    io::copy(&mut stored, &mut io::sink())?;
    let (actual, _) = stored.finish();
    if let Some(expected) = blob_sha256
        && actual != expected
    {
        bail!("the layer's blob has sha256 {actual}, not sha256:{expected} as its name says: it is damaged");
    }
    encoder.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(converted)
}

fn copy_entry<W: Write>(
    mut entry: tar::Entry<'_, impl Read>,
    builder: &mut tar::Builder<W>,
    converted: &mut Converted,
) -> anyhow::Result<()> {
    // A PAX sparse file (bsdtar's, GNU tar's with --format=posix) is written out whole under
    // its real name, as staging would; GNU's old sparse type is expanded by the tar reader.
    let sparse = depot_release::archive::PaxSparse::of(&mut entry).context("a sparse file's map")?;
    let raw = match sparse.as_ref().and_then(|s| s.name.clone()) {
        Some(name) => name.into_bytes(),
        None => entry.path_bytes().into_owned(),
    };
    let path = String::from_utf8(raw).map_err(|e| {
        anyhow::anyhow!("the layer has a path that is not UTF-8: {}", String::from_utf8_lossy(e.as_bytes()))
    })?;
    let kind = entry.header().entry_type();
    if matches!(kind, tar::EntryType::XGlobalHeader) {
        return Ok(());
    }
    converted.entries += 1;
    let source = entry.header();
    let mut header = tar::Header::new_gnu();
    header.set_mode(source.mode().unwrap_or(0o644) & 0o7777);
    header.set_mtime(source.mtime().unwrap_or(0));
    header.set_uid(0);
    header.set_gid(0);
    if kind.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        builder.append_data(&mut header, &path, io::empty())?;
    } else if let Some(sparse) = sparse {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(sparse.real_size);
        let stored = entry.size();
        let content = sparse.reader(&mut entry, stored).context("a sparse file")?;
        builder.append_data(&mut header, &path, content)?;
    } else if kind.is_file() || kind.is_gnu_sparse() || matches!(kind, tar::EntryType::Continuous) {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(entry.size());
        builder.append_data(&mut header, &path, &mut entry)?;
    } else if kind.is_symlink() || kind.is_hard_link() {
        let target = entry
            .link_name_bytes()
            .map(|t| String::from_utf8(t.into_owned()))
            .transpose()
            .map_err(|_| anyhow::anyhow!("the link {path} has a target that is not UTF-8"))?
            .with_context(|| format!("the link {path} has no target"))?;
        let target = if kind.is_symlink() {
            let (rewritten, changed) = symlink_inside(&path, &target);
            converted.links_rewritten += u64::from(changed);
            header.set_entry_type(tar::EntryType::Symlink);
            rewritten
        } else {
            // Hard link targets are paths from the layer's root.
            header.set_entry_type(tar::EntryType::Link);
            target.trim_start_matches('/').to_owned()
        };
        header.set_size(0);
        builder.append_link(&mut header, &path, &target)?;
    } else {
        let why = if kind.is_character_special() || kind.is_block_special() {
            "device node"
        } else if kind.is_fifo() {
            "fifo"
        } else {
            "unsupported entry type"
        };
        converted.skipped.push(Skipped { path, why });
    }
    Ok(())
}

/// The target a symlink at `link` keeps in a release, and whether it changed: an absolute
/// target becomes relative to the link's directory, and `..` past the root while still in the
/// link's own ancestors (real directories) is dropped, as the kernel stops there. A target
/// that climbs out after naming something else is left for staging to judge.
fn symlink_inside(link: &str, target: &str) -> (String, bool) {
    let link = link.trim_start_matches("./").trim_end_matches('/');
    let depth = link.split('/').filter(|p| !p.is_empty() && *p != ".").count().saturating_sub(1);
    let (mut parts, rest, mut changed): (Vec<&str>, &str, bool) = match target.strip_prefix('/') {
        Some(rest) => (vec![".."; depth], rest, true),
        None => (Vec::new(), target, false),
    };
    // How many of the leading `..` still stand for an ancestor of the link.
    let mut climbed = parts.len();
    let mut named = false;
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." if !named && climbed >= depth => changed = true,
            ".." => {
                if !named {
                    climbed += 1;
                }
                parts.push("..");
            }
            part => {
                named = true;
                parts.push(part);
            }
        }
    }
    if !changed {
        return (target.to_owned(), false);
    }
    let rewritten = parts.join("/");
    (if rewritten.is_empty() { ".".to_owned() } else { rewritten }, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_the_image_root() {
        assert_eq!(symlink_inside("usr/bin/awk", "/etc/alternatives/awk"), ("../../etc/alternatives/awk".into(), true));
        assert_eq!(symlink_inside("bin", "usr/bin"), ("usr/bin".into(), false));
        assert_eq!(symlink_inside("lib64", "/"), (".".into(), true));
        assert_eq!(symlink_inside("usr/lib/x", "../../../../etc/y"), ("../../etc/y".into(), true));
        assert_eq!(symlink_inside("usr/lib/x", "../lib64/y"), ("../lib64/y".into(), false));
        // Climbing out after naming something is not rewritten: staging refuses it.
        assert_eq!(symlink_inside("a/x", "b/../../../y"), ("b/../../../y".into(), false));
        assert_eq!(symlink_inside("x", ".."), (".".into(), true));
    }
}
