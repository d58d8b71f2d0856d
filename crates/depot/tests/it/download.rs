//! `depot deploy --artifact-url` against servers that misbehave, started here on loopback as a
//! remote server would be: one that stalls, one that sends too much, an https server that
//! redirects to plain http. The download runs under the root's lock, so none of them may hold
//! it for long, fill the disk, or get an archive past the checks.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::serve::{private_ca, sha256_hex};

/// What a test server does with each request.
#[derive(Clone)]
enum Behaviour {
    /// Answers with these bytes (a whole HTTP response), then closes.
    Answer(Vec<u8>),
    /// Sends these bytes, then nothing more until the client leaves.
    AnswerThenStall(Vec<u8>),
    /// Answers 200 with a body that never ends, until the client leaves.
    Endless,
}

/// A server on 127.0.0.1 (over TLS with a certificate of a private CA when `tls` is given),
/// one thread per connection, counting requests and bytes sent.
struct TestServer {
    url: String,
    requests: Arc<AtomicUsize>,
    sent: Arc<AtomicU64>,
}

impl TestServer {
    fn start(behaviour: Behaviour, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let (requests, sent) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicU64::new(0)));
        let counters = (requests.clone(), sent.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (behaviour, tls, (requests, sent)) = (behaviour.clone(), tls.clone(), counters.clone());
                std::thread::spawn(move || match tls {
                    Some(config) => {
                        let connection = rustls::ServerConnection::new(config).unwrap();
                        serve_one(rustls::StreamOwned::new(connection, stream), &behaviour, &requests, &sent)
                    }
                    None => serve_one(stream, &behaviour, &requests, &sent),
                });
            }
        });
        TestServer { url, requests, sent }
    }
}

fn serve_one(mut stream: impl Read + Write, behaviour: &Behaviour, requests: &AtomicUsize, sent: &AtomicU64) {
    // The request's head (small: a GET with no body).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let mut send = |data: &[u8]| {
        let written = stream.write_all(data).and_then(|()| stream.flush());
        if written.is_ok() {
            sent.fetch_add(data.len() as u64, Ordering::SeqCst);
        }
        written.is_ok()
    };
    match behaviour {
        Behaviour::Answer(response) => {
            send(response);
        }
        Behaviour::AnswerThenStall(start) => {
            send(start);
            // Nothing more; the read returns when the client gives up and closes.
            let _ = stream.read(&mut [0u8; 1]);
        }
        Behaviour::Endless => {
            if send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n") {
                let chunk = vec![0u8; 64 * 1024];
                while send(&chunk) {}
            }
        }
    }
}

fn answer(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut response =
        format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len())
            .into_bytes();
    response.extend_from_slice(body);
    response
}

/// A TLS configuration with a certificate for 127.0.0.1 signed by a private CA, and that CA's
/// PEM file.
fn tls(ctx: &TestContext) -> (Arc<rustls::ServerConfig>, String) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (ca, cert, key) = private_ca(ctx, "tls");
    let certs = vec![CertificateDer::from_pem_file(&cert).unwrap()];
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    (Arc::new(config), ca.display().to_string())
}

fn deploy_url(ctx: &TestContext, version: &str, url: &str, extra: &[&str]) -> Run {
    let root = ctx.root_str();
    let mut args = vec!["deploy", "--root", &root, "--version", version, "--artifact-url", url];
    args.extend(extra);
    ctx.run(&args)
}

#[track_caller]
fn assert_nothing_left(ctx: &TestContext) {
    let tmp = ctx.root().join(".depot/tmp");
    let left: Vec<_> =
        fs_err::read_dir(&tmp).map(|entries| entries.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "no download left behind: {left:?}");
    assert_eq!(ctx.current(), None, "nothing was activated");
}

#[test]
fn plain_http_needs_the_sha256_and_https_from_a_private_ca_needs_its_certificate() {
    let ctx = TestContext::new();
    let archive = fs_err::read(ctx.release("1.0.0", &[("a.txt", "a\n")])).unwrap();
    let plain = TestServer::start(Behaviour::Answer(answer("200 OK", "", &archive)), None);
    deploy_url(&ctx, "1.0.0", &format!("{}/a.tar.zst", plain.url), &[])
        .failure()
        .stderr_contains("over plain http without the archive's sha256")
        .stderr_contains("--sha256");
    assert_eq!(plain.requests.load(Ordering::SeqCst), 0, "nothing was asked of the server");
    assert_nothing_left(&ctx);

    let (config, ca) = tls(&ctx);
    let secure = TestServer::start(Behaviour::Answer(answer("200 OK", "", &archive)), Some(config));
    let url = format!("{}/a.tar.zst", secure.url);
    deploy_url(&ctx, "1.0.0", &url, &[]).failure().stderr_contains("certificate");
    deploy_url(&ctx, "1.0.0", &url, &["--ca-cert", &ca]).success();
    assert_eq!(ctx.current().as_deref(), Some("1.0.0"));
    let sha256 = sha256_hex(&archive);
    deploy_url(&ctx, "1.0.1", &format!("{}/a.tar.zst", plain.url), &["--sha256", &sha256]).success();
    assert_eq!(ctx.current().as_deref(), Some("1.0.1"));
}

#[test]
fn a_redirect_from_https_to_plain_http_is_refused() {
    let ctx = TestContext::new();
    let archive = fs_err::read(ctx.release("1.0.0", &[("a.txt", "a\n")])).unwrap();
    let plain = TestServer::start(Behaviour::Answer(answer("200 OK", "", &archive)), None);
    let (config, ca) = tls(&ctx);
    let location = format!("Location: {}/a.tar.zst\r\n", plain.url);
    let redirecting = TestServer::start(Behaviour::Answer(answer("302 Found", &location, b"")), Some(config));
    let url = format!("{}/a.tar.zst", redirecting.url);
    let sha256 = sha256_hex(&archive);
    for extra in [&["--ca-cert", &ca][..], &["--ca-cert", &ca, "--sha256", &sha256][..]] {
        deploy_url(&ctx, "1.0.0", &url, extra)
            .failure()
            .stderr_contains("refused a redirect from https to http://")
            .stderr_contains("stays on https");
    }
    assert_eq!(redirecting.requests.load(Ordering::SeqCst), 2);
    assert_eq!(plain.requests.load(Ordering::SeqCst), 0, "the http server was never asked");
    assert_nothing_left(&ctx);
}

#[test]
fn a_stalled_server_fails_the_download_after_the_timeout_and_frees_the_root() {
    let ctx = TestContext::new();
    let sha256 = "0".repeat(64);
    // One server accepts and never answers; one answers, sends part of the body, then stalls.
    let silent = TestServer::start(Behaviour::AnswerThenStall(Vec::new()), None);
    let mut partial = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec();
    partial.extend_from_slice(&[7u8; 1000]);
    let stalling = TestServer::start(Behaviour::AnswerThenStall(partial), None);
    for server in [&silent, &stalling] {
        let started = Instant::now();
        deploy_url(&ctx, "1.0.0", &server.url, &["--sha256", &sha256, "--download-timeout", "1s"])
            .failure()
            .stderr_contains("download of")
            .stderr_contains("--download-timeout");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "failed after {took:?}, not held for ever");
        assert_eq!(server.requests.load(Ordering::SeqCst), 1);
        assert_nothing_left(&ctx);
    }
    // The root is free at once: another command takes its lock without waiting.
    let archive = ctx.release("1.0.0", &[("a.txt", "a\n")]);
    ctx.deploy("1.0.0", &archive, &["--lock-timeout", "0s"]).success();
}

#[test]
fn a_download_larger_than_the_limit_is_stopped_there() {
    let ctx = TestContext::new();
    let sha256 = "0".repeat(64);
    let limits = ["--sha256", &sha256, "--max-bytes", "1048576"];
    // With --max-bytes 1 MiB, the download limit is 1 MiB + 1/64 of it + 1 MiB.
    let limit = 1048576 + 1048576 / 64 + 1048576;

    // Announced: refused before the body is read.
    let announced = TestServer::start(
        Behaviour::AnswerThenStall(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n".to_vec()),
        None,
    );
    deploy_url(&ctx, "1.0.0", &announced.url, &limits)
        .failure()
        .stderr_contains(&format!("larger than the download limit of {limit} bytes (the server announced 1073741824)"))
        .stderr_contains("--max-bytes");
    assert_nothing_left(&ctx);

    // Not announced, and never ending: cut at the limit.
    let endless = TestServer::start(Behaviour::Endless, None);
    let started = Instant::now();
    deploy_url(&ctx, "1.0.0", &endless.url, &limits)
        .failure()
        .stderr_contains(&format!("larger than the download limit of {limit} bytes (it sent more)"));
    assert!(started.elapsed() < Duration::from_secs(20));
    let sent = endless.sent.load(Ordering::SeqCst);
    // What the server managed to write before the client closed: the limit plus what the
    // sockets' buffers held.
    assert!(sent < limit + 16 * 1024 * 1024, "the client stopped reading at the limit: {sent} bytes sent");
    assert_nothing_left(&ctx);
}
