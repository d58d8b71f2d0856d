//! `depot serve`'s HTTP surface against hostile and strict clients: silent and slow connections,
//! more connections than it serves, made-up methods, and Prometheus' own checker on `/metrics`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::serve::{http, private_ca, sha256_hex, start_with, token};

/// Reads from `stream` until it is closed (`true`) or `within` passes (`false`); what was read.
fn closed_within(stream: &mut TcpStream, within: Duration) -> (bool, String) {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (false, String::from_utf8_lossy(&seen).into_owned());
        }
        stream.set_read_timeout(Some(left)).unwrap();
        let mut buffer = [0u8; 4096];
        match stream.read(&mut buffer) {
            Ok(0) => return (true, String::from_utf8_lossy(&seen).into_owned()),
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (false, String::from_utf8_lossy(&seen).into_owned());
            }
            Err(_) => return (true, String::from_utf8_lossy(&seen).into_owned()),
        }
    }
}

/// `GET /healthz` on a new connection; its status and how long it took.
fn healthz(address: &str) -> (u16, Duration) {
    let started = Instant::now();
    let (status, _) = http(address, "GET", "/healthz", "", b"");
    (status, started.elapsed())
}

/// A metric's value in the classic text format.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Silent connections, a half-sent header and an idle keep-alive connection are closed after
/// --header-timeout; meanwhile and after, `/healthz` answers at once.
#[test]
fn slow_and_silent_clients_are_closed_and_the_registry_keeps_answering() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let server = start_with(&ctx, &data, &["--header-timeout", "2s", "--max-connections", "40"]);
    let address = server.address.as_str();

    let mut half_sent = TcpStream::connect(address).unwrap();
    half_sent.write_all(b"GET /healthz HTTP/1.1\r\nHost: depot\r\nX-Slow: ").unwrap();
    let mut idle = TcpStream::connect(address).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: depot\r\n\r\n").unwrap();
    let mut answer = [0u8; 256];
    let n = idle.read(&mut answer).unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"), "a keep-alive answer");
    let opened = Instant::now();
    let mut silent: Vec<TcpStream> = (0..30).map(|_| TcpStream::connect(address).unwrap()).collect();

    let (status, took) = healthz(address);
    assert_eq!(status, 200);
    assert!(took < Duration::from_millis(500), "/healthz took {took:?} beside 32 silent connections");

    // After the header timeout, every silent or slow one is gone, the half-sent request unanswered.
    let (closed, seen) = closed_within(&mut half_sent, Duration::from_secs(5));
    assert!(closed, "a half-sent header is closed after --header-timeout");
    assert!(!seen.contains("200 OK"), "and never answered: {seen}");
    let waited = opened.elapsed();
    assert!(waited >= Duration::from_millis(1500), "not before the timeout ({waited:?})");
    assert!(closed_within(&mut idle, Duration::from_secs(3)).0, "an idle keep-alive connection is closed");
    for stream in &mut silent {
        assert!(closed_within(stream, Duration::from_secs(3)).0, "a silent connection is closed");
    }
    let (status, took) = healthz(address);
    assert_eq!(status, 200);
    assert!(took < Duration::from_millis(500), "/healthz took {took:?} after the flood");
}

/// An upload whose body is half sent: a request in progress on its own connection.
fn start_upload(address: &str, token: &str, blob: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).unwrap();
    let head = format!(
        "PUT /api/v1/blobs/sha256:{} HTTP/1.1\r\nHost: depot\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        sha256_hex(blob),
        blob.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&blob[..blob.len() / 2]).unwrap();
    stream
}

/// At --max-connections, a new connection takes the place of the oldest one with no request in
/// progress (silent ones here), so `/healthz` keeps answering through a flood of silent
/// connections; uploads in progress are never cut. Only when every connection has a request in
/// progress is a new one closed at once.
#[test]
fn at_the_cap_the_oldest_idle_connection_gives_way_and_requests_in_progress_are_kept() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let server = start_with(&ctx, &data, &["--header-timeout", "60s", "--max-connections", "10"]);
    let address = server.address.as_str();
    let token = token(&data);
    let blobs: Vec<Vec<u8>> = (0..10)
        .map(|i| fs_err::read(ctx.release(&format!("1.0.{i}"), &[("a.txt", &format!("{i}\n"))])).unwrap())
        .collect();

    let mut uploads: Vec<TcpStream> = blobs[..4].iter().map(|blob| start_upload(address, &token, blob)).collect();
    std::thread::sleep(Duration::from_millis(300));
    // One at a time, so that their order of age is the order here.
    let mut silent: Vec<TcpStream> = (0..6)
        .map(|_| {
            let stream = TcpStream::connect(address).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            stream
        })
        .collect();

    // Ten open: each new connection pushes out the oldest silent one, and `/healthz` is
    // answered at once.
    for _ in 0..4 {
        silent.push(TcpStream::connect(address).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, took) = healthz(address);
    assert_eq!(status, 200);
    assert!(took < Duration::from_millis(500), "/healthz took {took:?} at the cap");
    let closed: Vec<bool> =
        silent.iter_mut().map(|stream| closed_within(stream, Duration::from_millis(200)).0).collect();
    assert_eq!(closed, (0..10).map(|i| i < 5).collect::<Vec<_>>(), "the five oldest silent connections are closed");

    // Uploads push out the silent connections left (and the closing /healthz one); with every connection busy, a new one is
    // closed as it arrives.
    uploads.extend(blobs[4..].iter().map(|blob| start_upload(address, &token, blob)));
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(address).unwrap();
    let (closed, seen) = closed_within(&mut extra, Duration::from_millis(500));
    assert!(closed && seen.is_empty(), "a connection past the cap with every one busy is closed at once: {seen}");

    // Every upload goes through whole.
    for (stream, blob) in uploads.iter_mut().zip(&blobs) {
        stream.write_all(&blob[blob.len() / 2..]).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 201"), "an upload in progress is kept: {response}");
    }
    let (_, metrics) = http(address, "GET", "/metrics", "", b"");
    assert!(metric(&metrics, "depot_http_connections_evicted_total") >= 10.0, "{metrics}");
    assert!(metric(&metrics, "depot_http_connections_refused_total") >= 1.0, "{metrics}");
}

/// Pushes a 3.5 MB uncompressible archive; its bytes and digest.
fn push_large_blob(address: &str, token: &str) -> (Vec<u8>, String) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: String = (0..3_500_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    let blob = raw_tar(&[RawEntry::file("a.bin", &noise)]);
    let digest = sha256_hex(&blob);
    let (status, body) = http(address, "PUT", &format!("/api/v1/blobs/sha256:{digest}"), token, &blob);
    assert!(status == 201 || status == 200, "upload: {status} {body}");
    (blob, digest)
}

/// `GET` of a blob on a connection with an 8 KiB receive buffer, nothing read yet.
fn start_download(address: &str, token: &str, digest: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(8192).unwrap();
    socket.connect(&address.parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let mut stream: TcpStream = socket.into();
    let head = format!(
        "GET /api/v1/blobs/sha256:{digest} HTTP/1.1\r\nHost: depot\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

/// With every connection busy, an answer its client has stopped reading for --header-timeout
/// (a full TCP window; over HTTP/2 a zero window does the same) gives way to a new connection;
/// an upload in progress, which has no answer yet, does not. Before, such clients could hold
/// every connection and lock everyone out.
#[test]
fn at_the_cap_an_answer_nobody_reads_gives_way() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let server = start_with(&ctx, &data, &["--header-timeout", "1s", "--max-connections", "2"]);
    let address = server.address.clone();
    let token = token(&data);
    let (_, digest) = push_large_blob(&address, &token);
    let archive = fs_err::read(ctx.release("1.0.0", &[("a.txt", "a\n")])).unwrap();
    let mut upload = start_upload(&address, &token, &archive);
    let mut stalled = start_download(&address, &token, &digest);
    std::thread::sleep(Duration::from_millis(2500));
    let (status, took) = healthz(&address);
    assert_eq!(status, 200, "the stalled download gave way");
    assert!(took < Duration::from_millis(500), "/healthz took {took:?}");
    assert!(closed_within(&mut stalled, Duration::from_secs(5)).0, "the stalled download is closed");
    upload.write_all(&archive[archive.len() / 2..]).unwrap();
    let mut response = String::new();
    upload.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "the upload in progress is kept: {response}");
}

/// A download to a slow reader is a request in progress until its last byte leaves the
/// server's buffers, not only until its body is handed over: at the cap, with new keep-alive
/// clients arriving every 100 ms, a 3.5 MB blob read slowly arrives whole. Before, the connection was
/// evicted with up to 400 KB still buffered and the client saw a short body and a clean close.
#[test]
fn a_slow_download_at_the_cap_is_not_cut() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let server = start_with(&ctx, &data, &["--header-timeout", "60s", "--max-connections", "2"]);
    let address = server.address.clone();
    let token = token(&data);
    let (blob, digest) = push_large_blob(&address, &token);
    let mut reader = start_download(&address, &token, &digest);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let (stop, address) = (stop.clone(), address.clone());
        std::thread::spawn(move || {
            let mut opened = Vec::new();
            // Each a keep-alive client that was answered once and stays idle: the kind of
            // connection that is evicted, oldest first.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut stream) = TcpStream::connect(&address) {
                    let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: depot\r\n\r\n");
                    stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
                    let _ = stream.read(&mut [0u8; 512]);
                    opened.push(stream);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            opened.len()
        })
    };
    let mut received = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = flood.join().unwrap();
    assert!(opened >= 10, "connections kept arriving ({opened})");
    let split = received.windows(4).position(|w| w == b"\r\n\r\n").expect("an answer") + 4;
    assert_eq!(received.len() - split, blob.len(), "the whole blob, while {opened} connections arrived");
}

/// The listening socket's accept queue is 4,096 (or the kernel's cap), not std's 128, which a
/// burst of connections overflowed: the kernel dropped SYNs and `/healthz` took a second under
/// bench/hostile.
#[test]
fn the_accept_queue_holds_a_burst_of_connections() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let server = start_with(&ctx, &data, &[]);
    let port = server.address.rsplit(':').next().unwrap();
    let output = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss runs (.ci/install installs iproute2 when it is missing)");
    let line = String::from_utf8_lossy(&output.stdout).into_owned();
    // State, Recv-Q, Send-Q (the accept queue's size for a listening socket), addresses.
    let queue: u32 = line.split_whitespace().nth(2).and_then(|q| q.parse().ok()).unwrap_or_else(|| panic!("{line}"));
    let cap: u32 = fs_err::read_to_string("/proc/sys/net/core/somaxconn").unwrap().trim().parse().unwrap();
    assert_eq!(queue, cap.min(4096), "{line}");
}

/// Over TLS, a connection that never completes its handshake is closed after --header-timeout too.
#[test]
fn a_stalled_tls_handshake_is_closed_after_the_header_timeout() {
    let ctx = TestContext::new();
    let (_, cert, key) = private_ca(&ctx, "tls");
    let data = ctx.path("data");
    let server = start_with(
        &ctx,
        &data,
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap(), "--header-timeout", "1s"],
    );
    let mut silent = TcpStream::connect(&server.address).unwrap();
    let mut partial = TcpStream::connect(&server.address).unwrap();
    // The first bytes of a TLS record header (a handshake), and then nothing.
    partial.write_all(&[0x16, 0x03, 0x01]).unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(4)).0, "a silent TLS connection is closed");
    assert!(closed_within(&mut partial, Duration::from_secs(4)).0, "a half-sent handshake is closed");
    assert!(started.elapsed() >= Duration::from_millis(800), "not before the timeout");
}

/// A thousand requests with 100 KB made-up methods (no token needed) leave no label behind and
/// do not grow the registry's memory; the output passes `promtool check metrics`.
#[test]
fn made_up_methods_do_not_grow_the_metrics_and_promtool_accepts_them() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let server = start_with(&ctx, &data, &[]);
    let address = server.address.as_str();
    let resident = || {
        let (_, text) = http(address, "GET", "/metrics", "", b"");
        metric(&text, "process_resident_memory_bytes")
    };
    let send = |method: &str| {
        let mut stream = TcpStream::connect(address).unwrap();
        let request = format!("{method} /api/v1/configs/x HTTP/1.1\r\nHost: depot\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).split_whitespace().nth(1).unwrap_or_default().to_owned()
    };
    for i in 0..50 {
        send(&format!("WARM{i}{}", "Y".repeat(100_000)));
    }
    let before = resident();
    for i in 0..1000 {
        let status = send(&format!("M{i}{}", "X".repeat(100_000)));
        assert_eq!(status, "405");
    }
    let after = resident();
    let (status, text) = http(address, "GET", "/metrics", "", b"");
    assert_eq!(status, 200);
    assert!(!text.contains("XXXX"), "no method a client made up is a label");
    let grown = (after - before) / 1024.0 / 1024.0;
    assert!(grown < 16.0, "the registry grew by {grown:.1} MiB over 1,000 made-up methods");

    // Push something so that the blob counters and the duration histogram have samples.
    let archive = ctx.release("1.0.0", &[("a.txt", "a\n")]);
    let output = ctx
        .command()
        .env("DEPOT_TOKEN", token(&data))
        .env("DEPOT_REGISTRY", format!("http://{address}"))
        .args(["push", "web", "1.0.0", archive.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let fetch = |accept: Option<&str>| {
        let mut stream = TcpStream::connect(address).unwrap();
        let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: depot\r\n{accept}Connection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.to_ascii_lowercase(), body.to_owned())
    };
    let (head, classic) = fetch(None);
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(classic.contains("depot_blob_received_bytes_total "), "{classic}");
    assert!(
        classic.contains(
            r#"depot_http_request_duration_seconds_bucket{le="+Inf",method="PUT",route="/api/v1/blobs/{digest}"} 1"#
        ),
        "{classic}"
    );
    assert!(classic.contains(r#"depot_build_info{version=""#), "{classic}");
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (.ci/install installs Debian's prometheus package when it is missing)");
    promtool.stdin.take().unwrap().write_all(classic.as_bytes()).unwrap();
    let output = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{classic}");

    let (head, openmetrics) = fetch(Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"));
    assert!(head.contains("content-type: application/openmetrics-text; version=1.0.0"), "{head}");
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(openmetrics.contains("# TYPE depot_blob_received_bytes counter"), "{openmetrics}");
}
