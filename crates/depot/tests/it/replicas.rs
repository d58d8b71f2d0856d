//! Several `depot serve` replicas on one PostgreSQL database (a real server, started by
//! depot-testkit) and one S3 bucket (a real Garage), each with a data directory of its own, act
//! as one registry: what is written through one is read,
//! and wakes blocking queries, through the others; a replica killed with -9 in the middle of a
//! write loses nothing it acknowledged.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::serve::{Server, create_prod, http, kill9, push, s3_command, spawn_server, token, write_until_killed};
use depot_testkit::garage::{Bucket, Garage};

/// A replica of the registry whose metadata is in `database` and blobs in `bucket`, with its
/// own data directory `data` (which holds only the admin token of the first to start), and the
/// secrets key every replica shares.
fn replica(ctx: &TestContext, data: &Path, database: &str, bucket: &Bucket) -> Server {
    let key = ctx.path("replicas.secrets.key");
    spawn_server(s3_command(ctx, data, bucket, &["--metadata", database, "--secrets-key", key.to_str().unwrap()]))
}

/// The configuration `prod` as `server` answers it.
fn prod(server: &Server, token: &str) -> serde_json::Value {
    let (status, body) = http(&server.address, "GET", "/api/v1/configs/prod", token, b"");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn set_prod(server: &Server, token: &str, version: &str) -> u64 {
    let body = format!(r#"{{"layers":[{{"component":"web","version":"{version}"}}]}}"#);
    let (status, body) = http(&server.address, "PATCH", "/api/v1/configs/prod", token, body.as_bytes());
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["revision"].as_u64().unwrap()
}

#[test]
fn three_replicas_on_one_postgres_act_as_one_registry() {
    let ctx = TestContext::new();
    let database = depot_testkit::Postgres::fresh_database();
    let bucket = Garage::shared().bucket();
    let a = replica(&ctx, &ctx.path("data-a"), &database, &bucket);
    let token = token(&ctx.path("data-a"));
    let b = replica(&ctx, &ctx.path("data-b"), &database, &bucket);
    let c = replica(&ctx, &ctx.path("data-c"), &database, &bucket);
    assert!(a.stderr.contains("metadata in postgres"), "{}", a.stderr);
    assert!(!ctx.path("data-b/admin.token").exists(), "one registry, one admin token");
    // A replica with a key of its own would seal what the others cannot open: it does not start.
    let mut command = s3_command(&ctx, &ctx.path("data-d"), &bucket, &["--metadata", &database]);
    let refused = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("not with the key given"), "{stderr}");

    // Written through one, read through the others: versions, configurations, tokens.
    let v1 = fs_err::read(ctx.release("1.0.0", &[("app.txt", "one\n")])).unwrap();
    let v2 = fs_err::read(ctx.release("2.0.0", &[("app.txt", "two\n")])).unwrap();
    push(&a.address, &token, &v1, "1.0.0");
    push(&b.address, &token, &v2, "2.0.0");
    create_prod(&c.address, &token, "1.0.0");
    assert_eq!(prod(&a, &token)["revision"], 1);
    let (status, body) = http(&c.address, "GET", "/api/v1/components/web/versions", &token, b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap().as_array().unwrap().len(), 2);
    let (status, body) = http(&b.address, "POST", "/api/v1/tokens", &token, br#"{"name":"ci","role":"operator"}"#);
    assert_eq!(status, 201, "{body}");
    let ci: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ci = ci["token"].as_str().unwrap().to_owned();
    assert_eq!(prod(&c, &ci)["revision"], 1, "a token made through B works on C");

    // A blocking query on B wakes when a write lands through A, well before its wait ends.
    let address = b.address.clone();
    let waiter_token = token.clone();
    let waiter = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(&address).unwrap();
        let request = format!(
            "GET /api/v1/configs/prod?after=1&wait=60s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {waiter_token}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        (Instant::now(), response)
    });
    std::thread::sleep(Duration::from_millis(500));
    let revision = set_prod(&a, &token, "2.0.0");
    let written = Instant::now();
    let (answered, response) = waiter.join().unwrap();
    let latency = answered.saturating_duration_since(written);
    eprintln!("a write through A woke a blocking query on B after {latency:?}");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(&format!("\"revision\":{revision}")), "{response}");
    assert!(latency < Duration::from_secs(1), "woken after {latency:?}");

    // The same for a change that no request names: a push moving a channel that prod tracks.
    let body = br#"{"layers":[{"component":"web","version":"latest"}]}"#;
    let (status, reply) = http(&c.address, "PATCH", "/api/v1/configs/prod", &token, body);
    assert_eq!(status, 200, "{reply}");
    let tracked = prod(&b, &token)["revision"].as_u64().unwrap();
    let address = b.address.clone();
    let waiter_token = token.clone();
    let waiter = std::thread::spawn(move || {
        let (status, body) =
            http(&address, "GET", &format!("/api/v1/configs/prod?after={tracked}&wait=60s"), &waiter_token, b"");
        (Instant::now(), status, body)
    });
    std::thread::sleep(Duration::from_millis(500));
    let v3 = fs_err::read(ctx.release("3.0.0", &[("app.txt", "three\n")])).unwrap();
    push(&a.address, &token, &v3, "3.0.0");
    let pushed = Instant::now();
    let (answered, status, body) = waiter.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"version\":\"3.0.0\""), "{body}");
    assert!(answered.saturating_duration_since(pushed) < Duration::from_secs(1));

    // An agent watching B (and C, should B go) deploys a change written through A; when B is
    // killed, it converges through C.
    let (status, body) = http(
        &a.address,
        "POST",
        "/api/v1/tokens",
        &token,
        br#"{"name":"host-1","role":"agent","config_pattern":"prod"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let agent_token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"].as_str().unwrap().to_owned();
    let root = ctx.path("host-1");
    let registries = format!("http://{},http://{}", b.address, c.address);
    let log = ctx.path("host-1.log");
    let mut agent = ctx
        .command()
        .env("DEPOT_TOKEN", &agent_token)
        .args(["agent", "--config", "prod", "--name", "host-1", "--registry", &registries, "--root"])
        .arg(&root)
        .stderr(fs_err::File::create(&log).unwrap().into_parts().0)
        .spawn()
        .unwrap();
    let running =
        |content: &str| fs_err::read_to_string(root.join("releases/current/app.txt")).ok().as_deref() == Some(content);
    let converge = |content: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !running(content) {
            assert!(
                Instant::now() < deadline,
                "the agent did not deploy {content:?}:\n{}",
                fs_err::read_to_string(&log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Instant::now()
    };
    converge("three\n");
    set_prod(&a, &token, "1.0.0");
    let written = Instant::now();
    let deployed = converge("one\n");
    eprintln!("an agent watching B deployed a change written through A after {:?}", deployed - written);
    let mut b = b;
    kill9(&mut b);
    set_prod(&a, &token, "2.0.0");
    converge("two\n");
    let agent_log = fs_err::read_to_string(&log).unwrap();
    assert!(agent_log.contains(&format!("moving to the registry at http://{}", c.address)), "{agent_log}");
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn a_replica_killed_during_writes_and_uploads_loses_nothing_it_acknowledged() {
    let ctx = TestContext::new();
    let database = depot_testkit::Postgres::fresh_database();
    let bucket = Garage::shared().bucket();
    let mut a = replica(&ctx, &ctx.path("data-a"), &database, &bucket);
    let token = token(&ctx.path("data-a"));
    let b = replica(&ctx, &ctx.path("data-b"), &database, &bucket);
    let v1 = fs_err::read(ctx.release("1.0.0", &[("app.txt", "one\n")])).unwrap();
    let v2 = fs_err::read(ctx.release("2.0.0", &[("app.txt", "two\n")])).unwrap();
    push(&a.address, &token, &v1, "1.0.0");
    push(&a.address, &token, &v2, "2.0.0");
    create_prod(&a.address, &token, "1.0.0");

    // Configuration writes through A, as fast as it takes them, until A is killed.
    let writer = write_until_killed(&a.address, &token);
    // And an upload through A that is half sent when A dies.
    let half = format!("sha256:{}", "cd".repeat(32));
    let mut upload = TcpStream::connect(&a.address).unwrap();
    let head = format!(
        "PUT /api/v1/blobs/{half} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        64 * 1024 * 1024
    );
    upload.write_all(head.as_bytes()).unwrap();
    upload.write_all(&vec![7u8; 4 * 1024 * 1024]).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    kill9(&mut a);
    drop(upload);
    let acknowledged = writer.join().unwrap();
    assert!(acknowledged.len() > 3, "writes were under way when A was killed");

    // B has every revision A acknowledged, with the layers it acknowledged, and no gap. A COMMIT
    // that A sent just before it died may still land in PostgreSQL a moment later: read until
    // the history and the configuration agree.
    let started = Instant::now();
    let history: Vec<serde_json::Value> = loop {
        let (status, body) = http(&b.address, "GET", "/api/v1/configs/prod/history", &token, b"");
        assert_eq!(status, 200, "{body}");
        let history: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let last = history.iter().filter_map(|h| h["revision"].as_u64()).max();
        if last == prod(&b, &token)["revision"].as_u64() || started.elapsed() > Duration::from_secs(5) {
            break history;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for (revision, version) in &acknowledged {
        let entry = history.iter().find(|h| h["revision"] == *revision);
        let entry = entry.unwrap_or_else(|| panic!("acknowledged revision {revision} is lost"));
        assert_eq!(entry["layers"][0]["version"], *version, "revision {revision}");
    }
    let revisions: Vec<u64> = history.iter().map(|h| h["revision"].as_u64().unwrap()).collect();
    assert_eq!(revisions, (1..=*revisions.last().unwrap()).collect::<Vec<_>>(), "no revision half-written");
    assert_eq!(prod(&b, &token)["revision"].as_u64().unwrap(), *revisions.last().unwrap());

    // The half upload is nowhere; B still takes writes and uploads.
    let (status, _) = http(&b.address, "GET", &format!("/api/v1/blobs/{half}"), &token, b"");
    assert_eq!(status, 404, "nothing unacknowledged is served");
    let v3 = fs_err::read(ctx.release("3.0.0", &[("app.txt", "three\n")])).unwrap();
    push(&b.address, &token, &v3, "3.0.0");
    let next = set_prod(&b, &token, "3.0.0");
    assert_eq!(next, *revisions.last().unwrap() + 1);
}

/// A replica whose database goes away says so on /healthz (503), and when the database comes
/// back its pool and its listener reconnect: a write through one replica wakes a blocking query
/// on the other again, well before the query's wait ends.
#[test]
fn replicas_ride_out_a_database_outage() {
    let ctx = TestContext::new();
    let postgres = depot_testkit::Postgres::start();
    let database = postgres.database();
    let bucket = Garage::shared().bucket();
    let a = replica(&ctx, &ctx.path("data-a"), &database, &bucket);
    let token = token(&ctx.path("data-a"));
    let b = replica(&ctx, &ctx.path("data-b"), &database, &bucket);
    let v1 = fs_err::read(ctx.release("1.0.0", &[("app.txt", "one\n")])).unwrap();
    let v2 = fs_err::read(ctx.release("2.0.0", &[("app.txt", "two\n")])).unwrap();
    push(&a.address, &token, &v1, "1.0.0");
    push(&a.address, &token, &v2, "2.0.0");
    create_prod(&a.address, &token, "1.0.0");

    postgres.stop();
    let (status, body) = http(&a.address, "GET", "/healthz", "", b"");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("postgres database"), "{body}");
    let (status, _) = http(&b.address, "GET", "/api/v1/configs/prod", &token, b"");
    assert_eq!(status, 500, "no answer made up while the database is away");

    postgres.restart();
    for server in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(&server.address, "GET", "/healthz", "", b"").0 != 200 {
            assert!(Instant::now() < deadline, "{} did not come back", server.address);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let address = b.address.clone();
    let waiter_token = token.clone();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let (status, body) = http(&address, "GET", "/api/v1/configs/prod?after=1&wait=60s", &waiter_token, b"");
        (started.elapsed(), status, body)
    });
    std::thread::sleep(Duration::from_millis(300));
    let revision = set_prod(&a, &token, "2.0.0");
    let (waited, status, body) = waiter.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("\"revision\":{revision}")), "{body}");
    assert!(waited < Duration::from_secs(15), "woken after {waited:?}, not by the write");
}

/// A registry on PostgreSQL stops cleanly on SIGTERM (its pool's synchronous connections once
/// panicked when dropped on an async thread, and the process aborted).
#[test]
fn a_registry_on_postgres_stops_cleanly() {
    let ctx = TestContext::new();
    let database = depot_testkit::Postgres::fresh_database();
    let mut server = crate::serve::start_with(&ctx, &ctx.path("data"), &["--metadata", &database]);
    let (status, _) = http(&server.address, "GET", "/healthz", "", b"");
    assert_eq!(status, 200);
    rustix::process::kill_process(rustix::process::Pid::from_child(&server.child), rustix::process::Signal::TERM)
        .unwrap();
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}
