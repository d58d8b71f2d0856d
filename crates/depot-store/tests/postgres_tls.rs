//! The metadata store on a PostgreSQL server that accepts only TLS connections: with
//! `sslmode=require` and the server's CA it works (writes, reads, the change feed); without TLS,
//! or without a CA that vouches for the server's certificate, it refuses to connect.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use depot_api::ConfigName;
use depot_api::types::LayerRef;
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
