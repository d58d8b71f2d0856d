//! What only the PostgreSQL backend meets: a server that accepts only TLS connections, and a
//! schema that changes under a running replica's prepared statements.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use depot_api::types::LayerRef;
use depot_api::{ConfigName, Digest};
use depot_store::{Change, Metadata, StoreError};

/// A private CA and a certificate it signed for 127.0.0.1: (CA PEM, certificate PEM, key PEM).
fn private_ca() -> (String, String, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "depot test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

#[test]
fn a_server_that_requires_tls_is_reached_over_verified_tls_only() {
    let server = depot_testkit::Postgres::start();
    let database = server.database();
    let (ca, cert, key) = private_ca();
    server.require_tls(&cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();

    // Plain connections are refused by the server (hostssl only).
    let plain = Metadata::open_postgres(&database).map(drop).unwrap_err();
    assert!(matches!(plain, StoreError::Database(_)), "{plain}");
    // TLS with the public roots only: the private CA's certificate is not trusted.
    let untrusted = Metadata::open_postgres(&format!("{database}?sslmode=require")).map(drop).unwrap_err();
    assert!(untrusted.to_string().to_lowercase().contains("certificate"), "{untrusted}");
    // A sslrootcert without sslmode is a mistake, said at once.
    let half = Metadata::open_postgres(&format!("{database}?sslrootcert={}", ca_file.display())).map(drop).unwrap_err();
    assert!(half.to_string().contains("sslmode"), "{half}");

    let url = format!("{database}?sslmode=verify-full&sslrootcert={}", ca_file.display());
    let store = Metadata::open_postgres(&url).unwrap();
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = changes.clone();
    store.subscribe(Arc::new(move |change| seen.lock().unwrap().push(change))).unwrap();
    let name = ConfigName::parse("web-prod").unwrap();
    let layers: Vec<LayerRef> = Vec::new();
    store.create_config(&name, &layers, "ci").unwrap();
    assert_eq!(store.config(&name).unwrap().revision, 1);
    // The change feed's listener connects over TLS too: a write through a second handle (a
    // replica) reaches the first one's subscribers.
    let replica = Metadata::open_postgres(&url).unwrap();
    replica.delete_config(&name, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !changes.lock().unwrap().iter().any(|c| matches!(c, Change::Config(n) if n == "web-prod"))
        || changes.lock().unwrap().iter().filter(|c| matches!(c, Change::Config(_))).count() < 2
    {
        assert!(Instant::now() < deadline, "no change arrived: {:?}", changes.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Another process changes a column's type under the statements a replica has prepared (as a
/// newer replica's migration would): the replica fails at most once per pooled connection, then
/// prepares its statements again, rather than failing for as long as it runs.
#[test]
fn a_replica_recovers_when_the_schema_changes_under_its_prepared_statements() {
    let url = depot_testkit::Postgres::fresh_database();
    let store = Metadata::open_postgres(&url).unwrap();
    let digest = Digest::from_hex(&"ab".repeat(32)).unwrap();
    store.record_blob(&digest, 10).unwrap();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(store.unreferenced_blobs(later).unwrap(), vec![digest.clone()]);
    let mut other = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    other.batch_execute("ALTER TABLE blobs ALTER COLUMN digest TYPE varchar(200)").unwrap();
    let mut failures = 0;
    let answer = loop {
        match store.unreferenced_blobs(later) {
            Ok(answer) => break answer,
            Err(error) => {
                failures += 1;
                assert!(failures <= 16, "still failing after {failures} attempts: {error}");
            }
        }
    };
    assert_eq!(answer, vec![digest]);
}
