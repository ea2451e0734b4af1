//! The README and the code say the same: every configuration key has its row in the README's
//! configuration table (with `0` = unlimited on every quota, as the rate limiter treats it), and
//! every `gallery` command and flag is in the README.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Command;

fn readme() -> String {
    // The checkout `cargo test` runs in (its environment), not the one the binary was built in.
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    std::fs::read_to_string(std::path::Path::new(&dir).join("README.md")).unwrap()
}

/// The dotted keys of the leaves of `value` under `prefix`.
fn keys(prefix: &str, value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(fields) if !fields.is_empty() => {
            for (name, field) in fields {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                keys(&key, field, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

/// The rows of the README's configuration table, by key.
fn documented_rows(readme: &str) -> Vec<(String, String)> {
    readme
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| `")?;
            let (key, row) = rest.split_once('`')?;
            let dotted = key.contains('.')
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_' || c.is_ascii_digit());
            dotted.then(|| (key.to_owned(), row.to_owned()))
        })
        .collect()
}

#[test]
fn every_configuration_key_is_documented() {
    let config = serde_json::to_value(gallery::Config::default()).unwrap();
    let mut all = BTreeSet::new();
    keys("", &config, &mut all);
    let readme = readme();
    let rows = documented_rows(&readme);
    let documented: BTreeSet<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    let missing: Vec<&String> = all
        .iter()
        .filter(|k| !documented.contains(k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "configuration keys missing from the README: {missing:?}"
    );
    // Rows of the configuration's sections that name no key of the default configuration
    // are keys unset by default, or mistakes: the configuration's loader tells (it refuses
    // unknown fields).
    let sections: BTreeSet<&str> = all.iter().filter_map(|k| k.split('.').next()).collect();
    let dir = tempfile::tempdir().unwrap();
    let unknown: Vec<&&str> = documented
        .iter()
        .filter(|k| !all.contains(**k))
        .filter(|k| k.split('.').next().is_some_and(|s| sections.contains(s)))
        .filter(|k| {
            let (section, field) = k.rsplit_once('.').unwrap();
            let file = dir.path().join("probe.toml");
            std::fs::write(&file, format!("[{section}]\n{field} = \"probe\"\n")).unwrap();
            let loaded = gallery::Config::load(Some(&file), &Default::default());
            loaded.is_err_and(|e| {
                let mut chain = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    chain.push_str(&cause.to_string());
                    source = cause.source();
                }
                chain.contains("unknown field")
            })
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "README rows of no configuration key: {unknown:?}"
    );
}

#[test]
fn every_quota_says_that_zero_is_unlimited_and_is_so() {
    let readme = readme();
    let quotas: Vec<(String, String)> = documented_rows(&readme)
        .into_iter()
        .filter(|(k, _)| k.starts_with("limits.") && k.ends_with("_per_minute"))
        .collect();
    assert_eq!(quotas.len(), 4, "{quotas:?}");
    for (key, row) in &quotas {
        assert!(row.contains("`0` = unlimited"), "{key}: {row}");
    }
    use gallery_commands::{CommandClass, RateLimiter, RateLimits};
    let limiter = RateLimiter::new(RateLimits {
        generation_per_minute: 0,
        interactions_per_minute: 0,
        catalog_per_minute: 0,
        auth_per_minute: 0,
    });
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    for class in [
        CommandClass::Generation,
        CommandClass::Interactions,
        CommandClass::Catalog,
        CommandClass::Auth,
    ] {
        for _ in 0..1_000 {
            assert!(
                limiter
                    .check(gallery_commands::Subject::Client(ip), class)
                    .is_ok()
            );
        }
    }
}

/// The subcommands and long flags a `--help` text lists.
fn help(args: &[&str]) -> (Vec<String>, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_gallery"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut commands = Vec::new();
    let mut flags = Vec::new();
    let mut section = "";
    for line in text.lines() {
        if !line.starts_with(' ') {
            section = line;
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        if section.starts_with("Commands") && first != "help" {
            commands.push(first.to_owned());
        }
        if section.starts_with("Options") {
            for word in line.split_whitespace() {
                let word = word.trim_end_matches(',');
                if let Some(flag) = word.strip_prefix("--")
                    && !["help", "version"].contains(&flag)
                {
                    flags.push(format!("--{flag}"));
                }
            }
        }
    }
    (commands, flags)
}

#[test]
fn every_command_and_flag_of_the_binary_is_documented() {
    let readme = readme();
    let (_, global) = help(&[]);
    let mut pending = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        seen += 1;
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let (commands, flags) = help(&args);
        let command = format!("gallery {}", path.join(" "));
        // The command's own row (or, for the top level, anywhere) names each of its flags.
        let rows: Vec<&str> = readme
            .lines()
            .filter(|l| {
                path.is_empty()
                    || l.contains(&format!("`{command} "))
                    || l.contains(&format!("`{command}`"))
            })
            .collect();
        assert!(!rows.is_empty(), "README lacks `{command}`");
        for flag in flags
            .iter()
            .filter(|f| path.is_empty() || !global.contains(f))
        {
            assert!(
                rows.iter().any(|row| row.contains(flag.as_str())),
                "README's row of `{command}` lacks {flag}"
            );
        }
        for command in commands {
            let mut next = path.clone();
            next.push(command);
            pending.push(next);
        }
    }
    assert!(seen > 8, "only {seen} commands found");
    assert!(global.contains(&"--config".to_owned()), "{global:?}");
}
