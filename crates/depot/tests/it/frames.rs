//! Seekable archives: `depot pack` cuts its `.tar.zst` into frames at entry boundaries, and a
//! deploy of a new version decodes only the frames it has not unpacked before. Every way this
//! can go wrong (a corrupted frame, a seek table that lies, a store that lost objects) ends in
//! the release the archive holds, or in a refusal that changes nothing.

use std::path::Path;
use std::process::Command;

use crate::common::TestContext;

/// A tree of 300 small files in 10 directories and 5 larger ones, deterministic content.
fn files(seed: u64) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for i in 0..300u64 {
        let text: String = (0..40).map(|j| format!("line {j} of file {i}: {}\n", (i * 7919 + j) % 1000)).collect();
        files.push((format!("lib/d{}/f{i}.txt", i % 10), text));
    }
    for i in 0..4u64 {
        let text: String = (0..4000).map(|j| format!("{:x}", (i + 1) * 2_654_435_761 * (j + seed % 3))).collect();
        files.push((format!("assets/big{i}.bin"), text));
    }
    // The last entry is large: the end-of-archive marker must not end up in a frame of its own.
    files.push(("zz/last.bin".to_owned(), "last entry\n".repeat(10_000)));
    files
}

fn release(ctx: &TestContext, version: &str, files: &[(String, String)]) -> std::path::PathBuf {
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    ctx.release(version, &refs)
}

/// What a fresh root makes of `archive`: the reference a deploy from frames must match.
fn fresh_tree(
    ctx: &TestContext,
    name: &str,
    version: &str,
    archive: &Path,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let root = ctx.path(name);
    ctx.run(&[
        "deploy",
        "--root",
        &root.display().to_string(),
        "--version",
        version,
        "--artifact-path",
        &archive.display().to_string(),
    ])
    .success();
    ctx.snapshot(&root.join("releases").join(version))
}

fn stats(run: &crate::common::Run) -> (u64, u64) {
    let json = run.json();
    (json["stats"]["frames_replayed"].as_u64().unwrap(), json["stats"]["frames_decoded"].as_u64().unwrap())
}

#[test]
fn a_new_version_is_staged_from_the_frames_that_changed_and_gives_the_same_release() {
    let ctx = TestContext::new();
    let mut tree = files(0);
    let v1 = release(&ctx, "1.0.0", &tree);
    let table = depot_release::archive::FrameTable::read(
        &mut fs_err::File::open(&v1).unwrap(),
        fs_err::metadata(&v1).unwrap().len(),
    )
    .unwrap()
    .expect("depot pack writes a seek table");
    assert!(table.frames.len() > 20, "small files share frames, large ones have their own: {}", table.frames.len());

    // Other tools read it as any .tar.zst.
    let listed = Command::new("tar").arg("-tf").arg(&v1).output().unwrap();
    assert!(listed.status.success(), "GNU tar: {}", String::from_utf8_lossy(&listed.stderr));
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().filter(|l| l.ends_with(".txt")).count(), 300);

    let first = ctx.deploy("1.0.0", &v1, &["--json"]).success();
    assert_eq!(stats(&first), (0, 0), "a first deploy unpacks the archive as one stream");

    // 1% of the files change: three small ones and one large one.
    for i in [5usize, 150, 299] {
        tree[i].1.push_str("changed\n");
    }
    tree[301].1.push_str("changed");
    let v2 = release(&ctx, "1.1.0", &tree);
    let second = ctx.deploy("1.1.0", &v2, &["--json"]).success();
    let (replayed, decoded) = stats(&second);
    assert!(replayed > 0 && decoded <= 6, "replayed {replayed}, decoded {decoded}");
    let json = second.json();
    assert!(json["stats"]["objects_written"].as_u64().unwrap() <= 5, "{json}");

    let staged = ctx.snapshot(&ctx.root().join("releases/1.1.0"));
    assert_eq!(staged, fresh_tree(&ctx, "reference", "1.1.0", &v2));
    assert_eq!(staged["lib/d5/f5.txt"], tree[5].1.as_bytes());
    assert_eq!(staged["assets/big1.bin"], tree[301].1.as_bytes());
    assert_eq!(staged["VERSION"], b"1.1.0\n");
    let log = fs_err::read_to_string(ctx.root().join("logs/releases.log")).unwrap_or_default();
    assert!(log.contains("frames replayed") && !log.contains("one stream"), "{log}");
}

#[test]
fn a_corrupted_frame_is_refused_and_changes_nothing() {
    let ctx = TestContext::new();
    let mut tree = files(1);
    let v1 = release(&ctx, "1.0.0", &tree);
    ctx.deploy("1.0.0", &v1, &[]).success();
    tree[10].1.push_str("changed\n");
    let v2 = release(&ctx, "1.1.0", &tree);
    let mut bytes = fs_err::read(&v2).unwrap();
    let table = depot_release::archive::FrameTable::read(&mut std::io::Cursor::new(&bytes), bytes.len() as u64)
        .unwrap()
        .unwrap();
    // A byte in the middle of a frame that the host has staged before (the second large file's).
    let frame = table.frames.iter().max_by_key(|frame| frame.compressed).unwrap();
    bytes[(frame.offset + frame.compressed / 2) as usize] ^= 0x55;
    fs_err::write(&v2, &bytes).unwrap();

    ctx.deploy("1.1.0", &v2, &[]).failure().stderr_contains("doesn't match checksum");
    assert_eq!(ctx.current().as_deref(), Some("1.0.0"));
    assert_eq!(ctx.release_dirs(), ["1.0.0", "current"]);
}

#[test]
fn a_seek_table_that_lies_or_a_store_that_lost_objects_still_gives_the_archive_s_release() {
    let ctx = TestContext::new();
    let mut tree = files(2);
    let v1 = release(&ctx, "1.0.0", &tree);
    ctx.deploy("1.0.0", &v1, &[]).success();
    tree[42].1.push_str("changed\n");
    let v2 = release(&ctx, "1.1.0", &tree);
    let reference = fresh_tree(&ctx, "reference", "1.1.0", &v2);

    // The table moves the boundary between the last two frames into the middle of an entry: their
    // decoded sizes are changed so that they still add up. zstd and tar ignore the table; the
    // deploy replays the frames it knows (by their bytes, whatever the table says of their
    // size), finds that the last does not decode to what the table says, and unpacks the
    // archive as one stream.
    let mut bytes = fs_err::read(&v2).unwrap();
    let len = bytes.len();
    let count = u32::from_le_bytes(bytes[len - 9..len - 5].try_into().unwrap()) as usize;
    let entries = len - 9 - count * 8;
    let decoded_at = |frame: usize| entries + frame * 8 + 4;
    let read = |bytes: &[u8], at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let (a, b) = (read(&bytes, decoded_at(count - 2)), read(&bytes, decoded_at(count - 1)));
    bytes[decoded_at(count - 2)..decoded_at(count - 2) + 4].copy_from_slice(&(a + 512).to_le_bytes());
    bytes[decoded_at(count - 1)..decoded_at(count - 1) + 4].copy_from_slice(&(b - 512).to_le_bytes());
    let lying = ctx.path("lying.tar.zst");
    fs_err::write(&lying, &bytes).unwrap();
    let kept = || {
        walk(&ctx.root().join(".depot/layers")).iter().filter(|p| p.to_string_lossy().ends_with(".frames.json")).count()
    };
    assert_eq!(kept(), 1, "the frames of 1.0.0");
    ctx.deploy("1.1.0", &lying, &[]).success();
    // Its frames are kept as the decoder found them, whatever the table says: the deploy of the
    // honest archive below replays some of them.
    assert_eq!(kept(), 2);
    assert_eq!(ctx.snapshot(&ctx.root().join("releases/1.1.0")), reference);
    let log = fs_err::read_to_string(ctx.root().join("logs/releases.log")).unwrap();
    assert!(log.contains("unpacking it as one stream"), "{log}");

    // A store that lost objects (removed by hand here): the frames naming them are decoded.
    ctx.run(&["rollback", "--root", &ctx.root_str()]).success();
    fs_err::remove_dir_all(ctx.root().join("releases/1.1.0")).unwrap();
    let store = ctx.root().join(".depot/store");
    let mut removed = 0;
    for entry in walk(&store) {
        if removed < 50 && entry.is_file() {
            fs_err::remove_file(&entry).unwrap();
            removed += 1;
        }
    }
    let run = ctx.deploy("1.1.0", &v2, &["--json"]).success();
    assert_eq!(ctx.snapshot(&ctx.root().join("releases/1.1.0")), reference);
    let (replayed, decoded) = stats(&run);
    assert!(replayed > 0 && decoded > 1, "replayed {replayed}, decoded {decoded}");
}

pub(crate) fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { found.extend(walk(&path)) } else { found.push(path) }
    }
    found.sort();
    found
}
