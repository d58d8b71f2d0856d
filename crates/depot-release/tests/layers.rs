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
                frames: None,
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

/// A plain tar (as image layers are) of `entries`: `name/` is a directory, `name` a file with
/// the given text.
fn layer_tar(dir: &Path, name: &str, entries: &[(&str, &str)]) -> PathBuf {
    let path = dir.join(format!("{name}.tar"));
    let mut builder = tar::Builder::new(fs_err::File::create(&path).unwrap());
    for (entry, text) in entries {
        let mut header = tar::Header::new_ustar();
        if entry.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder.append_data(&mut header, entry, std::io::empty()).unwrap();
        } else {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(text.len() as u64);
            builder.append_data(&mut header, entry, text.as_bytes()).unwrap();
        }
    }
    builder.into_inner().unwrap();
    path
}

/// Every path of a release below its root, with `/` after directories, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut paths = Vec::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let path = entry.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        paths.push(if entry.file_type().is_dir() { format!("{path}/") } else { path });
    }
    paths
}

#[test]
fn whiteouts_remove_what_earlier_layers_put_and_are_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let base = layer_tar(
        dir.path(),
        "base",
        &[
            ("a/", ""),
            ("a/keep", "k\n"),
            ("a/gone", "g\n"),
            ("a/sub/", ""),
            ("a/sub/x", "x\n"),
            ("b/", ""),
            ("b/old", "o\n"),
            ("b/deep/", ""),
            ("b/deep/older", "o\n"),
            ("c/", ""),
            ("c/y", "y1\n"),
            ("d", "d\n"),
            ("e/", ""),
            ("e/f", "f\n"),
            ("g/", ""),
            ("g/z", "z1\n"),
            ("h/", ""),
            ("h/old", "o\n"),
        ],
    );
    let upper = layer_tar(
        dir.path(),
        "upper",
        &[
            (".wh.d", ""),
            ("a/.wh.gone", ""),
            // The same layer's own entry stays, whatever the order.
            ("c/y", "y2\n"),
            ("c/.wh.y", ""),
            ("g/.wh.z", ""),
            ("g/z", "z2\n"),
            // A directory this layer puts and whites out: only the earlier content goes.
            ("h/", ""),
            ("h/new", "n\n"),
            (".wh.h", ""),
            ("b/", ""),
            ("b/.wh..wh..opq", ""),
            ("b/new", "n\n"),
            ("a/sub/y", "y\n"),
            ("a/.wh.sub", ""),
            // A whiteout of something no layer has, and aufs' own bookkeeping: nothing.
            ("a/.wh.never", ""),
            (".wh..wh.plnk", ""),
            // Opaque in a directory this layer does not list: earlier content goes, it stays.
            ("e/.wh..wh..opq", ""),
        ],
    );
    let root = ReleaseRoot::new(&dir.path().join("root")).unwrap();
    deploy(&root, &options("img-1", &[(&base, None), (&upper, None)]), &NoProgress).unwrap();
    let release = root.release_dir(&VersionLabel::parse("img-1").unwrap());
    assert_eq!(
        tree(&release),
        ["a/", "a/keep", "a/sub/", "a/sub/y", "b/", "b/new", "c/", "c/y", "e/", "g/", "g/z", "h/", "h/new"],
        "whiteouts applied, markers not written"
    );
    assert_eq!(fs_err::read_to_string(release.join("c/y")).unwrap(), "y2\n");
    assert_eq!(fs_err::read_to_string(release.join("g/z")).unwrap(), "z2\n");
    let version = VersionLabel::parse("img-1").unwrap();
    assert!(depot_release::verify::verify(&root, &version).unwrap().problems.is_empty());

    // Again in the same root: base is replayed from its listing, upper (whose effect depends on
    // what came before it) unpacked again; the same tree.
    use depot_release::digest::sha256_file;
    let (base_sha, upper_sha) = (sha256_file(&base).unwrap(), sha256_file(&upper).unwrap());
    assert!(root.path().join(format!(".depot/layers/{base_sha}.json")).exists(), "base keeps its listing");
    // Without base's archive: its listing and the store are enough.
    let moved = dir.path().join("base-moved.tar");
    fs_err::rename(&base, &moved).unwrap();
    for (n, root) in [(2, &root), (3, &root)] {
        let name = format!("img-{n}");
        deploy(root, &options(&name, &[(&base, Some(&base_sha)), (&upper, Some(&upper_sha))]), &NoProgress).unwrap();
        assert!(!root.path().join(format!(".depot/layers/{upper_sha}.json")).exists());
        assert_eq!(
            root.read_manifest(&VersionLabel::parse(&name).unwrap()).unwrap().summary.tree_digest,
            root.read_manifest(&version).unwrap().summary.tree_digest
        );
    }

    fs_err::rename(&moved, &base).unwrap();

    // A whiteout cannot reach outside: a path through a symlink removes nothing (what the
    // symlink points at stays), an opaque one there is refused, and so is a directory named as
    // a whiteout.
    let link = dir.path().join("link.tar");
    {
        let mut builder = tar::Builder::new(fs_err::File::create(&link).unwrap());
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        builder.append_link(&mut header, "out", "a").unwrap();
        builder.into_inner().unwrap();
    }
    let through = layer_tar(dir.path(), "through", &[("out/.wh.keep", "")]);
    deploy(&root, &options("img-6", &[(&base, None), (&link, None), (&through, None)]), &NoProgress).unwrap();
    let release = root.release_dir(&VersionLabel::parse("img-6").unwrap());
    assert_eq!(fs_err::read_to_string(release.join("a/keep")).unwrap(), "k\n");
    let through = layer_tar(dir.path(), "through-opaque", &[("out/.wh..wh..opq", "")]);
    let error =
        deploy(&root, &options("img-4", &[(&base, None), (&link, None), (&through, None)]), &NoProgress).unwrap_err();
    assert!(error.to_string().contains("passes through the symlink `out`"), "{error}");
    for (n, entries) in [[(".wh.dir/", "")], [(".wh.dir/child", "x")], [("a/.wh..", "")]].iter().enumerate() {
        let named = layer_tar(dir.path(), &format!("named-{n}"), entries);
        let error = deploy(&root, &options("img-5", &[(&base, None), (&named, None)]), &NoProgress).unwrap_err();
        assert!(
            error.to_string().contains("`.wh.` is reserved") || error.to_string().contains("names nothing"),
            "{error}"
        );
    }
}
