#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Keeps the lint policy whole: `[workspace.lints]` forbids `unsafe`, denies `unwrap`/`expect` and
//! warns on missing docs, and every workspace member opts in with `[lints] workspace = true`. Cargo
//! says nothing when a crate lacks `[lints]` (it simply gets no lints), so a new crate would
//! otherwise slip out of the policy unnoticed. kubesim alone has its own table, because it needs
//! `unsafe` for PTYs and fork/exec: it must still deny `unsafe` by default and keep the rest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `section -> key -> value` of a manifest, values as written (quotes kept). The manifests are ours
/// and flat where it matters (headers, `key = value` lines, multi-line arrays only for `members`),
/// so a line reader is enough; anything it cannot read simply is not found and fails the test.
fn sections(path: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.split(" #").next().unwrap_or_default().trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            section = header.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let mut value = value.trim().to_string();
        if value == "[" {
            // A multi-line array: gather it up to its closing bracket.
            for more in lines.by_ref() {
                let more = more.trim();
                if more == "]" {
                    break;
                }
                value.push_str(more);
            }
            value.push(']');
        }
        out.entry(section.clone())
            .or_default()
            .insert(key.trim().to_string(), value);
    }
    out
}

fn get<'a>(m: &'a BTreeMap<String, BTreeMap<String, String>>, section: &str, key: &str) -> Option<&'a str> {
    m.get(section)?.get(key).map(String::as_str)
}

#[test]
fn the_workspace_table_forbids_unsafe_and_panicking_unwraps() {
    let ws = sections(&root().join("Cargo.toml"));
    assert_eq!(get(&ws, "workspace.lints.rust", "unsafe_code"), Some("\"forbid\""));
    assert_eq!(get(&ws, "workspace.lints.rust", "missing_docs"), Some("\"warn\""));
    assert_eq!(get(&ws, "workspace.lints.clippy", "unwrap_used"), Some("\"deny\""));
    assert_eq!(get(&ws, "workspace.lints.clippy", "expect_used"), Some("\"deny\""));

    // Tests may unwrap: clippy.toml lets #[test] functions and #[cfg(test)] modules do so.
    let clippy = sections(&root().join("clippy.toml"));
    assert_eq!(get(&clippy, "", "allow-unwrap-in-tests"), Some("true"));
    assert_eq!(get(&clippy, "", "allow-expect-in-tests"), Some("true"));
}

#[test]
fn every_workspace_member_opts_into_the_lints() {
    let ws = sections(&root().join("Cargo.toml"));
    let members = get(&ws, "workspace", "members").expect("[workspace] members");
    let members: Vec<&str> = members
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .collect();
    assert!(members.len() >= 8, "members not read: {members:?}");

    let mut outside = Vec::new();
    for member in &members {
        let manifest = sections(&root().join(member).join("Cargo.toml"));
        let ok = if member.ends_with("/kubesim") {
            // Its own table: `unsafe` denied (allowed block by block with a SAFETY comment), the
            // rest as in the workspace.
            get(&manifest, "lints.rust", "unsafe_code") == Some("\"deny\"")
                && get(&manifest, "lints.rust", "missing_docs") == Some("\"warn\"")
                && get(&manifest, "lints.clippy", "unwrap_used") == Some("\"deny\"")
                && get(&manifest, "lints.clippy", "expect_used") == Some("\"deny\"")
        } else {
            get(&manifest, "lints", "workspace") == Some("true")
        };
        if !ok {
            outside.push(*member);
        }
    }
    assert!(
        outside.is_empty(),
        "workspace members without the workspace lints (add `[lints]\\nworkspace = true`): {outside:?}"
    );
}
