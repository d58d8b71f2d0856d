//! `depot serve` as a process: first start, restarts, and kill -9 during uploads and
//! configuration writes. Requests are raw HTTP/1.1 over TCP so that a test can stop half-way.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::*;

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) address: String,
    pub(crate) stderr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(ctx: &TestContext, data: &Path) -> Server {
    start_with(ctx, data, &[])
}

pub(crate) fn start_with(ctx: &TestContext, data: &Path, extra: &[&str]) -> Server {
    let data = data.to_str().unwrap();
    let args: Vec<&str> = ["--listen", "127.0.0.1:0", "--gc-grace", "0s", "--data", data]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    start_args(ctx, &args)
}

/// `depot serve ARGS`, once it says where it listens (http or https).
pub(crate) fn start_args(ctx: &TestContext, args: &[&str]) -> Server {
    let mut command = ctx.command();
    command.arg("serve").args(args);
    spawn_server(command)
}

/// Spawns `command` (a `depot serve`) and waits until it says where it listens.
pub(crate) fn spawn_server(mut command: std::process::Command) -> Server {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut stderr = String::new();
    let address = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "depot serve exited early:\n{stderr}");
        stderr.push_str(&line);
        if let Some(rest) =
            line.split("listening on http://").nth(1).or_else(|| line.split("listening on https://").nth(1))
        {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    Server { child, address, stderr }
}

pub(crate) fn kill9(server: &mut Server) {
    let _ = server.child.kill();
    let _ = server.child.wait();
}

/// One request with `Connection: close`; returns the status and the body.
pub(crate) fn http(address: &str, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn token(data: &Path) -> String {
    fs_err::read_to_string(data.join("admin.token")).unwrap().trim().to_owned()
}

/// Uploads `archive` as component `web` version `version`.
pub(crate) fn push(address: &str, token: &str, archive: &[u8], version: &str) -> String {
    let digest = format!("sha256:{}", sha256_hex(archive));
    let (status, body) = http(address, "PUT", &format!("/api/v1/blobs/{digest}"), token, archive);
    assert!(status == 201 || status == 200, "upload: {status} {body}");
    let (status, body) = http(
        address,
        "PUT",
        &format!("/api/v1/components/web/versions/{version}"),
        token,
        format!("{{\"digest\":\"{digest}\"}}").as_bytes(),
    );
    assert!(status == 201 || status == 200, "version: {status} {body}");
    digest
}

/// Creates configuration `prod` with the one layer `web:VERSION`.
pub(crate) fn create_prod(address: &str, token: &str, version: &str) {
    let body = format!(r#"{{"name":"prod","layers":[{{"component":"web","version":"{version}"}}]}}"#);
    let (status, body) = http(address, "POST", "/api/v1/configs", token, body.as_bytes());
    assert_eq!(status, 201, "{body}");
}

/// Sets configuration `prod` to web 2.0.0 and 1.0.0 in turn through `address`, as fast as it
/// answers, until it stops answering; returns each acknowledged (revision, version).
pub(crate) fn write_until_killed(address: &str, token: &str) -> std::thread::JoinHandle<Vec<(u64, &'static str)>> {
    let (address, token) = (address.to_owned(), token.to_owned());
    std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        for i in 0..10_000 {
            let version = if i % 2 == 0 { "2.0.0" } else { "1.0.0" };
            let body = format!(r#"{{"layers":[{{"component":"web","version":"{version}"}}]}}"#);
            let Ok(mut stream) = TcpStream::connect(&address) else { break };
            let head = format!(
                "PATCH /api/v1/configs/prod HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(head.as_bytes()).is_err() {
                break;
            }
            let mut response = String::new();
            if stream.read_to_string(&mut response).is_err() || !response.starts_with("HTTP/1.1 200") {
                break;
            }
            let json: serde_json::Value = serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
            acknowledged.push((json["revision"].as_u64().unwrap(), version));
        }
        acknowledged
    })
}

fn blob_files(data: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for prefix in fs_err::read_dir(data.join("blobs/sha256")).unwrap() {
        for entry in fs_err::read_dir(prefix.unwrap().path()).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    files
}

#[test]
fn first_start_creates_the_admin_token_once() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let server = start(&ctx, &data);
    assert!(server.stderr.contains("Created the admin token"), "{}", server.stderr);
    let token = token(&data);
    assert!(server.stderr.contains(&token), "the token is printed once");
    assert_eq!(fs_err::metadata(data.join("admin.token")).unwrap().permissions().mode() & 0o777, 0o600);
    let (status, body) = http(&server.address, "GET", "/api/v1/whoami", &token, b"");
    assert_eq!(status, 200, "{body}");
    drop(server);

    let server = start(&ctx, &data);
    assert!(!server.stderr.contains("Created the admin token"), "{}", server.stderr);
    assert_eq!(http(&server.address, "GET", "/api/v1/whoami", &token, b"").0, 200, "the token survives a restart");
    assert_eq!(http(&server.address, "GET", "/healthz", "", b"").0, 200);
    let (status, metrics) = http(&server.address, "GET", "/metrics", "", b"");
    assert_eq!(status, 200);
    for name in [
        "depot_http_requests_total",
        "depot_blob_received_bytes_total",
        "depot_http_request_duration_seconds_bucket",
        "process_resident_memory_bytes",
        "depot_build_info",
        "depot_watchers",
        "depot_versions",
        "depot_configurations",
    ] {
        assert!(metrics.contains(name), "{name} in /metrics:\n{metrics}");
    }
}

#[test]
fn a_kill_during_an_upload_leaves_no_blob_and_its_temporary_file_is_collected() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let mut server = start(&ctx, &data);
    let token = token(&data);
    let digest = format!("sha256:{}", "ab".repeat(32));
    let mut stream = TcpStream::connect(&server.address).unwrap();
    let head = format!(
        "PUT /api/v1/blobs/{digest} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        64 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&vec![7u8; 4 * 1024 * 1024]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    kill9(&mut server);
    drop(stream);
    assert!(fs_err::read_dir(data.join("blobs/uploads")).unwrap().count() >= 1, "the kill left an upload behind");

    let server = start(&ctx, &data);
    let (status, body) = http(&server.address, "GET", &format!("/api/v1/blobs/{digest}"), &token, b"");
    assert_eq!(status, 404, "nothing unacknowledged is served: {body}");
    assert!(blob_files(&data).is_empty());
    let (status, body) = http(&server.address, "POST", "/api/v1/gc", &token, b"");
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(report["uploads_removed"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(fs_err::read_dir(data.join("blobs/uploads")).unwrap().count(), 0);
}

#[test]
fn a_kill_during_configuration_writes_loses_no_acknowledged_revision() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let mut server = start(&ctx, &data);
    let token = token(&data);
    let a = fs_err::read(ctx.release("1.0.0", &[("a.txt", "a\n")])).unwrap();
    let b = fs_err::read(ctx.release("2.0.0", &[("a.txt", "b\n")])).unwrap();
    push(&server.address, &token, &a, "1.0.0");
    push(&server.address, &token, &b, "2.0.0");
    create_prod(&server.address, &token, "1.0.0");

    let writer = write_until_killed(&server.address, &token);
    std::thread::sleep(Duration::from_millis(700));
    kill9(&mut server);
    let acknowledged: Vec<u64> = writer.join().unwrap().into_iter().map(|(revision, _)| revision).collect();
    assert!(acknowledged.len() > 3, "writes were under way when the server was killed");

    let server = start(&ctx, &data);
    let (status, body) = http(&server.address, "GET", "/api/v1/configs/prod/history", &token, b"");
    assert_eq!(status, 200, "{body}");
    let history: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let revisions: Vec<u64> = history.iter().map(|h| h["revision"].as_u64().unwrap()).collect();
    for revision in &acknowledged {
        assert!(revisions.contains(revision), "acknowledged revision {revision} survived the kill");
    }
    let expected: Vec<u64> = (1..=*revisions.last().unwrap()).collect();
    assert_eq!(revisions, expected, "revisions are contiguous, none half-written");
    let (status, body) = http(&server.address, "GET", "/api/v1/configs/prod", &token, b"");
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["revision"].as_u64().unwrap(), *revisions.last().unwrap());
}

#[test]
fn blocking_queries_wake_on_a_change_and_time_out_otherwise() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let server = start(&ctx, &data);
    let token = token(&data);
    let a = fs_err::read(ctx.release("1.0.0", &[("a.txt", "a\n")])).unwrap();
    let b = fs_err::read(ctx.release("2.0.0", &[("a.txt", "b\n")])).unwrap();
    push(&server.address, &token, &a, "1.0.0");
    push(&server.address, &token, &b, "2.0.0");
    create_prod(&server.address, &token, "1.0.0");

    let started = std::time::Instant::now();
    let (status, body) = http(&server.address, "GET", "/api/v1/configs/prod?after=1&wait=1s", &token, b"");
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(900), "held until the wait ended");
    assert!(body.contains("\"revision\":1"));

    let address = server.address.clone();
    let waiter_token = token.clone();
    let waiter = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let (status, body) = http(&address, "GET", "/api/v1/configs/prod?after=1&wait=30s", &waiter_token, b"");
        (status, body, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = http(
        &server.address,
        "PATCH",
        "/api/v1/configs/prod",
        &token,
        br#"{"layers":[{"component":"web","version":"2.0.0"}]}"#,
    );
    assert_eq!(status, 200);
    let (status, body, elapsed) = waiter.join().unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"revision\":2"), "{body}");
    assert!(elapsed < Duration::from_secs(5), "woken by the change, not the timeout ({elapsed:?})");
    let (status, plain) = http(&server.address, "GET", "/api/v1/configs/prod", &token, b"");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::from_str::<serde_json::Value>(&plain).unwrap(),
        "a woken watcher gets the same document as a plain read"
    );
    let (status, body) = http(&server.address, "GET", "/api/v1/configs/prod?after=0&wait=30s", &token, b"");
    assert_eq!(status, 200, "answers at once when a newer revision exists: {body}");

    // Deleted while waited on: not-found, at once.
    let address = server.address.clone();
    let waiter_token = token.clone();
    let waiter =
        std::thread::spawn(move || http(&address, "GET", "/api/v1/configs/prod?after=2&wait=30s", &waiter_token, b""));
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = http(&server.address, "DELETE", "/api/v1/configs/prod", &token, b"");
    assert_eq!(status, 204);
    let (status, body) = waiter.join().unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown-config"), "{body}");
}

/// Sends raw request text and returns the whole response (head and body).
fn raw(address: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn retention_gc_and_downloads_keep_what_is_referenced() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let server = start_with(&ctx, &data, &["--max-versions", "2"]);
    let token = token(&data);
    let archives: Vec<Vec<u8>> = (1..=4)
        .map(|n| fs_err::read(ctx.release(&format!("1.0.{n}"), &[("a.txt", &format!("{n}\n"))])).unwrap())
        .collect();
    let digests: Vec<String> = vec![
        push(&server.address, &token, &archives[0], "1.0.1"),
        push(&server.address, &token, &archives[1], "1.0.2"),
    ];
    create_prod(&server.address, &token, "1.0.1");
    let digests: Vec<String> = digests
        .into_iter()
        .chain([
            push(&server.address, &token, &archives[2], "1.0.3"),
            push(&server.address, &token, &archives[3], "1.0.4"),
        ])
        .collect();

    // At most 2 versions: 1.0.1 is used by prod and 1.0.4 is the newest.
    let (status, body) = http(&server.address, "GET", "/api/v1/components/web/versions", &token, b"");
    assert_eq!(status, 200);
    let versions: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let labels: Vec<&str> = versions.iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(labels, ["1.0.1", "1.0.4"]);

    let (status, body) = http(&server.address, "POST", "/api/v1/gc", &token, b"");
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["blobs_removed"], 2, "the blobs of 1.0.2 and 1.0.3: {report}");
    assert_eq!(blob_files(&data).len(), 2);
    for (index, expected) in [(0, 200), (1, 404), (2, 404), (3, 200)] {
        let (status, _) = http(&server.address, "GET", &format!("/api/v1/blobs/{}", digests[index]), &token, b"");
        assert_eq!(status, expected, "blob of 1.0.{}", index + 1);
    }

    // Range and ETag.
    let path = format!("/api/v1/blobs/{}", digests[0]);
    let response = raw(
        &server.address,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(response.starts_with("HTTP/1.1 206"), "{response}");
    let etag = format!("etag: \"{}\"", digests[0]);
    assert!(response.to_lowercase().contains(&etag), "{response}");
    let head = response.split_once("\r\n\r\n").unwrap().0.to_lowercase();
    assert!(head.contains("content-length: 10"), "{head}");
    assert!(head.contains(&format!("content-range: bytes 0-9/{}", archives[0].len())), "{head}");
    let response = raw(
        &server.address,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nIf-None-Match: \"{}\"\r\nConnection: close\r\n\r\n",
            digests[0]
        ),
    );
    assert!(response.starts_with("HTTP/1.1 304"), "{response}");
}

#[test]
fn an_upload_that_is_not_an_archive_or_does_not_match_its_digest_is_refused() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let server = start(&ctx, &data);
    let token = token(&data);
    let junk = b"this is not an archive at all".repeat(40);
    let (status, body) =
        http(&server.address, "PUT", &format!("/api/v1/blobs/sha256:{}", sha256_hex(&junk)), &token, &junk);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not-an-archive"), "{body}");
    let archive = fs_err::read(ctx.release("1.0.0", &[("a.txt", "a\n")])).unwrap();
    let (status, body) =
        http(&server.address, "PUT", &format!("/api/v1/blobs/sha256:{}", "0".repeat(64)), &token, &archive);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("digest-mismatch"), "{body}");
    assert!(blob_files(&data).is_empty(), "nothing refused is stored");
    assert_eq!(
        fs_err::read_dir(data.join("blobs/uploads")).unwrap().count(),
        0,
        "refused uploads leave no temporary file"
    );
}

/// Upload archive bombs: refused by the registry's check, whose memory stays bounded.
#[test]
fn uploads_that_are_archive_bombs_are_refused_within_bounded_memory() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let server = start(&ctx, &data);
    let token = token(&data);
    let rest = raw_tar(&[RawEntry::file("x", "x\n")]);
    let bombs = [
        ("long-name", tar::EntryType::GNULongName, "././@LongLink", 1u64 << 30),
        ("pax-global", tar::EntryType::XGlobalHeader, "pax_global_header", 256 << 20),
    ];
    for (name, kind, header_name, size) in bombs {
        let path = ctx.path(name);
        streamed_bomb(&path, kind, header_name, size, &rest);
        let bomb = fs_err::read(&path).unwrap();
        let (status, body) =
            http(&server.address, "PUT", &format!("/api/v1/blobs/sha256:{}", sha256_hex(&bomb)), &token, &bomb);
        assert_eq!(status, 400, "{name}: {body}");
        assert!(body.contains("not-an-archive") && body.contains("larger than the limit of 1048576 bytes"), "{body}");
    }
    // The check held at most a megabyte of header; the registry's peak stays far below the GiB.
    let status = fs_err::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(peak_kib < 200 * 1024, "the registry's resident peak reached {peak_kib} KiB");
    assert!(blob_files(&data).is_empty(), "nothing refused is stored");
}

/// A private CA and a certificate it signed for 127.0.0.1 and localhost: (ca.pem, cert.pem, key.pem).
pub(crate) fn private_ca(ctx: &TestContext, dir: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "depot test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let dir = ctx.path(dir);
    fs_err::create_dir_all(&dir).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    fs_err::write(&paths.0, ca.pem()).unwrap();
    fs_err::write(&paths.1, cert.pem()).unwrap();
    fs_err::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

#[test]
fn tls_serves_https_to_clients_that_trust_its_ca() {
    let ctx = TestContext::new();
    let (ca, cert, key) = private_ca(&ctx, "tls");
    let data = ctx.path("data");
    let server = start_with(&ctx, &data, &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    assert!(server.stderr.contains("listening on https://"), "{}", server.stderr);
    let url = format!("https://{}", server.address);
    let archive = ctx.release("1.0.0", &[("a.txt", "a\n")]);
    let client = |extra: &[&str]| {
        let mut command = ctx.command();
        command.env("DEPOT_TOKEN", token(&data)).env("DEPOT_REGISTRY", &url).args(extra);
        command.output().unwrap()
    };
    let output = client(&["push", "web", "1.0.0", archive.to_str().unwrap(), "--ca-cert", ca.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = client(&["versions", "web", "--json"]);
    assert_eq!(output.status.code(), Some(1), "the CA is not trusted without --ca-cert");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("hint:") && stderr.contains("--ca-cert"), "{stderr}");
    let mut command = ctx.command();
    command.env("DEPOT_TOKEN", token(&data)).env("DEPOT_REGISTRY", &url).env("DEPOT_CA_CERT", &ca);
    let output = command.args(["versions", "web", "--json"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let versions: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(versions[0]["version"], "1.0.0");
    // Plain HTTP to the TLS port gets no API answer.
    let (status, _) = http(&server.address, "GET", "/api/v1/components", &token(&data), b"");
    assert_ne!(status, 200);
}

#[test]
fn a_tls_key_that_does_not_suit_the_certificate_fails_the_start() {
    let ctx = TestContext::new();
    let (_, cert, _) = private_ca(&ctx, "one");
    let (_, _, other_key) = private_ca(&ctx, "two");
    let data = ctx.path("data");
    let args = ["serve", "--listen", "127.0.0.1:0", "--data", data.to_str().unwrap(), "--tls-cert"];
    ctx.run(&[&args[..], &[cert.to_str().unwrap(), "--tls-key", other_key.to_str().unwrap()]].concat())
        .failure()
        .stderr_contains("does not suit the certificate")
        .stderr_contains("hint:");
    assert!(!data.exists(), "nothing is created before the settings are checked");
    ctx.run(&[&args[..], &[cert.to_str().unwrap()]].concat()).usage_error();
    let missing = ctx.path("missing.pem");
    ctx.run(&[&args[..], &[missing.to_str().unwrap(), "--tls-key", other_key.to_str().unwrap()]].concat())
        .failure()
        .stderr_contains("missing.pem");
}

#[test]
fn settings_come_from_the_config_file_and_flags_override_it() {
    let ctx = TestContext::new();
    let conf = ctx.path("etc/serve.toml");
    fs_err::create_dir_all(conf.parent().unwrap()).unwrap();
    fs_err::write(&conf, "listen = \"127.0.0.1:0\"\ndata = \"registry\"\ngc_grace = \"0s\"\n").unwrap();
    let server = start_args(&ctx, &["--config", conf.to_str().unwrap()]);
    assert!(ctx.path("etc/registry/admin.token").exists(), "data is relative to the file: {}", server.stderr);
    drop(server);
    let other = ctx.path("other");
    let server = start_args(&ctx, &["--config", conf.to_str().unwrap(), "--data", other.to_str().unwrap()]);
    assert!(other.join("admin.token").exists(), "--data overrides the file: {}", server.stderr);
    drop(server);
    // The blob store's URL, from the file or the flag.
    let shared = ctx.path("shared-blobs");
    fs_err::write(&conf, format!("listen = \"127.0.0.1:0\"\nblobs = \"file://{}\"\n", shared.display())).unwrap();
    let server = start_args(&ctx, &["--config", conf.to_str().unwrap(), "--data", other.to_str().unwrap()]);
    assert!(server.stderr.contains(&format!("blobs: files in {}", shared.display())), "{}", server.stderr);
    assert!(shared.join("sha256").is_dir(), "{}", server.stderr);
    drop(server);
    let flag = ctx.path("flag-blobs");
    let url = format!("file://{}", flag.display());
    let server =
        start_args(&ctx, &["--config", conf.to_str().unwrap(), "--data", other.to_str().unwrap(), "--blobs", &url]);
    assert!(server.stderr.contains(&format!("blobs: files in {}", flag.display())), "{}", server.stderr);
    drop(server);
    fs_err::write(&conf, "listne = \"127.0.0.1:0\"\n").unwrap();
    ctx.run(&["serve", "--config", conf.to_str().unwrap()]).failure().stderr_contains("unknown field `listne`");
}

#[test]
fn a_shutdown_answers_blocking_queries_at_once() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let mut server = start(&ctx, &data);
    let token = token(&data);
    let archive = fs_err::read(ctx.release("1.0.0", &[("a.txt", "a\n")])).unwrap();
    push(&server.address, &token, &archive, "1.0.0");
    create_prod(&server.address, &token, "1.0.0");
    let address = server.address.clone();
    let watcher =
        std::thread::spawn(move || http(&address, "GET", "/api/v1/configs/prod?after=1&wait=300s", &token, b""));
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    rustix::process::kill_process(rustix::process::Pid::from_child(&server.child), rustix::process::Signal::TERM)
        .unwrap();
    let (status, body) = watcher.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"revision\":1"), "{body}");
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "stopped in {:?}", started.elapsed());
}

/// `depot serve --data DATA --blobs BUCKET-URL EXTRA` with the bucket's key in the AWS variables
/// (and no other AWS setting from the caller's environment).
pub(crate) fn s3_command(
    ctx: &TestContext,
    data: &Path,
    bucket: &depot_testkit::garage::Bucket,
    extra: &[&str],
) -> std::process::Command {
    let mut command = ctx.command();
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command.envs(bucket.env()).env("HOME", ctx.path("home"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--gc-grace", "0s", "--data"]).arg(data);
    command.arg("--blobs").arg(bucket.url()).args(extra);
    command
}

fn bytes_served(address: &str) -> u64 {
    let (status, body) = http(address, "GET", "/metrics", "", b"");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|line| line.strip_prefix("depot_blob_sent_bytes_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no depot_blob_sent_bytes_total in {body}"))
}

/// The registry with its blobs in a real S3-compatible bucket (Garage): pushes land in the bucket
/// (nothing under DATA/blobs), an agent deploys through the registry, ranges and HEAD are
/// answered from the bucket, and with --redirect-downloads the agent downloads from the bucket
/// itself through a presigned URL, still checking the digest, and the token never leaves the
/// registry.
#[test]
fn a_registry_on_an_s3_bucket_serves_pushes_and_agents_with_and_without_redirects() {
    let ctx = TestContext::new();
    let bucket = depot_testkit::garage::Garage::shared().bucket();
    let data = ctx.path("data");
    let server = spawn_server(s3_command(&ctx, &data, &bucket, &[]));
    assert!(server.stderr.contains(&format!("blobs: s3://{}/blobs", bucket.name)), "{}", server.stderr);
    let token = token(&data);
    let registry = format!("http://{}", server.address);
    let run = |args: &[&str]| {
        Run::from(
            ctx.command().env("DEPOT_REGISTRY", &registry).env("DEPOT_TOKEN", &token).args(args).output().unwrap(),
        )
    };
    let source = ctx.tree("app-1", &[("app.txt", "one\n")]);
    let digest = run(&["push", "web", "1.0.0", source.to_str().unwrap()]).success().stdout.trim().to_owned();
    assert!(!data.join("blobs/sha256").exists() || blob_files(&data).is_empty(), "the blob went to the bucket");
    run(&["config", "create", "prod", "--layer", "web:1.0.0"]).success();
    let root = ctx.path("host");
    let agent = |registry: &str, root: &Path| {
        let args =
            ["agent", "--config", "prod", "--name", "host-1", "--once", "--json", "--root", root.to_str().unwrap()];
        let output = ctx.command().env("DEPOT_REGISTRY", registry).env("DEPOT_TOKEN", &token).args(args).output();
        Run::from(output.unwrap()).success().json()
    };
    assert_eq!(agent(&registry, &root)["outcome"], "activated");
    assert_eq!(fs_err::read_to_string(root.join("releases/current/app.txt")).unwrap(), "one\n");
    assert_eq!(http(&server.address, "GET", "/healthz", "", b""), (200, "ok".to_owned()));

    // HEAD, Range and the whole blob, streamed from the bucket.
    let path = format!("/api/v1/blobs/{digest}");
    let versions = run(&["versions", "web", "--json"]).success().json();
    let size = versions[0]["size"].as_u64().unwrap_or_else(|| panic!("no size in {versions}"));
    let whole = raw(
        &server.address,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
    );
    assert!(whole.starts_with("HTTP/1.1 200"), "{whole}");
    assert!(whole.to_lowercase().contains(&format!("content-length: {size}")), "{whole}");
    let head = raw(
        &server.address,
        &format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
    )
    .to_lowercase();
    assert!(head.starts_with("http/1.1 200") && head.contains(&format!("content-length: {size}")), "{head}");
    let response = raw(
        &server.address,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nRange: bytes=5-14\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(response.starts_with("HTTP/1.1 206"), "{response}");
    assert!(response.to_lowercase().contains(&format!("content-range: bytes 5-14/{size}")), "{response}");
    let response = raw(
        &server.address,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nRange: bytes={size}-\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(response.starts_with("HTTP/1.1 416"), "{response}");
    let (status, body) = http(&server.address, "POST", "/api/v1/gc", &token, b"");
    assert_eq!(status, 200, "garbage collection lists the bucket: {body}");
    drop(server);

    // The same registry with --redirect-downloads: a GET is a redirect to the bucket.
    let server = spawn_server(s3_command(&ctx, &data, &bucket, &["--redirect-downloads"]));
    let registry = format!("http://{}", server.address);
    let run = |args: &[&str]| {
        Run::from(
            ctx.command().env("DEPOT_REGISTRY", &registry).env("DEPOT_TOKEN", &token).args(args).output().unwrap(),
        )
    };
    let response = raw(
        &server.address,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
    );
    assert!(response.starts_with("HTTP/1.1 307"), "{response}");
    let location = response
        .lines()
        .find_map(|line| line.strip_prefix("location: ").or_else(|| line.strip_prefix("Location: ")))
        .unwrap_or_else(|| panic!("no Location in {response}"));
    assert!(location.starts_with(&format!("{}/{}/blobs/sha256/", bucket.endpoint, bucket.name)), "{location}");
    assert!(location.contains("X-Amz-Signature=") && location.contains("X-Amz-Expires=300"), "{location}");
    assert!(!location.contains(&token) && !location.contains(token.split('.').nth(1).unwrap()), "{location}");
    // HEAD is still answered by the registry (a presigned URL is for GET only).
    let head = raw(
        &server.address,
        &format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
    )
    .to_lowercase();
    assert!(head.starts_with("http/1.1 200") && head.contains(&format!("content-length: {size}")), "{head}");

    let source = ctx.tree("app-2", &[("app.txt", "two\n")]);
    run(&["push", "web", "1.1.0", source.to_str().unwrap()]).success();
    run(&["config", "set", "prod", "web:1.1.0"]).success();
    let served_before = bytes_served(&server.address);
    assert_eq!(agent(&registry, &root)["outcome"], "activated");
    assert_eq!(fs_err::read_to_string(root.join("releases/current/app.txt")).unwrap(), "two\n");
    // A new host downloads from the bucket too.
    let fresh = ctx.path("host-2");
    assert_eq!(agent(&registry, &fresh)["outcome"], "activated");
    assert_eq!(fs_err::read_to_string(fresh.join("releases/current/app.txt")).unwrap(), "two\n");
    assert_eq!(bytes_served(&server.address), served_before, "the agents downloaded from the bucket, not the registry");
}

/// The registry refuses to start on a bucket it cannot reach, or with --redirect-downloads and
/// files; /healthz fails while the bucket does not answer.
#[test]
fn an_unreachable_bucket_fails_the_start_and_the_health_check() {
    let ctx = TestContext::new();
    let garage = depot_testkit::garage::Garage::start();
    let bucket = garage.bucket();
    let missing = depot_testkit::garage::Bucket { name: "no-such-bucket".to_owned(), ..garage.bucket() };
    let run = Run::from(s3_command(&ctx, &ctx.path("data-1"), &missing, &[]).output().unwrap()).failure();
    assert!(run.stderr.contains("error: the registry cannot reach its blob store"), "{}", run.stderr);
    assert!(run.stderr.contains("s3://no-such-bucket/blobs"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:") && run.stderr.contains("AWS_ACCESS_KEY_ID"), "{}", run.stderr);
    let data = ctx.path("data-2");
    let run = ctx.run(&["serve", "--data", data.to_str().unwrap(), "--redirect-downloads"]).failure();
    assert!(run.stderr.contains("--redirect-downloads needs blobs in an S3-compatible bucket"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: pass --blobs s3://"), "{}", run.stderr);

    let data = ctx.path("data-3");
    let server = spawn_server(s3_command(&ctx, &data, &bucket, &[]));
    assert_eq!(http(&server.address, "GET", "/healthz", "", b""), (200, "ok".to_owned()));
    drop(garage);
    let (status, body) = http(&server.address, "GET", "/healthz", "", b"");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(&format!("s3://{}/blobs", bucket.name)), "{body}");
}
