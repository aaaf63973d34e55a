#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Keeps the README true: every command block marked `<!-- readme-check: … -->` is checked — `flags`: the
//! program and every `--flag` exist; `exists`: the script exists and is executable; `helm`: the
//! helm command renders with the real helm binary and the chart from the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (kind, lines of the code block) for every marked block.
fn blocks() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(kind) = line
            .trim()
            .strip_prefix("<!-- readme-check:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "a readme-check marker must precede a code block"
        );
        let mut body = Vec::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            body.push(l.to_string());
        }
        out.push((kind.trim().to_string(), body));
    }
    out
}

/// Commands of a block: comments dropped, `#` trailing comments cut.
fn commands(body: &[String]) -> Vec<Vec<String>> {
    body.iter()
        .map(|l| l.split(" #").next().unwrap_or_default().trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn flags(words: &[String]) -> Vec<String> {
    words
        .iter()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.split('=').next().unwrap_or_default().to_string())
        .collect()
}

fn help_of(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program).args(args).arg("--help").output().expect("runs");
    assert!(out.status.success(), "{} {args:?} --help failed", program.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kubesim_bin() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_janus"))
        .parent()
        .expect("dir")
        .to_path_buf();
    let bin = dir.join("kubesim");
    if !bin.exists() {
        let st = Command::new("cargo")
            .args(["build", "-p", "kubesim", "--bin", "kubesim"])
            .current_dir(root())
            .status()
            .expect("cargo");
        assert!(st.success());
    }
    bin
}

fn check_flags(words: &[String]) {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["cargo", "run", "-p", pkg, "--", sub, ..] => {
            let bin = match *pkg {
                "janus" => PathBuf::from(env!("CARGO_BIN_EXE_janus")),
                "kubesim" => kubesim_bin(),
                other => panic!("README runs unknown package {other}"),
            };
            let help = help_of(&bin, &[sub]);
            for f in flags(words) {
                assert!(
                    help.contains(&f),
                    "README: `{}` uses {f}, which `{pkg} {sub}` does not have",
                    words.join(" ")
                );
            }
        }
        [script, ..] if script.starts_with("scripts/") => {
            let path = root().join(script);
            check_exists(&path);
            let text = std::fs::read_to_string(&path).expect("script");
            for f in flags(words) {
                assert!(
                    text.contains(&f),
                    "README: `{}` uses {f}, unknown to {script}",
                    words.join(" ")
                );
            }
        }
        _ => panic!("README: cannot check `{}`", words.join(" ")),
    }
}

fn check_exists(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let meta =
        std::fs::metadata(path).unwrap_or_else(|_| panic!("README names {} which does not exist", path.display()));
    assert!(
        meta.permissions().mode() & 0o111 != 0,
        "{} is not executable",
        path.display()
    );
}

fn check_helm(words: &[String]) {
    let helm = root().join(".tools/bin/helm");
    assert!(
        helm.exists(),
        "helm not found at {}: run scripts/install-test-tools.sh",
        helm.display()
    );
    assert_eq!(
        &words[..3],
        ["helm", "upgrade", "--install"],
        "README helm commands install"
    );
    let args: Vec<&str> = words[3..]
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--create-namespace")
        .collect();
    let out = Command::new(&helm)
        .arg("template")
        .args(&args)
        .current_dir(root())
        .output()
        .expect("helm");
    assert!(
        out.status.success(),
        "README: `{}` does not render: {}",
        words.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_checked_command_block_in_the_readme_works() {
    let blocks = blocks();
    assert!(blocks.len() >= 4, "the README's command blocks are marked");
    for (kind, body) in blocks {
        for words in commands(&body) {
            match kind.as_str() {
                "flags" => check_flags(&words),
                "exists" => check_exists(&root().join(&words[0])),
                "helm" => check_helm(&words),
                other => panic!("unknown readme-check kind {other}"),
            }
        }
    }
}
