//! The environment layer's dotenv file, read back by the readers people use: sh, systemd's
//! parser (through its environment.d generator, which shares it), python-dotenv, node's dotenv
//! and dotenvy. Every value `check_env` accepts must come back as it was; the others are refused.
//! `.ci/install` installs python-dotenv and node's dotenv.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use depot_api::pipeline::{check_env, render_dotenv};

const ACCEPTED: &[&str] = &[
    "plain",
    "  spaced  ",
    "a # not a comment",
    "dollar $HOME and $1",
    "back`tick`",
    "double \"quoted\"",
    "back\\slash and C:\\dir",
    "it's",
    "multi\nline",
    "it's\ntwo lines",
    "ünïcödé ✓",
    "a=b;c&d|e<f>g*h?i[j]~%",
    "",
];

const REFUSED: &[&str] =
    &["${HOME}", "two\\\\backslashes", "ends with\\", "it's \"x\"", "it's $x", "it's `x`", "it's \\x"];

fn vars(keep: impl Fn(&str) -> bool) -> BTreeMap<String, String> {
    ACCEPTED
        .iter()
        .enumerate()
        .filter(|(_, value)| keep(value))
        .map(|(i, value)| (format!("V{i}"), (*value).to_owned()))
        .collect()
}

fn write(dir: &Path, name: &str, vars: &BTreeMap<String, String>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, render_dotenv(vars, "note")).unwrap();
    path
}

fn json(output: Output, reader: &str) -> BTreeMap<String, String> {
    assert!(output.status.success(), "{reader}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{reader}: {e}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn node_modules() -> PathBuf {
    std::env::var_os("DEPOT_NODE_MODULES").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/depot-ci/node/node_modules")
    })
}

#[test]
fn the_values_it_accepts_read_back_the_same_everywhere() {
    for value in ACCEPTED {
        check_env("V", Some(value)).unwrap_or_else(|e| panic!("{value:?}: {e}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let expected = vars(|_| true);
    let path = write(dir.path(), "app.env", &expected);
    let keys: Vec<&str> = expected.keys().map(String::as_str).collect();
    let print = "import json, os, sys; print(json.dumps({k: os.environ[k] for k in sys.argv[1:]}))";
    let sh = Command::new("sh")
        .args(["-c", &format!("set -a; . \"$0\"; exec python3 -c '{print}' \"$@\"")])
        .arg(&path)
        .args(&keys)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .output()
        .unwrap();
    assert_eq!(json(sh, "sh"), expected, "sh");
    let python = Command::new("python3")
        .args(["-c", "import json, sys, dotenv; print(json.dumps(dotenv.dotenv_values(sys.argv[1])))"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(json(python, "python-dotenv (.ci/install installs it)"), expected, "python-dotenv");
    let node = Command::new("node")
        .args([
            "-e",
            "const fs = require('fs'); console.log(JSON.stringify(require('dotenv').parse(fs.readFileSync(process.argv[1]))))",
        ])
        .arg(&path)
        .env("NODE_PATH", node_modules())
        .output()
        .unwrap();
    assert_eq!(json(node, "node's dotenv (.ci/install installs it)"), expected, "node's dotenv");
    let dotenvy: BTreeMap<String, String> = dotenvy::from_path_iter(&path).unwrap().map(|item| item.unwrap()).collect();
    assert_eq!(dotenvy, expected, "dotenvy");
    // The environment.d generator expands `$` and drops empty values: those are left out.
    let plain = vars(|value| !value.contains('$') && !value.is_empty());
    assert_eq!(systemd(&write(dir.path(), "plain.env", &plain)), plain, "systemd");
}

/// systemd's EnvironmentFile= parser, as its environment.d generator runs it.
fn systemd(path: &Path) -> BTreeMap<String, String> {
    let config = tempfile::tempdir().unwrap();
    std::fs::create_dir(config.path().join("environment.d")).unwrap();
    std::fs::copy(path, config.path().join("environment.d/50-app.conf")).unwrap();
    let output = Command::new("/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator")
        .env_clear()
        .env("XDG_CONFIG_HOME", config.path())
        .env("XDG_CONFIG_DIRS", "/nonexistent")
        .output()
        .expect("systemd's environment.d generator (Debian's systemd package)");
    assert!(output.stderr.is_empty(), "systemd: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| key.starts_with('V'))
        .map(|(key, value)| (key.to_owned(), unescape(value)))
        .collect()
}

/// The generator prints `KEY="value"` with `\"`, `\\`, `` \` ``, `\$` and `\n` escaped.
fn unescape(quoted: &str) -> String {
    let inner = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).unwrap_or(quoted);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[test]
fn values_no_quoting_carries_everywhere_are_refused_naming_why() {
    for value in REFUSED {
        let error = check_env("V", Some(value)).expect_err(value);
        assert!(error.contains("python-dotenv") || error.contains("`'`"), "{value:?}: {error}");
    }
}
