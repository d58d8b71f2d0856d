//! A release from several archives (the agent's configuration layers): unpacked in order, a later
//! layer's file replacing an earlier one's; identical again is a re-activation; a bad layer
//! changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use depot_release::archive::{Compression, PackOptions, pack};
use depot_release::deploy::{ActivationOptions, ArtifactSource, DeployAction, DeployOptions, Layer, deploy};
use depot_release::progress::NoProgress;
use depot_release::root::ReleaseRoot;
use depot_release::stage::Limits;
use depot_release::version::VersionLabel;

fn archive(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let tree = dir.join(name);
    for (path, text) in files {
        let path = tree.join(path);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, text).unwrap();
    }
    let output = dir.join(format!("{name}.tar.zst"));
    let options = PackOptions {
        dir: tree,
        version: VersionLabel::parse("1.0.0").unwrap(),
        name: Some(name.to_owned()),
        output: Some(output.clone()),
        compression: Compression::Zstd,
    };
    pack(&options, &NoProgress).unwrap();
    output
}

fn options(version: &str, layers: &[(&Path, Option<&str>)]) -> DeployOptions {
    DeployOptions {
        version: VersionLabel::parse(version).unwrap(),
        layers: layers
            .iter()
            .map(|(path, sha256)| Layer {
                source: ArtifactSource::Path(path.to_path_buf()),
                sha256: sha256.map(str::to_owned),
            })
            .collect(),
        force: false,
        copy: false,
        keep: 5,
        limits: Limits::default(),
        download: Default::default(),
        validate: None,
        activation: ActivationOptions {
            post_activate: None,
            health: None,
            health_timeout: Duration::from_secs(5),
            hook_timeout: Duration::from_secs(5),
            release_env: Default::default(),
        },
        lock_timeout: Duration::from_secs(5),
        sha256_verified: true,
        stop: None,
    }
}

#[test]
fn layers_unpack_in_order_into_one_release() {
    let dir = tempfile::tempdir().unwrap();
    let base = archive(dir.path(), "base", &[("bin/app", "app v1\n"), ("config/app.toml", "port = 80\n")]);
    let overlay = archive(dir.path(), "overlay", &[("config/app.toml", "port = 8080\n"), ("config/extra.toml", "x\n")]);
    let root = ReleaseRoot::new(&dir.path().join("root")).unwrap();

    // Hooks see the release's own extra environment (the agent's LAYER_<i>_NAME, …).
    let seen = dir.path().join("seen");
    let mut first = options("cfg-1", &[(&base, None), (&overlay, None)]);
    first.validate = Some(format!("printf '%s ' \"$LAYER_1_NAME\" >> {}", seen.display()));
    first.activation.post_activate = Some(format!("printf '%s' \"$NEWID:$LAYER_1_NAME\" >> {}", seen.display()));
    first
        .activation
        .release_env
        .insert(VersionLabel::parse("cfg-1").unwrap(), vec![("LAYER_1_NAME".to_owned(), "overlay".to_owned())]);
    let report = deploy(&root, &first, &NoProgress).unwrap();
    assert_eq!(fs_err::read_to_string(&seen).unwrap(), "overlay cfg-1:overlay");
    assert_eq!(report.action, DeployAction::Deployed);
    assert_eq!(report.archives.len(), 2);
    let release = root.release_dir(&VersionLabel::parse("cfg-1").unwrap());
    assert_eq!(fs_err::read_to_string(release.join("bin/app")).unwrap(), "app v1\n");
    assert_eq!(
        fs_err::read_to_string(release.join("config/app.toml")).unwrap(),
        "port = 8080\n",
        "the later layer wins"
    );
    assert!(release.join("config/extra.toml").is_file());

    // The same layers again: nothing unpacked.
    let again = deploy(&root, &options("cfg-1", &[(&base, None), (&overlay, None)]), &NoProgress).unwrap();
    assert_eq!(again.action, DeployAction::AlreadyActive);
    assert_eq!(again.archives, report.archives);

    // Another order is other content under the same name: refused, as for one archive.
    let error = deploy(&root, &options("cfg-1", &[(&overlay, None), (&base, None)]), &NoProgress).unwrap_err();
    assert!(matches!(error, depot_release::Error::ReleaseExists { .. }), "{error}");

    // A layer whose digest does not match: nothing changes.
    let before = fs_err::read_dir(root.path().join("releases")).unwrap().count();
    let wrong = "0".repeat(64);
    let error = deploy(&root, &options("cfg-2", &[(&base, None), (&overlay, Some(&wrong))]), &NoProgress).unwrap_err();
    assert!(matches!(error, depot_release::Error::DigestMismatch { .. }), "{error}");
    assert_eq!(fs_err::read_dir(root.path().join("releases")).unwrap().count(), before);
    assert_eq!(root.current(), Some(VersionLabel::parse("cfg-1").unwrap()));

    let error = deploy(&root, &options("cfg-3", &[]), &NoProgress).unwrap_err();
    assert!(matches!(error, depot_release::Error::NoLayers { .. }), "{error}");
}

/// A layer deployed before is staged again from its listing and the content store: the archive
/// is not read (it may be gone), the tree is the one unpacking gives, and a listing whose objects
/// the store lost is not used.
#[test]
fn an_archive_staged_before_is_staged_again_without_reading_it() {
    use depot_release::digest::sha256_file;
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, String)> =
        (0..40).map(|i| (format!("lib/part-{}/file-{i}.txt", i % 4), format!("content {i}\n"))).collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let base = archive(dir.path(), "base", &files);
    let conf_1 =
        archive(dir.path(), "conf-1", &[("config/app.toml", "port = 1\n"), ("lib/part-0/file-0.txt", "mine\n")]);
    let conf_2 = archive(dir.path(), "conf-2", &[("config/app.toml", "port = 2\n")]);
    let (base_sha, conf_1_sha, conf_2_sha) =
        (sha256_file(&base).unwrap(), sha256_file(&conf_1).unwrap(), sha256_file(&conf_2).unwrap());
    let root = ReleaseRoot::new(&dir.path().join("root")).unwrap();
    let first =
        deploy(&root, &options("cfg-1", &[(&base, Some(&base_sha)), (&conf_1, Some(&conf_1_sha))]), &NoProgress)
            .unwrap();
    assert!(first.stats.as_ref().unwrap().objects_written > 40);

    // The base archive is gone: its listing and the store's objects are enough.
    let moved = dir.path().join("base-elsewhere.tar.zst");
    fs_err::rename(&base, &moved).unwrap();
    let second =
        deploy(&root, &options("cfg-2", &[(&base, Some(&base_sha)), (&conf_2, Some(&conf_2_sha))]), &NoProgress)
            .unwrap();
    assert_eq!(second.action, DeployAction::Deployed);
    assert_eq!(second.stats.as_ref().unwrap().objects_written, 1, "only conf-2's new file");
    let release = root.release_dir(&VersionLabel::parse("cfg-2").unwrap());
    assert_eq!(fs_err::read_to_string(release.join("lib/part-0/file-0.txt")).unwrap(), "content 0\n");
    assert_eq!(fs_err::read_to_string(release.join("config/app.toml")).unwrap(), "port = 2\n");

    // The same tree as unpacking both archives in a fresh root.
    fs_err::rename(&moved, &base).unwrap();
    let fresh = ReleaseRoot::new(&dir.path().join("fresh")).unwrap();
    deploy(&fresh, &options("cfg-2", &[(&base, Some(&base_sha)), (&conf_2, Some(&conf_2_sha))]), &NoProgress).unwrap();
    let version = VersionLabel::parse("cfg-2").unwrap();
    assert_eq!(
        root.read_manifest(&version).unwrap().summary.tree_digest,
        fresh.read_manifest(&version).unwrap().summary.tree_digest
    );

    // An object only base's listing names (conf-1 replaced that file in cfg-1) lost from the
    // store: base is unpacked again, and the tree is right.
    let lost = depot_release::digest::sha256_hex(b"content 5\n");
    fs_err::remove_file(root.store().object_path(&lost, 0o444)).unwrap();
    let third =
        deploy(&root, &options("cfg-3", &[(&base, Some(&base_sha)), (&conf_1, Some(&conf_1_sha))]), &NoProgress)
            .unwrap();
    assert_eq!(third.stats.as_ref().unwrap().objects_written, 1, "the lost object, written again");
    let version = VersionLabel::parse("cfg-3").unwrap();
    assert_eq!(
        root.read_manifest(&version).unwrap().summary.tree_digest,
        root.read_manifest(&VersionLabel::parse("cfg-1").unwrap()).unwrap().summary.tree_digest
    );
    assert!(depot_release::verify::verify(&root, &version).unwrap().problems.is_empty());

    // A damaged listing is not used: the archive is unpacked.
    let listing = root.path().join(format!(".depot/layers/{base_sha}.json"));
    fs_err::write(&listing, br#"[{"path":"../escape","type":"dir","mode":493}]"#).unwrap();
    deploy(&root, &options("cfg-4", &[(&base, Some(&base_sha)), (&conf_2, Some(&conf_2_sha))]), &NoProgress).unwrap();
    assert!(!dir.path().join("escape").exists());
    assert_eq!(
        root.read_manifest(&VersionLabel::parse("cfg-4").unwrap()).unwrap().summary.tree_digest,
        root.read_manifest(&VersionLabel::parse("cfg-2").unwrap()).unwrap().summary.tree_digest
    );

    // Without a verified download, the file is still hashed: a wrong sha256 is refused even
    // when a listing for it is kept.
    let mut unverified = options("cfg-5", &[(&conf_2, Some(&base_sha)), (&conf_1, Some(&conf_1_sha))]);
    unverified.sha256_verified = false;
    let error = deploy(&root, &unverified, &NoProgress).unwrap_err();
    assert!(matches!(error, depot_release::Error::DigestMismatch { .. }), "{error}");
}
