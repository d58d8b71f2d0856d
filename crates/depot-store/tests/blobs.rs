//! The blob store's contract, run against every backend: files in a temporary directory and a
//! bucket of a real Garage (an S3-compatible server this test starts; see depot-testkit).

use depot_testkit::garage;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use depot_api::Digest;
use depot_store::{Blobs, S3_PART_SIZE, S3Credentials, S3Location, StoreError};
use futures_util::TryStreamExt;

/// One backend under test, with what keeps it alive.
struct Backend {
    name: &'static str,
    blobs: Blobs,
    /// The blob directory of the file backend.
    dir: Option<tempfile::TempDir>,
}

/// Every backend, each empty.
fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let files = Blobs::files(dir.path()).unwrap();
    let bucket = garage::Garage::shared().bucket();
    let s3 = Blobs::s3(location(&bucket)).unwrap();
    vec![Backend { name: "files", blobs: files, dir: Some(dir) }, Backend { name: "s3", blobs: s3, dir: None }]
}

fn location(bucket: &garage::Bucket) -> S3Location {
    S3Location {
        credentials: Some(S3Credentials { key_id: bucket.key_id.clone(), secret: bucket.secret.clone() }),
        ..S3Location::parse(&bucket.url()).unwrap()
    }
}

fn digest_of(data: &[u8]) -> Digest {
    use sha2::Digest as _;
    let hex: String = sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect();
    Digest::from_hex(&hex).unwrap()
}

/// Bytes that differ from part to part, so that a part written twice or out of order shows.
fn content(size: usize, seed: u8) -> Vec<u8> {
    (0..size).map(|i| (i / 1000) as u8 ^ (i as u8).wrapping_mul(31) ^ seed).collect()
}

/// Uploads `data` in chunks of `chunk` bytes, verifies it against its own digest and installs it.
async fn store(blobs: &Blobs, data: &[u8], chunk: usize) -> Digest {
    let digest = digest_of(data);
    let mut writer = blobs.writer(&digest, u64::MAX).await.unwrap();
    for piece in data.chunks(chunk) {
        writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    writer.verify().await.unwrap().install().await.unwrap();
    digest
}

async fn read_all(blobs: &Blobs, digest: &Digest, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let chunks: Vec<Bytes> = blobs.read(digest, range).await.unwrap().try_collect().await.unwrap();
    chunks.concat()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_is_written_verified_and_read_back_whole_and_by_range() {
    for backend in backends() {
        let blobs = &backend.blobs;
        let data = content(300_000, 1);
        let digest = digest_of(&data);
        assert_eq!(blobs.size(&digest).await.unwrap(), None, "{}", backend.name);
        assert!(!blobs.exists(&digest).await.unwrap());
        assert_eq!(store(blobs, &data, 64 * 1024).await, digest);
        assert_eq!(blobs.size(&digest).await.unwrap(), Some(data.len() as u64), "{}", backend.name);
        assert!(blobs.exists(&digest).await.unwrap());
        assert_eq!(read_all(blobs, &digest, None).await, data, "{}", backend.name);
        assert_eq!(read_all(blobs, &digest, Some(1000..70_000)).await, data[1000..70_000], "{}", backend.name);
        assert_eq!(read_all(blobs, &digest, Some(299_999..300_000)).await, data[299_999..], "{}", backend.name);
        // The same content again is harmless.
        store(blobs, &data, 1 << 20).await;
        assert_eq!(read_all(blobs, &digest, None).await, data, "{}", backend.name);
        // A missing blob is unknown, not an error of the store.
        let missing = digest_of(b"missing");
        assert!(matches!(blobs.read(&missing, None).await, Err(StoreError::UnknownBlob(_))), "{}", backend.name);
        assert!(matches!(blobs.read(&missing, Some(0..10)).await, Err(StoreError::UnknownBlob(_))), "{}", backend.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_larger_than_a_part_goes_up_in_parts_and_reads_back_across_them() {
    for backend in backends() {
        let blobs = &backend.blobs;
        let size = 2 * S3_PART_SIZE + 123_457;
        let data = content(size, 2);
        let digest = store(blobs, &data, 1 << 20).await;
        assert_eq!(blobs.size(&digest).await.unwrap(), Some(size as u64), "{}", backend.name);
        assert!(read_all(blobs, &digest, None).await == data, "{}: the bytes read back differ", backend.name);
        let across = (S3_PART_SIZE - 10) as u64..(S3_PART_SIZE + 10) as u64;
        assert_eq!(
            read_all(blobs, &digest, Some(across.clone())).await,
            data[across.start as usize..across.end as usize],
            "{}",
            backend.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_digest_mismatch_leaves_nothing_visible() {
    for backend in backends() {
        let blobs = &backend.blobs;
        // One small enough for one request, one large enough for a multipart upload.
        for size in [10_000, S3_PART_SIZE + 1000] {
            let data = content(size, 3);
            let claimed = digest_of(b"something else");
            let mut writer = blobs.writer(&claimed, u64::MAX).await.unwrap();
            for piece in data.chunks(1 << 20) {
                writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
            }
            match writer.verify().await {
                Err(StoreError::DigestMismatch { expected, actual }) => {
                    assert_eq!(expected, claimed);
                    assert_eq!(actual, digest_of(&data));
                }
                other => panic!("{}: expected a digest mismatch, got {:?}", backend.name, other.map(|u| u.digest)),
            }
            if let Some(dir) = &backend.dir {
                let left = std::fs::read_dir(dir.path().join("uploads")).unwrap().count();
                assert_eq!(left, 0, "the refused upload's temporary file is gone before verify returns");
            }
            assert_eq!(blobs.size(&claimed).await.unwrap(), None, "{}: {size} bytes", backend.name);
            assert_eq!(blobs.size(&digest_of(&data)).await.unwrap(), None, "{}", backend.name);
            assert!(blobs.list().await.unwrap().is_empty(), "{}", backend.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_past_the_size_limit_is_refused_and_leaves_nothing() {
    for backend in backends() {
        let blobs = &backend.blobs;
        let data = content(1000, 4);
        let digest = digest_of(&data);
        let mut writer = blobs.writer(&digest, 999).await.unwrap();
        writer.write(Bytes::copy_from_slice(&data[..600])).await.unwrap();
        match writer.write(Bytes::copy_from_slice(&data[600..])).await {
            Err(StoreError::TooLarge { limit: 999 }) => {}
            other => panic!("{}: expected too-large, got {other:?}", backend.name),
        }
        writer.discard().await;
        assert_eq!(blobs.size(&digest).await.unwrap(), None, "{}", backend.name);
        if let Some(dir) = &backend.dir {
            assert_eq!(std::fs::read_dir(dir.path().join("uploads")).unwrap().count(), 0, "discarded");
        }
        // Exactly at the limit is fine.
        let mut writer = blobs.writer(&digest, 1000).await.unwrap();
        writer.write(Bytes::from(data.clone())).await.unwrap();
        writer.verify().await.unwrap().install().await.unwrap();
        assert_eq!(blobs.size(&digest).await.unwrap(), Some(1000), "{}", backend.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_are_listed_with_their_times_and_removed() {
    for backend in backends() {
        let blobs = &backend.blobs;
        let before = SystemTime::now() - Duration::from_secs(60);
        let first = store(blobs, &content(5000, 5), 4096).await;
        let second = store(blobs, &content(7000, 6), 4096).await;
        let mut listed = blobs.list().await.unwrap();
        listed.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let mut expected = vec![first.clone(), second.clone()];
        expected.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        assert_eq!(listed.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(), expected, "{}", backend.name);
        for (digest, modified) in &listed {
            assert!(*modified > before && *modified < SystemTime::now() + Duration::from_secs(60), "{digest}");
        }
        assert_eq!(blobs.remove(&first).await.unwrap(), 5000, "{}", backend.name);
        assert_eq!(blobs.size(&first).await.unwrap(), None, "{}", backend.name);
        assert_eq!(blobs.remove(&first).await.unwrap(), 0, "{}: removing twice", backend.name);
        assert_eq!(blobs.list().await.unwrap().into_iter().map(|(d, _)| d).collect::<Vec<_>>(), vec![second]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_upload_is_never_a_blob_and_is_cleaned_where_the_store_can_list_it() {
    for backend in backends() {
        let blobs = &backend.blobs;
        for size in [10_000, S3_PART_SIZE + 1000] {
            let data = content(size, 7);
            let digest = digest_of(&data);
            let mut writer = blobs.writer(&digest, u64::MAX).await.unwrap();
            writer.write(Bytes::from(data)).await.unwrap();
            // A crash: the writer is never finished nor dropped.
            std::mem::forget(writer);
            assert_eq!(blobs.size(&digest).await.unwrap(), None, "{}", backend.name);
            assert!(blobs.list().await.unwrap().is_empty(), "{}", backend.name);
        }
        // A recent upload may be in progress: kept.
        assert_eq!(blobs.clean_uploads(Duration::from_secs(3600)).await.unwrap(), 0, "{}", backend.name);
        let removed = blobs.clean_uploads(Duration::ZERO).await.unwrap();
        match &backend.dir {
            // The two temporary files.
            Some(dir) => {
                assert_eq!(removed, 2, "{}", backend.name);
                assert_eq!(std::fs::read_dir(dir.path().join("uploads")).unwrap().count(), 0);
            }
            // Multipart uploads cannot be listed: the bucket's lifecycle rule aborts them.
            None => assert_eq!(removed, 0, "{}", backend.name),
        }
        assert!(blobs.list().await.unwrap().is_empty(), "{}", backend.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_presigned_url_gives_the_bytes_to_anyone_until_it_expires() {
    for backend in backends() {
        let blobs = &backend.blobs;
        let data = content(50_000, 8);
        let digest = store(blobs, &data, 1 << 20).await;
        let url = blobs.presigned_get(&digest, Duration::from_secs(300)).await.unwrap();
        if backend.name == "files" {
            assert!(!blobs.can_presign());
            assert_eq!(url, None, "files cannot be presigned");
            continue;
        }
        assert!(blobs.can_presign());
        let url = url.expect("S3 presigns");
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert!(response.bytes().await.unwrap() == data, "the presigned URL gives the blob's bytes");
        // The signature covers the key: another blob's name with it is refused.
        let other = url.replace(digest.hex(), digest_of(b"other").hex());
        assert_eq!(reqwest::get(&other).await.unwrap().status(), 403, "{other}");
        // And it expires.
        let short = blobs.presigned_get(&digest, Duration::from_secs(1)).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        // (AWS answers 403, Garage 400.)
        let status = reqwest::get(&short).await.unwrap().status();
        assert!(status.is_client_error(), "an expired URL is refused: {status}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_check_fails_when_the_store_cannot_be_reached() {
    for backend in backends() {
        backend.blobs.check().await.unwrap_or_else(|e| panic!("{}: {e}", backend.name));
    }
    // A directory that went away.
    let dir = tempfile::tempdir().unwrap();
    let files = Blobs::files(&dir.path().join("blobs")).unwrap();
    std::fs::remove_dir_all(dir.path().join("blobs")).unwrap();
    let error = files.check().await.unwrap_err().to_string();
    assert!(error.contains("blobs"), "{error}");
    // A bucket that does not exist, and an endpoint where nothing listens.
    let garage = garage::Garage::shared();
    let bucket = garage::Bucket { name: "no-such-bucket".to_owned(), ..garage.bucket() };
    let error = Blobs::s3(location(&bucket)).unwrap().check().await.unwrap_err().to_string();
    assert!(error.contains("s3://no-such-bucket"), "{error}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nowhere = garage::Bucket { endpoint: format!("http://127.0.0.1:{port}"), ..garage.bucket() };
    let error = Blobs::s3(location(&nowhere)).unwrap().check().await.unwrap_err().to_string();
    assert!(error.contains(&nowhere.endpoint), "{error}");
}

#[test]
fn s3_urls_name_the_bucket_prefix_endpoint_and_region() {
    let location = S3Location::parse("s3://depot?endpoint=http://127.0.0.1:3900/&region=garage").unwrap();
    assert_eq!(location.bucket, "depot");
    assert_eq!(location.prefix, "blobs");
    assert_eq!(location.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
    assert_eq!(location.region.as_deref(), Some("garage"));
    assert_eq!(location.credentials, None);
    let location = S3Location::parse("s3://depot/registry/eu/").unwrap();
    assert_eq!((location.prefix.as_str(), location.endpoint, location.region), ("registry/eu", None, None));
    for (url, message) in [
        ("s3://depot?endpont=http://x", "unknown setting `endpont`"),
        ("s3://key:secret@depot", "credentials do not belong in the URL"),
        ("s3:///path", "no bucket"),
    ] {
        let error = S3Location::parse(url).unwrap_err().to_string();
        assert!(error.contains(message), "{url}: {error}");
    }
    let error = depot_store::open_blobs("gs://depot").unwrap_err().to_string();
    assert!(error.contains("s3://BUCKET"), "{error}");
}
