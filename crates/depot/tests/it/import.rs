//! `depot import docker|oci`: images whose layers GNU tar made, laid out by hand as an OCI
//! layout (uncompressed, gzip and zstd layers) and turned into a `docker save` archive by
//! skopeo; imported, deployed by an agent, and compared with the tree the image should have:
//! files replaced, deleted by whiteouts, directories emptied by opaque whiteouts, absolute
//! symlinks kept inside the release, a fifo skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::registry::Registry;

/// A layer: a directory of files (`name` → content; `name/` a directory; `name -> target` a
/// symlink; `name|` a fifo) archived by GNU tar.
fn layer(ctx: &TestContext, name: &str, entries: &[&str]) -> Vec<u8> {
    let dir = ctx.path(&format!("layers/{name}"));
    fs_err::create_dir_all(&dir).unwrap();
    for entry in entries {
        let path = entry.split([' ', '=', '|']).next().unwrap().trim_end_matches('/');
        fs_err::create_dir_all(dir.join(path).parent().unwrap()).unwrap();
        if let Some((path, target)) = entry.split_once(" -> ") {
            std::os::unix::fs::symlink(target, dir.join(path)).unwrap();
        } else if let Some(path) = entry.strip_suffix('/') {
            fs_err::create_dir_all(dir.join(path)).unwrap();
        } else if let Some(path) = entry.strip_suffix('|') {
            assert!(Command::new("mkfifo").arg(dir.join(path)).status().unwrap().success());
        } else {
            let (path, content) = entry.split_once('=').unwrap_or((entry, ""));
            let path = dir.join(path);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, content).unwrap();
        }
    }
    let output = Command::new("tar")
        .args(["--create", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(&dir)
        .arg(".")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

fn sha256(bytes: &[u8]) -> String {
    sha256_hex(bytes)
}

/// Writes `bytes` as a blob of the layout and returns its descriptor.
fn blob(layout: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let hex = sha256(bytes);
    fs_err::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs_err::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
}

/// An OCI layout holding one image of `layers` (uncompressed tars, stored as `compression`
/// says) under each of `names`.
fn oci_layout(layout: &Path, layers: &[(Vec<u8>, &str)], names: &[&str]) -> PathBuf {
    oci_layout_claiming(layout, layers, names, &[])
}

/// [`oci_layout`] whose config claims other layer digests (`diff_ids`) for some layers.
fn oci_layout_claiming(
    layout: &Path,
    layers: &[(Vec<u8>, &str)],
    names: &[&str],
    claims: &[(usize, String)],
) -> PathBuf {
    fs_err::create_dir_all(layout).unwrap();
    fs_err::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (index, (tar, compression)) in layers.iter().enumerate() {
        let claimed = claims.iter().find(|(i, _)| *i == index).map(|(_, d)| d.clone());
        diff_ids.push(claimed.unwrap_or_else(|| format!("sha256:{}", sha256(tar))));
        descriptors.push(match *compression {
            "gzip" => blob(layout, "application/vnd.oci.image.layer.v1.tar+gzip", &gzip_bytes(tar)),
            "zstd" => blob(layout, "application/vnd.oci.image.layer.v1.tar+zstd", &zstd_bytes(tar)),
            _ => blob(layout, "application/vnd.oci.image.layer.v1.tar", tar),
        });
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/usr/bin/tool"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = blob(layout, "application/vnd.oci.image.config.v1+json", config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": descriptors,
    });
    let manifest = blob(layout, "application/vnd.oci.image.manifest.v1+json", manifest.to_string().as_bytes());
    let manifests: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            let mut descriptor = manifest.clone();
            descriptor["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
            descriptor
        })
        .collect();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    fs_err::write(layout.join("index.json"), index.to_string()).unwrap();
    layout.to_owned()
}

/// The three layers of the test image, and the tree it should have.
/// Uncompressed layer tars, each with how the layout stores it (`none`, `gzip`, `zstd`).
type Layers = Vec<(Vec<u8>, &'static str)>;

fn image_layers(ctx: &TestContext) -> (Layers, BTreeMap<String, Vec<u8>>) {
    let base = layer(
        ctx,
        "base",
        &[
            "etc/app.conf=v1",
            "usr/bin/tool=tool v1",
            "usr/lib/libx.so.1=lib",
            "usr/lib/libx.so -> /usr/lib/libx.so.1",
            "bin -> usr/bin",
            "var/cache/a=a",
            "var/cache/b=b",
            "opt/old/f=f",
            "run/pipe|",
        ],
    );
    let middle = layer(
        ctx,
        "middle",
        &[
            "etc/.wh.app.conf",
            "var/cache/.wh..wh..opq",
            "var/cache/c=c",
            "opt/.wh.old",
            "usr/bin/tool=tool v2",
            "srv/data=data",
        ],
    );
    let top = layer(ctx, "top", &["etc/app.conf=v3"]);
    let expected: BTreeMap<String, Vec<u8>> = [
        ("bin", "-> usr/bin"),
        ("etc/", ""),
        ("etc/app.conf", "v3"),
        ("opt/", ""),
        ("run/", ""),
        ("srv/", ""),
        ("srv/data", "data"),
        ("usr/", ""),
        ("usr/bin/", ""),
        ("usr/bin/tool", "tool v2"),
        ("usr/lib/", ""),
        ("usr/lib/libx.so", "-> ../../usr/lib/libx.so.1"),
        ("usr/lib/libx.so.1", "lib"),
        ("var/", ""),
        ("var/cache/", ""),
        ("var/cache/c", "c"),
    ]
    .into_iter()
    .map(|(path, content)| (path.to_owned(), content.as_bytes().to_vec()))
    .collect();
    (vec![(base, "none"), (middle, "gzip"), (top, "gzip")], expected)
}

fn skopeo(args: &[&str]) {
    let output = Command::new("skopeo").arg("--insecure-policy").args(args).output().expect("skopeo");
    assert!(output.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// What an agent deploys of configuration `config`, as a tree.
fn deployed(ctx: &TestContext, registry: &Registry, config: &str) -> BTreeMap<String, Vec<u8>> {
    let token = registry
        .run(ctx, &["token", "create", &format!("{config}-host"), "--role", "agent", "--config", config])
        .success();
    let root = ctx.path(&format!("hosts/{config}"));
    let root_arg = root.display().to_string();
    registry
        .run_as(
            ctx,
            token.stdout.trim(),
            &["agent", "--config", config, "--name", "host-1", "--once", "--root", &root_arg],
        )
        .success();
    ctx.snapshot(&root.join("releases/current/"))
}

fn config_layers(ctx: &TestContext, registry: &Registry, config: &str) -> Vec<String> {
    let json = registry.run(ctx, &["config", "show", config, "--json"]).success().json();
    json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{}:{}", l["component"].as_str().unwrap(), l["version"].as_str().unwrap()))
        .collect()
}

#[test]
fn an_image_imports_as_layers_and_deploys_to_the_tree_it_describes() {
    let ctx = TestContext::new();
    let (layers, expected) = image_layers(&ctx);
    let layout = oci_layout(&ctx.path("layout"), &layers, &["app"]);
    // skopeo (containers/image) writes the docker archive, as `docker save` would.
    let archive = ctx.path("app.tar");
    skopeo(&[
        "copy",
        &format!("oci:{}:app", layout.display()),
        &format!("docker-archive:{}:registry.example.com/team/app:1.0", archive.display()),
    ]);
    let registry = Registry::start(&ctx, &[]);

    // The platform comes from the image's config when nothing else names it.
    registry
        .run(&ctx, &["import", "docker", archive.to_str().unwrap(), "--platform", "linux/arm64"])
        .failure()
        .stderr_contains("no image in the source matches");
    let run = registry.run(&ctx, &["import", "docker", archive.to_str().unwrap()]).success();
    assert!(
        run.stderr.contains("Importing registry.example.com/team/app:1.0: 3 layers as configuration app"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("warning: app.l1: skipped ./run/pipe (fifo)"), "{}", run.stderr);
    assert!(run.stderr.contains("Created configuration app (revision 1"), "{}", run.stderr);
    let diff_ids: Vec<String> = layers.iter().map(|(tar, _)| sha256(tar)).collect();
    let want: Vec<String> = (0..3).map(|i| format!("app.l{}:{}", i + 1, diff_ids[i])).collect();
    assert_eq!(config_layers(&ctx, &registry, "app"), want);
    assert_eq!(deployed(&ctx, &registry, "app"), expected, "the image's tree, whiteouts applied");

    // Again, from standard input: every layer is reused and the configuration is unchanged.
    let mut command = ctx.command();
    command
        .env("DEPOT_REGISTRY", &registry.url)
        .env("DEPOT_TOKEN", &registry.admin)
        .args(["import", "docker", "-", "--json"])
        .stdin(fs_err::File::open(&archive).unwrap().into_parts().0);
    let again = Run::from(command.output().unwrap()).success().json();
    assert_eq!(again["action"], "unchanged");
    assert!(again["layers"].as_array().unwrap().iter().all(|l| l["reused"] == true), "{again}");

    // An OCI layout of the same image with its top layer in zstd, under another name and
    // with a settings layer on top: the same layer versions and blobs (the conversion depends
    // on the layer's content, not how it travelled), the same tree plus the settings.
    let mut zstd_top = layers.clone();
    zstd_top[2].1 = "zstd";
    let layout = oci_layout(&ctx.path("layout-zstd"), &zstd_top, &["app"]);
    registry
        .run(
            &ctx,
            &[
                "push",
                "settings",
                "1",
                &ctx.tree("settings", &[("etc/app.conf", "from settings")]).display().to_string(),
            ],
        )
        .success();
    let oci = registry
        .run(
            &ctx,
            &[
                "import",
                "oci",
                layout.to_str().unwrap(),
                "--name",
                "app-oci",
                "--layer",
                "settings:1",
                "--platform",
                "linux/amd64",
                "--json",
            ],
        )
        .success()
        .json();
    assert_eq!(oci["action"], "created");
    let digests = |name: &str| -> Vec<String> {
        let json = registry.run(&ctx, &["versions", name, "--json"]).success().json();
        json.as_array().unwrap().iter().map(|v| v["digest"].as_str().unwrap().to_owned()).collect()
    };
    for n in 1..=3 {
        assert_eq!(digests(&format!("app-oci.l{n}")), digests(&format!("app.l{n}")), "layer {n} converts the same");
    }
    let mut with_settings = expected.clone();
    with_settings.insert("etc/app.conf".into(), b"from settings".to_vec());
    with_settings.insert("VERSION".into(), b"1\n".to_vec());
    assert_eq!(deployed(&ctx, &registry, "app-oci"), with_settings);

    // A new image on the same base replaces the configuration's layers in a new revision.
    let newer = layers[..2].to_vec();
    let layout2 = oci_layout(&ctx.path("layout2"), &newer, &["app"]);
    let run = registry.run(&ctx, &["import", "oci", layout2.to_str().unwrap()]).success();
    assert!(run.stderr.contains("app.l1 ") && run.stderr.contains("reused"), "{}", run.stderr);
    assert!(run.stderr.contains("Replaced the layers of configuration app (revision 2"), "{}", run.stderr);
    assert_eq!(config_layers(&ctx, &registry, "app"), want[..2].to_vec());
    let history = registry.run(&ctx, &["config", "history", "app"]).success();
    assert!(history.stdout.contains("layers replaced"), "{}", history.stdout);
}

#[test]
fn an_import_refuses_ambiguous_damaged_and_undeployable_images_and_pushes_nothing() {
    let ctx = TestContext::new();
    let (layers, _) = image_layers(&ctx);
    let layout = oci_layout(&ctx.path("layout"), &layers, &["app", "other"]);
    let registry = Registry::start(&ctx, &[]);
    let dir = layout.to_str().unwrap();

    registry
        .run(&ctx, &["import", "oci", dir])
        .failure()
        .stderr_contains("the source holds 2 images")
        .stderr_contains("--image NAME")
        .stderr_contains("app, other");
    registry.run(&ctx, &["import", "oci", dir, "--image", "nope"]).failure().stderr_contains("it holds: app, other");
    registry.run(&ctx, &["import", "oci", dir, "--image", "other"]).success();
    assert_eq!(config_layers(&ctx, &registry, "other").len(), 3);

    // A blob whose bytes are not what its name says (the same layer, compressed again), a
    // layer whose content is not the config's digest, and a layer an agent would refuse: each
    // refused before anything is pushed.
    let (middle, _) = &layers[1];
    let renamed = ctx.path("renamed");
    oci_layout(&renamed, &layers, &["broken"]);
    let hex = sha256(&gzip_bytes(middle));
    let mut again = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut again, middle).unwrap();
    fs_err::write(renamed.join("blobs/sha256").join(&hex), again.finish().unwrap()).unwrap();
    registry
        .run(&ctx, &["import", "oci", renamed.to_str().unwrap()])
        .failure()
        .stderr_contains("layer 2 (broken.l2)")
        .stderr_contains("as its name says");
    let claiming =
        oci_layout_claiming(&ctx.path("claiming"), &layers, &["broken"], &[(2, format!("sha256:{}", "ab".repeat(32)))]);
    registry
        .run(&ctx, &["import", "oci", claiming.to_str().unwrap()])
        .failure()
        .stderr_contains("layer 3 (broken.l3)")
        .stderr_contains("as the image says");
    let escaping = layer(&ctx, "escaping", &["a/b/", "a/x -> b/../../../y"]);
    let refused = oci_layout(&ctx.path("refused"), &[layers[0].clone(), (escaping, "gzip")], &["broken"]);
    registry
        .run(&ctx, &["import", "oci", refused.to_str().unwrap()])
        .failure()
        .stderr_contains("broken.l2 would not deploy")
        .stderr_contains("outside the release")
        .stderr_contains("nothing was pushed");
    let components = registry.run(&ctx, &["components", "--json"]).success().stdout;
    assert!(!components.contains("broken."), "{components}");
    registry.run(&ctx, &["config", "show", "broken"]).failure();

    // A version under the layer's name that this import did not make is not taken for it.
    let (base, _) = &layers[0];
    let fake = ctx.tree("fake", &[("x", "not the layer")]);
    registry.run(&ctx, &["push", "forged.l1", &sha256(base), fake.to_str().unwrap(), "--free-form"]).success();
    let forged = oci_layout(&ctx.path("forged"), &layers, &["forged"]);
    registry
        .run(&ctx, &["import", "oci", forged.to_str().unwrap()])
        .failure()
        .stderr_contains("was not imported from this layer");

    // Not an image at all.
    registry
        .run(&ctx, &["import", "docker", ctx.release("1.0.0", &[("a", "a")]).to_str().unwrap()])
        .failure()
        .stderr_contains("not a `docker save` archive");
    registry
        .run(&ctx, &["import", "oci", ctx.path("").to_str().unwrap()])
        .failure()
        .stderr_contains("no oci-layout file");
}
