//! Secrets stay with their owner: the registry's data (environment values, token hashes,
//! environment layers) and a host's release log (hooks' output) are not readable by other local
//! users, from the first start and after an upgrade from looser modes; and the agent masks a
//! stage's environment values in its reports before it cuts them to size.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;
use crate::registry::{Registry, tree};
use crate::serve::{kill9, push, start_with, token};

fn mode(path: &Path) -> u32 {
    fs_err::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every path below `dir` (and `dir`) with its mode.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut found = vec![(dir.display().to_string(), mode(dir))];
    for entry in walk(dir) {
        found.push((entry.display().to_string(), mode(&entry)));
    }
    found
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            paths.extend(walk(&path));
        }
        paths.push(path);
    }
    paths
}

#[test]
fn the_registry_keeps_its_data_to_its_user_from_the_start_and_tightens_an_older_data_directory() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let server = start_with(&ctx, &data, &[]);
    let archive = fs_err::read(ctx.release("1.0.0", &[("a.txt", "a\n")])).unwrap();
    push(&server.address, &token(&data), &archive, "1.0.0");
    for file in ["depot.db", "depot.db-wal", "depot.db-shm"] {
        assert!(data.join(file).is_file(), "{file} exists while the registry runs");
    }
    let found = modes(&data);
    assert!(found.iter().any(|(path, _)| path.contains("/blobs/sha256/")), "{found:?}");
    for (path, mode) in &found {
        let is_dir = Path::new(path).is_dir();
        let expected = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, expected, "{path} is {mode:04o}, not {expected:04o}; all: {found:?}");
    }
    assert!(!server.stderr.contains("open to other users"), "nothing to tighten on a first start: {}", server.stderr);
    let mut server = server;
    kill9(&mut server);

    // A data directory from before: everything readable by all.
    for (path, _) in &found {
        set_mode(Path::new(path), if Path::new(path).is_dir() { 0o755 } else { 0o644 });
    }
    let server = start_with(&ctx, &data, &[]);
    // What the registry opens is tightened: the data directory, the database and its companions,
    // the blob store's directories. The blob files and fan-out directories below are not walked
    // (a store may hold millions): the 0700 directories above them keep other users out.
    let blobs = data.join("blobs");
    for tightened in [&data, &blobs, &blobs.join("sha256"), &blobs.join("uploads")] {
        assert_eq!(mode(tightened), 0o700, "{}", tightened.display());
    }
    for file in ["depot.db", "depot.db-wal", "depot.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    for tightened in [&data, &data.join("depot.db"), &blobs] {
        let notice = format!("{} was open to other users (mode 0", tightened.display());
        assert!(server.stderr.contains(&notice), "a warning names {}: {}", tightened.display(), server.stderr);
    }
}

#[test]
fn the_release_log_is_private_from_the_start_and_an_older_one_is_tightened() {
    let ctx = TestContext::new();
    let archive = ctx.release("1.0.0", &[("a.txt", "a\n")]);
    ctx.deploy("1.0.0", &archive, &["--post-activate", "echo SECRET=hunter2-value"]).success();
    let log = ctx.root().join("logs/releases.log");
    assert!(fs_err::read_to_string(&log).unwrap().contains("hunter2-value"), "the log records the hook's output");
    assert_eq!(mode(&log), 0o600);

    // A log from before: readable by all, then tightened by the next command, which says so.
    set_mode(&log, 0o644);
    ctx.deploy("2.0.0", &ctx.release("2.0.0", &[("a.txt", "b\n")]), &[]).success();
    assert_eq!(mode(&log), 0o640, "others lose read access; the owner's group keeps what it had");
    let text = fs_err::read_to_string(&log).unwrap();
    assert!(
        text.contains("logs/releases.log was open to other users (mode 0644); changed to 0640"),
        "the log says so:\n{text}"
    );
    // A mode given on purpose within the rule (group readable) stays, with no notice.
    ctx.run(&["rollback", "--root", &ctx.root_str()]).success();
    assert_eq!(mode(&log), 0o640);
    assert_eq!(fs_err::read_to_string(&log).unwrap().matches("was open to other users").count(), 1);
}

/// The longest error and output an agent report carries (`depot_api::types::MAX_REPORT_*`).
const MAX_ERROR: usize = 4 * 1024;
const MAX_OUTPUT: usize = 16 * 1024;

/// A stage's secret, made of letters and digits no message of depot's contains four of in a row.
const SECRET: &str = "Qz7xK9wPv3LmT8rY2hNc5JbF6gDs4Wq1";

/// The report `host` last sent on `config`, as the registry stored it: (error, output_tail).
fn stored_report(ctx: &TestContext, registry: &Registry, config: &str, host: &str) -> (String, String) {
    let agents = registry.run(ctx, &["status", config, "--json"]).success().json();
    let agent = agents.as_array().unwrap().iter().find(|a| a["host"] == host).expect("a report").clone();
    let report = if agent.get("report").is_some() { agent["report"].clone() } else { agent };
    let text = |field: &str| report[field].as_str().unwrap_or_default().to_owned();
    (text("error"), text("output_tail"))
}

/// Every run of four or more characters of `secret` that `text` shows.
fn leaks(text: &str, secret: &str) -> Vec<String> {
    (0..=secret.len() - 4).map(|at| &secret[at..at + 4]).filter(|gram| text.contains(gram)).map(str::to_owned).collect()
}

#[test]
fn the_agent_masks_environment_values_before_cutting_its_report_and_keeps_its_files_private() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    registry.run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "v1", "v1")]).success();
    registry.run(&ctx, &["pipeline", "create", "web", "--component", "web", "--stage", "prod"]).success();
    registry.run(&ctx, &["env", "set", "web/prod", &format!("API_KEY={SECRET}"), "ROUND=1"]).success();
    let token = registry.run(&ctx, &["token", "create", "host-1", "--role", "agent", "--config", "web-prod"]);
    let token = token.success().stdout.trim().to_owned();

    // The validate hook prints one long line: PAD dots, the secret, then dots enough to put the
    // start of the 16 KiB output tail in the middle of the secret. PAD is chosen below so that
    // the end of the 4 KiB error falls in the middle of it too.
    let pad_file = ctx.path("pad");
    let after = MAX_OUTPUT - 16;
    let validate = format!(
        ". ./config/app.env; pad=$(cat {}); \
         printf '%s%s%s\\n' \"$(head -c $pad /dev/zero | tr '\\0' .)\" \"$API_KEY\" \"$(head -c {after} /dev/zero | tr '\\0' .)\"; \
         exit 1",
        pad_file.display()
    );
    let root = ctx.path("host-1");
    let once = || {
        let args = ["agent", "--config", "web-prod", "--name", "host-1", "--once", "--root", root.to_str().unwrap()];
        registry.run_as(&ctx, &token, &[&args[..], &["--validate", &validate]].concat())
    };

    // First, where the hook's line starts in the error (the error names the release, whose
    // length does not change): the masked secret stands at that offset.
    fs_err::write(&pad_file, "0").unwrap();
    once().failure();
    let (error, _) = stored_report(&ctx, &registry, "web-prod", "host-1");
    let offset = error.find("***").unwrap_or_else(|| panic!("the secret is masked in the error: {error}"));
    assert!(offset < 4000, "{error}");

    // Then the secret straddles both cuts: bytes 4096 of the error, and the first byte of the
    // output's last 16 KiB.
    fs_err::write(&pad_file, (MAX_ERROR - 16 - offset).to_string()).unwrap();
    registry.run(&ctx, &["env", "set", "web/prod", "ROUND=2"]).success();
    let run = once().failure();
    assert_eq!(leaks(&run.stderr, SECRET), Vec::<String>::new(), "the agent's own stderr (a journal) masks it too");
    let (error, output) = stored_report(&ctx, &registry, "web-prod", "host-1");
    assert!(error.len() <= MAX_ERROR && output.len() <= MAX_OUTPUT);
    assert_eq!(leaks(&error, SECRET), Vec::<String>::new(), "no part of the secret in the error: {error}");
    assert_eq!(leaks(&output, SECRET), Vec::<String>::new(), "no part of the secret in the output: {}", &output[..200]);
    assert!(error.contains("***"), "the masked value is where the cut was: {error}");
    assert_eq!(output.trim_matches('.'), "***", "the masked value is where the cut was: {}", &output[..200]);

    // The host's files: the release log (which holds the hook's output, secret and all) and the
    // downloaded environment layer are the agent's alone.
    let log = root.join("logs/releases.log");
    assert!(fs_err::read_to_string(&log).unwrap().contains(SECRET));
    assert_eq!(mode(&log), 0o600);
    let blobs = root.join(".depot/agent/blobs");
    assert_eq!(mode(&blobs), 0o700);
    let files = walk(&blobs);
    assert!(!files.is_empty());
    for file in files {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

/// Every file under `dir` that holds `needle`.
fn holding(dir: &Path, needle: &str) -> Vec<String> {
    walk(dir)
        .into_iter()
        .filter(|path| path.is_file())
        .filter(|path| fs_err::read(path).unwrap().windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|path| path.display().to_string())
        .collect()
}

/// A stage's values are sealed at rest: after `env set`, a deploy that reads them, `env list
/// --show` and a `kill -9` of the registry, no file of its data directory (database, WAL,
/// blobs, anything) holds a value, and the registry's log does not either; the key lives beside
/// the data directory, not in it; every read of the values is in the history.
#[test]
fn environment_values_are_sealed_at_rest_and_every_read_of_them_is_recorded() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let secret = "Sealed-9f3b1c77e2-VALUE";
    registry.run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "v1", "v1")]).success();
    registry.run(&ctx, &["pipeline", "create", "web", "--component", "web", "--stage", "prod"]).success();
    registry.run(&ctx, &["env", "set", "web/prod", &format!("DB_PASSWORD={secret}"), "MODE=live"]).success();
    let token = registry.run(&ctx, &["token", "create", "host-1", "--role", "agent", "--config", "web-prod"]);
    let token = token.success().stdout.trim().to_owned();
    let root = ctx.path("host-1");
    let args = ["agent", "--config", "web-prod", "--name", "host-1", "--once", "--root", root.to_str().unwrap()];
    registry.run_as(&ctx, &token, &args).success();
    let deployed = fs_err::read_to_string(root.join("releases/current/config/app.env")).unwrap();
    assert!(deployed.contains(secret), "the host gets the value: {deployed}");
    let shown = registry.run(&ctx, &["env", "list", "web/prod", "--show"]).success().stdout;
    assert!(shown.contains(secret), "operators still read it: {shown}");
    let history = registry.run(&ctx, &["history", "web"]).success().stdout;
    assert!(history.contains("admin read the values of web/prod"), "{history}");

    let data = ctx.path("registry-data");
    assert_eq!(holding(&data, secret), Vec::<String>::new(), "while it runs");
    assert_eq!(holding(&data, "MODE=live"), Vec::<String>::new(), "no dotenv text either");
    let mut registry = registry;
    registry.child.kill().unwrap(); // SIGKILL
    registry.child.wait().unwrap();
    assert_eq!(holding(&data, secret), Vec::<String>::new(), "after kill -9 (the WAL as it was left)");
    assert!(!registry.log().contains(secret), "the registry's log");
    let key = ctx.path("registry-data.secrets.key");
    assert_eq!(mode(&key), 0o600);
    assert!(
        !walk(&data).iter().any(|p| p.ends_with("registry-data.secrets.key")),
        "the key is not in the data directory"
    );

    // Back up: the values still open with the key.
    let registry = Registry::start(&ctx, &[]);
    let shown = registry.run(&ctx, &["env", "list", "web/prod", "--show"]).success().stdout;
    assert!(shown.contains(secret), "{shown}");
}

/// Where `depot admin rotate-key` keeps the old key whose file text is `text`: KEY.old-ID.
fn old_key(ctx: &TestContext, text: &str) -> std::path::PathBuf {
    let found: Vec<_> = walk(&ctx.path(""))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("secrets.key.old-"))
        .filter(|p| fs_err::read_to_string(p).unwrap() == text)
        .collect();
    assert_eq!(found.len(), 1, "one old key file holds it: {found:?}");
    found.into_iter().next().unwrap()
}

/// `depot admin rotate-key` re-seals every value with a new key: the old key opens nothing the
/// database holds, a registry still running on it writes nothing, one started with it is
/// refused, and a rotation killed at any step is finished by running the command again.
#[test]
fn rotating_the_secrets_key_reseals_every_value_and_survives_a_kill_at_every_step() {
    let ctx = TestContext::new();
    let secret = "Rotated-51c0ffee-VALUE";
    let data = ctx.path("registry-data");
    let key = ctx.path("registry-data.secrets.key");
    let data_arg = data.to_str().unwrap().to_owned();
    let rotate = |kill_at: Option<&str>| {
        let mut command = ctx.command();
        command.args(["admin", "rotate-key", "--data", &data_arg, "--json"]);
        if let Some(step) = kill_at {
            command.env("DEPOT_TEST_KILL_AT", step);
        }
        Run::from(command.output().expect("run depot"))
    };
    let registry = Registry::start(&ctx, &[]);
    registry.run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "v1", "v1")]).success();
    registry.run(&ctx, &["pipeline", "create", "web", "--component", "web", "--stage", "prod"]).success();
    registry.run(&ctx, &["env", "set", "web/prod", &format!("DB_PASSWORD={secret}")]).success();
    let first = fs_err::read_to_string(&key).unwrap();

    // Rotated under a running registry: it can no longer seal with its stale key.
    let report = rotate(None).success().json();
    assert_eq!(report["env_versions"], 1, "{report}");
    let second = fs_err::read_to_string(&key).unwrap();
    assert_ne!(first, second);
    assert_eq!(fs_err::read_to_string(old_key(&ctx, &first)).unwrap(), first);
    assert_eq!(mode(&key), 0o600);
    assert!(!ctx.path("registry-data.secrets.key.next").exists());
    let refused = registry.run(&ctx, &["env", "set", "web/prod", "MODE=stale"]).failure();
    assert!(refused.stderr.contains("the secrets key was rotated"), "{}", refused.stderr);
    assert!(refused.stderr.contains("(unavailable)"), "503: another replica may answer: {}", refused.stderr);
    let address = registry.url.trim_start_matches("http://");
    let (status, body) = crate::serve::http(address, "GET", "/healthz", "", b"");
    assert_eq!(status, 503, "a replica left with the old key is taken out of rotation: {body}");
    drop(registry);

    // The old key no longer starts the registry; it names both keys.
    let old = old_key(&ctx, &first);
    let refused = ctx
        .run(&["serve", "--listen", "127.0.0.1:0", "--data", &data_arg, "--secrets-key", old.to_str().unwrap()])
        .failure();
    assert!(
        refused.stderr.contains("is not") || refused.stderr.contains("not with the key given"),
        "{}",
        refused.stderr
    );
    let registry = Registry::start(&ctx, &[]);
    let shown = registry.run(&ctx, &["env", "list", "web/prod", "--show"]).success().stdout;
    assert!(shown.contains(secret), "{shown}");
    drop(registry);

    // Killed at each step, then run again: the registry opens its values with KEY at the end.
    for step in ["rotate-key-created", "rotate-key-resealed", "rotate-key-kept-old"] {
        let before = fs_err::read_to_string(&key).unwrap();
        let killed = rotate(Some(step));
        assert_eq!(killed.code, -1, "{step}: killed by its signal: {killed:?}");
        assert_eq!(fs_err::read_to_string(&key).unwrap(), before, "{step}: KEY still holds the old key");
        let finished = rotate(None).success().json();
        assert_eq!(finished["already"], step != "rotate-key-created", "{step}: {finished}");
        let after = fs_err::read_to_string(&key).unwrap();
        assert_ne!(after, before, "{step}: rotated");
        assert_eq!(fs_err::read_to_string(old_key(&ctx, &before)).unwrap(), before, "{step}: the old key kept");
        let registry = Registry::start(&ctx, &[]);
        let shown = registry.run(&ctx, &["env", "list", "web/prod", "--show"]).success().stdout;
        assert!(shown.contains(secret), "{step}: {shown}");
    }
    let registry = Registry::start(&ctx, &[]);
    registry.run(&ctx, &["env", "set", "web/prod", "MODE=rotated"]).success();
}
