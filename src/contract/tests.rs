//! The shipped Envoy YAML names only filter state this module owns.

use super::*;
use std::path::{Path, PathBuf};

/// Every YAML file in the repository, outside build output and hidden folders.
fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                yaml_files(&path, found);
            }
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            found.push(path);
        }
    }
}

/// Every `wasm.signalbox.<key>` in `text`, without the `wasm.` prefix.
fn state_names(text: &str) -> Vec<String> {
    let needle = format!("{ENVOY_STATE_PREFIX}{STATE_PREFIX}");
    text.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &text[at + ENVOY_STATE_PREFIX.len()..];
            let end = rest
                .char_indices()
                .skip(STATE_PREFIX.len())
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
                .map_or(rest.len(), |(end, _)| end);
            rest[..end].to_string()
        })
        .collect()
}

fn shipped_yaml() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    yaml_files(root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path.strip_prefix(root).unwrap().to_path_buf(), text)
        })
        .collect()
}

#[test]
fn every_filter_state_name_in_the_shipped_yaml_is_owned_here() {
    let known = state_keys();
    let files = shipped_yaml();
    assert!(
        files.iter().any(|(path, _)| path.starts_with("envoy")),
        "no Envoy YAML found"
    );
    let mut seen = 0;
    for (path, text) in &files {
        for name in state_names(text) {
            seen += 1;
            assert!(
                known.contains(&name),
                "{} reads filter state wasm.{name}, which src/contract.rs does not name",
                path.display()
            );
        }
    }
    assert!(seen > 0, "the shipped YAML names no wasm.signalbox.* filter state");
}

#[test]
fn the_cluster_matchers_read_the_next_cluster_state() {
    let expected = format!("{ENVOY_STATE_PREFIX}{NEXT_CLUSTER_STATE}");
    let mut matchers = 0;
    for (path, text) in shipped_yaml() {
        let lines: Vec<&str> = text.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            // A route's `filter_state` match and a `FilterStateInput` both name the key on a `key:` line.
            let Some(key) = line.trim().trim_start_matches("- ").strip_prefix("key:") else {
                continue;
            };
            let before = &lines[at.saturating_sub(3)..at];
            let is_matcher = before
                .iter()
                .any(|line| line.contains("filter_state:") || line.contains("FilterStateInput"));
            if is_matcher {
                matchers += 1;
                assert_eq!(
                    key.trim(),
                    expected,
                    "{} line {}: the cluster matcher reads another key",
                    path.display(),
                    at + 1
                );
            }
        }
    }
    assert!(
        matchers > 0,
        "no cluster matcher on filter state found in the shipped YAML"
    );
}

#[test]
fn state_names_reads_the_key_up_to_its_end() {
    assert_eq!(
        state_names("%FILTER_STATE(wasm.signalbox.ttft_ms:PLAIN)% key: wasm.signalbox.next\n"),
        ["signalbox.ttft_ms", "signalbox.next"]
    );
}

#[test]
fn every_state_key_has_the_prefix_and_is_unique() {
    let keys = state_keys();
    for key in &keys {
        assert!(key.starts_with(STATE_PREFIX), "{key}");
        assert_eq!(keys.iter().filter(|other| *other == key).count(), 1, "{key} twice");
    }
}

#[test]
fn each_access_log_field_has_its_prefixed_state_key() {
    for field in ACCESS_LOG_FIELDS {
        assert_eq!(field_state(field), Some(format!("{STATE_PREFIX}{field}").as_str()));
    }
    assert_eq!(ACCESS_LOG_STATE_KEYS.len(), ACCESS_LOG_FIELDS.len());
    assert_eq!(field_state("modle"), None);
}
