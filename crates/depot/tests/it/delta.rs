//! Delta transfer: an agent that has unpacked an earlier version of a layer fetches only the
//! frames of the new archive it has not staged before, as ranges of the registry's blob, checked
//! against the registry's frame index. Whatever goes wrong (a corrupted blob, a lying index, a
//! missing blob, a transfer cut short, a pruned store), the host ends on the archive's own release
//! or refuses it and keeps the one it had.

use std::path::{Path, PathBuf};

use crate::common::{Run, TestContext};
use crate::frames::walk;
use crate::registry::Registry;
use crate::serve::http;

/// 1,000 small files in 40 directories and 4 larger ones: about a hundred frames.
fn files() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for i in 0..1000u64 {
        let text: String = (0..30).map(|j| format!("line {j} of file {i}: {}\n", (i * 7919 + j) % 1009)).collect();
        files.push((format!("lib/d{}/f{i}.txt", i % 40), text));
    }
    for i in 0..4u64 {
        let text: String = (0..20_000).map(|j| format!("{:x}", (i + 1) * 2_654_435_761 * (j + 1))).collect();
        files.push((format!("assets/big{i}.bin"), text));
    }
    files
}

/// 1% of the files changed: ten small ones far apart.
fn changed(mut files: Vec<(String, String)>, mark: &str) -> Vec<(String, String)> {
    for i in (0..1000).step_by(100) {
        files[i].1.push_str(mark);
    }
    files
}

struct Host<'a> {
    ctx: &'a TestContext,
    registry: &'a Registry,
    token: String,
    root: PathBuf,
    /// The digest of web 1.0.0.
    v1: String,
}

impl Host<'_> {
    fn once(&self) -> Run {
        let root = self.root.display().to_string();
        let args = ["agent", "--config", "web-prod", "--name", "host-1", "--once", "--root", &root];
        self.registry.run_as(self.ctx, &self.token, &args)
    }

    fn retry(&self) {
        self.ctx.run(&["agent", "retry", "--root", &self.root.display().to_string()]).success();
    }

    fn current(&self) -> BTreeTree {
        let current = fs_err::read_link(self.root.join("releases/current")).unwrap();
        self.ctx.snapshot(&self.root.join("releases").join(current))
    }
}

type BTreeTree = std::collections::BTreeMap<String, Vec<u8>>;

/// A registry with web 1.0.0 (`files()`) in configuration web-prod, and a host that has deployed
/// it.
fn deployed<'a>(ctx: &'a TestContext, registry: &'a Registry) -> Host<'a> {
    let (_, v1) = push(ctx, registry, "1.0.0", &files());
    registry.run(ctx, &["config", "create", "web-prod", "--layer", "web:1.0.0"]).success();
    let run = registry.run(ctx, &["token", "create", "host-1", "--role", "agent", "--config", "web-*"]).success();
    let host = Host { ctx, registry, token: run.stdout.trim().to_owned(), root: ctx.root(), v1 };
    let first = host.once().success();
    assert!(!first.stderr.contains("frames"), "a first deploy downloads the whole layer: {}", first.stderr);
    host
}

/// Packs `files` as `version`, pushes it as web `version`; returns the archive and its digest.
fn push(ctx: &TestContext, registry: &Registry, version: &str, files: &[(String, String)]) -> (PathBuf, String) {
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let archive = ctx.release(version, &refs);
    let pushed = registry.run(ctx, &["push", "web", version, &archive.display().to_string()]).success();
    (archive, pushed.stdout.trim().to_owned())
}

/// What a fresh root makes of `archive`.
fn reference(ctx: &TestContext, name: &str, archive: &Path) -> BTreeTree {
    let root = ctx.path(name);
    let root_arg = root.display().to_string();
    let archive = archive.display().to_string();
    ctx.run(&["deploy", "--root", &root_arg, "--version", "v", "--artifact-path", &archive]).success();
    ctx.snapshot(&root.join("releases/v"))
}

fn address(registry: &Registry) -> String {
    registry.url.trim_start_matches("http://").trim_end_matches('/').to_owned()
}

/// The bytes of blobs the registry has sent, from its metrics.
fn sent(registry: &Registry) -> u64 {
    counter(registry, "depot_blob_sent_bytes_total")
}

/// The bytes of blobs the registry has received.
fn received(registry: &Registry) -> u64 {
    counter(registry, "depot_blob_received_bytes_total")
}

fn counter(registry: &Registry, name: &str) -> u64 {
    let (status, metrics) = http(&address(registry), "GET", "/metrics", "", b"");
    assert_eq!(status, 200);
    let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {metrics}"));
    line.split_whitespace().last().unwrap().parse().unwrap()
}

/// (frames fetched, frames in all, bytes fetched, blob size) from an agent's message.
fn fetched(run: &Run) -> (u64, u64, u64, u64) {
    let line = run.stderr.lines().find(|l| l.contains(" frames (")).unwrap_or_else(|| panic!("{}", run.stderr));
    let numbers: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    let n = numbers.len();
    (numbers[n - 4], numbers[n - 3], numbers[n - 2], numbers[n - 1])
}

fn blob_file(ctx: &TestContext, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    ctx.path("registry-data").join("blobs/sha256").join(&hex[..2]).join(hex)
}

fn index(registry: &Registry, digest: &str) -> serde_json::Value {
    let (status, body) =
        http(&address(registry), "GET", &format!("/api/v1/blobs/{digest}/frames"), &registry.admin, b"");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_changed_layer_reaches_an_agent_as_the_frames_that_changed() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let host = deployed(&ctx, &registry);
    let (v2, digest) = push(&ctx, &registry, "1.1.0", &changed(files(), "changed\n"));
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.1.0"]).success();

    let before = sent(&registry);
    let run = host.once().success();
    let (frames, all, bytes, size) = fetched(&run);
    assert_eq!(size, fs_err::metadata(&v2).unwrap().len());
    assert!(all > 50 && frames <= 12, "ten changed files and the last frame: {frames} of {all} frames");
    assert!(bytes * 5 < size, "{bytes} of {size} bytes fetched");
    assert_eq!(sent(&registry) - before, bytes, "the registry sent only those bytes");
    assert_eq!(host.current(), reference(&ctx, "reference", &v2));
    // Nothing is left of the fetch. The layer's frame records are kept, but not a listing: the
    // host never hashed the archive, so nothing on it may stand for the archive's digest.
    let blobs: Vec<_> = fs_err::read_dir(host.root.join(".depot/agent/blobs")).unwrap().collect();
    assert!(blobs.is_empty(), "{blobs:?}");
    let layers = host.root.join(".depot/layers");
    let hex = digest.trim_start_matches("sha256:");
    assert!(layers.join(format!("{hex}.frames.json")).is_file());
    assert!(!layers.join(format!("{hex}.json")).exists());

    // The index is the blob's own: its frames cover the blob up to its seek table.
    let index = index(&registry, &digest);
    let frames = index["frames"].as_array().unwrap();
    assert_eq!(frames.len() as u64, all);
    let covered: u64 = frames.iter().map(|f| f["compressed"].as_u64().unwrap()).sum();
    assert!(covered < size && size - covered < 64 + 12 * all, "the seek table follows the frames");
}

#[test]
fn a_corrupted_blob_a_lying_index_and_a_missing_blob_end_in_the_archive_s_release_or_a_refusal() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let host = deployed(&ctx, &registry);
    let v1_tree = host.current();

    // The blob rots on the registry's disk after its index was read: the frame that differs from
    // the index is refused, then the whole blob, against its digest. Nothing changes.
    let (v2, digest) = push(&ctx, &registry, "1.1.0", &changed(files(), "changed\n"));
    let index_of_v2 = index(&registry, &digest);
    let blob = blob_file(&ctx, &digest);
    let honest = fs_err::read(&blob).unwrap();
    let mut rotten = honest.clone();
    let last =
        index_of_v2["frames"].as_array().unwrap().iter().map(|f| f["compressed"].as_u64().unwrap()).sum::<u64>() - 20;
    rotten[last as usize] ^= 0x55;
    fs_err::write(&blob, &rotten).unwrap();
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.1.0"]).success();
    let run = host.once().failure();
    assert!(run.stderr.contains("does not match the registry's index"), "{}", run.stderr);
    assert!(run.stderr.contains("the blob's bytes have digest"), "{}", run.stderr);
    assert_eq!(host.current(), v1_tree);

    // Healed, the blob's index lies instead: a frame that changed claims the hash of a frame the
    // host has staged before. The host replays that frame's files, finds them twice in the
    // layer, and downloads the whole blob, which gives the archive's release.
    fs_err::write(&blob, &honest).unwrap();
    let frames = index_of_v2["frames"].as_array().unwrap();
    let v1_index = index(&registry, &host.v1);
    let old: std::collections::HashSet<&str> =
        v1_index["frames"].as_array().unwrap().iter().map(|f| f["sha256"].as_str().unwrap()).collect();
    let new_frame = frames.iter().position(|f| !old.contains(f["sha256"].as_str().unwrap())).unwrap();
    let neighbour =
        (0..frames.len()).find(|&i| i != new_frame && old.contains(frames[i]["sha256"].as_str().unwrap())).unwrap();
    let mut lie = index_of_v2.clone();
    lie["frames"][new_frame]["sha256"] = frames[neighbour]["sha256"].clone();
    lie["frames"][new_frame]["decoded"] = frames[neighbour]["decoded"].clone();
    let db = rusqlite::Connection::open(ctx.path("registry-data").join("depot.db")).unwrap();
    let updated =
        db.execute("UPDATE blob_frames SET frames = ?1 WHERE digest = ?2", [lie.to_string(), digest.clone()]).unwrap();
    assert_eq!(updated, 1);
    host.retry();
    let run = host.once().success();
    assert!(run.stderr.contains("cannot be staged") && run.stderr.contains("appears twice"), "{}", run.stderr);
    assert_eq!(host.current(), reference(&ctx, "reference-2", &v2));

    // A blob the registry lost: refused, nothing changes; pushed again, it arrives.
    let (v3, digest) = push(&ctx, &registry, "1.2.0", &changed(files(), "changed again\n"));
    let v2_tree = host.current();
    fs_err::remove_file(blob_file(&ctx, &digest)).unwrap();
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.2.0"]).success();
    host.once().failure().stderr_contains("unknown blob");
    assert_eq!(host.current(), v2_tree);
    registry.run(&ctx, &["push", "web", "1.2.0", &v3.display().to_string()]).success();
    host.retry();
    host.once().success();
    assert_eq!(host.current(), reference(&ctx, "reference-3", &v3));
}

#[test]
fn a_fetch_cut_short_resumes_and_a_pruned_store_fetches_what_it_lost() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let host = deployed(&ctx, &registry);
    let (v2, _) = push(&ctx, &registry, "1.1.0", &changed(files(), "changed\n"));
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.1.0"]).success();

    // Killed after its first range of frames: what it fetched is kept, checked again, and not
    // fetched twice.
    let root = host.root.display().to_string();
    let args = ["agent", "--config", "web-prod", "--name", "host-1", "--once", "--root", &root];
    let mut command = ctx.command();
    command
        .env("DEPOT_REGISTRY", &registry.url)
        .env("DEPOT_TOKEN", &host.token)
        .env(depot_release::killpoint::ENV, "agent-frames-fetched")
        .args(args);
    let killed = command.output().unwrap();
    assert!(!killed.status.success(), "killed");
    let before = sent(&registry);
    let resumed = host.once().success();
    let (frames, _, bytes, _) = fetched(&resumed);
    assert_eq!(sent(&registry) - before, bytes);
    let reference_run = {
        // The same change on a host that was not interrupted.
        let other = Host { root: ctx.path("other-root"), ..host_clone(&host) };
        registry.run(&ctx, &["config", "set", "web-prod", "web:1.0.0"]).success();
        other.once().success();
        registry.run(&ctx, &["config", "set", "web-prod", "web:1.1.0"]).success();
        other.once().success()
    };
    let (all_frames, _, all_bytes, _) = fetched(&reference_run);
    assert!(frames < all_frames && bytes < all_bytes, "resumed: {frames} frames; whole: {all_frames}");
    assert_eq!(host.current(), reference(&ctx, "reference", &v2));

    // The host's store loses objects (a prune, a disk cleaned by hand): the frames that named
    // them are fetched too.
    let (v3, _) = push(&ctx, &registry, "1.2.0", &changed(files(), "changed again\n"));
    let store = host.root.join(".depot/store");
    let mut removed = 0;
    for path in walk(&store) {
        if removed < 20 {
            fs_err::remove_file(path).unwrap();
            removed += 1;
        }
    }
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.2.0"]).success();
    let run = host.once().success();
    let (frames, all, _, _) = fetched(&run);
    assert!(frames > 12 && frames < all, "{frames} of {all}");
    assert_eq!(host.current(), reference(&ctx, "reference-3", &v3));
}

fn host_clone<'a>(host: &Host<'a>) -> Host<'a> {
    Host {
        ctx: host.ctx,
        registry: host.registry,
        token: host.token.clone(),
        root: host.root.clone(),
        v1: host.v1.clone(),
    }
}

#[test]
fn a_push_sends_only_the_frames_the_registry_lacks_and_a_bad_assembly_stores_nothing() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    push(&ctx, &registry, "1.0.0", &files());

    let before = received(&registry);
    let refs: Vec<(String, String)> = changed(files(), "changed\n");
    let refs: Vec<(&str, &str)> = refs.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let v2 = ctx.release("1.1.0", &refs);
    let run = registry.run(&ctx, &["push", "web", "1.1.0", &v2.display().to_string()]).success();
    assert!(run.stderr.contains("the registry had the rest in web 1.0.0"), "{}", run.stderr);
    let size = fs_err::metadata(&v2).unwrap().len();
    let sent = received(&registry) - before;
    assert!(sent * 5 < size, "{sent} of {size} bytes sent");
    let digest = run.stdout.trim().to_owned();
    assert_eq!(fs_err::read(blob_file(&ctx, &digest)).unwrap(), fs_err::read(&v2).unwrap());

    // The registry's copy of 1.1.0, which the next push builds on, rots after its index was
    // read: the assembly does not give the digest, nothing is kept, and the push uploads the
    // archive whole.
    index(&registry, &digest);
    let rotten = blob_file(&ctx, &digest);
    let mut bytes = fs_err::read(&rotten).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs_err::write(&rotten, &bytes).unwrap();
    let refs: Vec<(String, String)> = changed(files(), "changed again\n");
    let refs: Vec<(&str, &str)> = refs.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let v3 = ctx.release("1.2.0", &refs);
    let run = registry.run(&ctx, &["push", "web", "1.2.0", &v3.display().to_string()]).success();
    assert!(run.stderr.contains("uploading it whole"), "{}", run.stderr);
    assert_eq!(fs_err::read(blob_file(&ctx, run.stdout.trim())).unwrap(), fs_err::read(&v3).unwrap());

    // Hostile assemblies: each refused, nothing stored under the digest.
    let put = |digest: &str, body: &[u8]| {
        http(&address(&registry), "PUT", &format!("/api/v1/blobs/{digest}/assembly"), &registry.admin, body)
    };
    let other = format!("sha256:{}", "ab".repeat(32));
    let cases: [(String, &str); 6] = [
        (format!("{{\"parts\":[{{\"from\":\"{digest}\",\"offset\":0,\"length\":{}}}]}}\n", size + 1), "not within"),
        ("{\"parts\":[{\"length\":3}]}\nabcdef".to_owned(), "more bytes"),
        ("{\"parts\":[{\"length\":30}]}\nabc".to_owned(), "ended 27 bytes before"),
        ("{\"parts\":[]".to_owned(), "no newline"),
        (format!("{{\"parts\":[{{\"from\":\"{digest}\",\"offset\":0,\"length\":100}}]}}\n"), "digest"),
        ("{\"parts\":[{\"offset\":5,\"length\":3}]}\nabc".to_owned(), "no offset"),
    ];
    for (body, expected) in cases {
        let (status, answer) = put(&other, body.as_bytes());
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.contains(expected), "{body}: {answer}");
    }
    assert!(!blob_file(&ctx, &other).exists());
    let unknown = format!("{{\"parts\":[{{\"from\":\"{other}\",\"offset\":0,\"length\":1}}]}}\n");
    let (status, answer) = put(&other, unknown.as_bytes());
    assert_eq!(status, 404, "{answer}");
    let viewer = registry.run(&ctx, &["token", "create", "viewer-1", "--role", "viewer"]).success();
    let (status, _) = http(
        &address(&registry),
        "PUT",
        &format!("/api/v1/blobs/{other}/assembly"),
        viewer.stdout.trim(),
        b"{\"parts\":[]}\n",
    );
    assert_eq!(status, 403);
}

#[test]
fn on_postgres_and_s3_a_push_and_an_agent_move_only_the_frames_that_changed() {
    let ctx = TestContext::new();
    let database = depot_testkit::Postgres::fresh_database();
    let bucket = depot_testkit::garage::Garage::shared().bucket();
    let data = ctx.path("data");
    let server = crate::serve::spawn_server(crate::serve::s3_command(&ctx, &data, &bucket, &["--metadata", &database]));
    let admin = crate::serve::token(&data);
    let url = format!("http://{}", server.address);
    let depot = |token: &str, args: &[&str]| {
        let mut command = ctx.command();
        command.env("DEPOT_REGISTRY", &url).env("DEPOT_TOKEN", token).args(args);
        Run::from(command.output().unwrap())
    };
    let archive = |version: &str, files: &[(String, String)]| {
        let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        ctx.release(version, &refs).display().to_string()
    };
    let v1 = archive("1.0.0", &files());
    let v2 = archive("1.1.0", &changed(files(), "changed\n"));
    depot(&admin, &["push", "web", "1.0.0", &v1]).success();
    let pushed = depot(&admin, &["push", "web", "1.1.0", &v2]).success();
    assert!(pushed.stderr.contains("the registry had the rest in web 1.0.0"), "{}", pushed.stderr);

    depot(&admin, &["config", "create", "web-prod", "--layer", "web:1.0.0"]).success();
    let token = depot(&admin, &["token", "create", "host-1", "--role", "agent", "--config", "web-*"]).success();
    let token = token.stdout.trim();
    let root = ctx.root().display().to_string();
    let agent = || depot(token, &["agent", "--config", "web-prod", "--name", "host-1", "--once", "--root", &root]);
    agent().success();
    depot(&admin, &["config", "set", "web-prod", "web:1.1.0"]).success();
    let run = agent().success();
    let (frames, all, bytes, size) = fetched(&run);
    assert!(frames <= 12 && bytes * 5 < size, "{frames} of {all} frames, {bytes} of {size} bytes");
    let current = fs_err::read_link(ctx.root().join("releases/current")).unwrap();
    assert_eq!(ctx.snapshot(&ctx.root().join("releases").join(current)), reference(&ctx, "reference", Path::new(&v2)));
}
