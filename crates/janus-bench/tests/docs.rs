#![allow(clippy::unwrap_used, clippy::expect_used)]
//! docs/benchmarks.md's generated block shows the recorded benchmark run (docs/benchmarks.json), as
//! `scripts/bench.sh --check-docs` checks it: a figure changed in one and not the other fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(summary: &Path, docs: &Path) -> std::process::Output {
    Command::new("python3")
        .arg(root().join("scripts/bench/summary.py"))
        .arg("check")
        .arg(summary)
        .arg(docs)
        .output()
        .expect("python3 runs")
}

#[test]
fn the_benchmarks_page_shows_the_recorded_run() {
    let out = check(&root().join("docs/benchmarks.json"), &root().join("docs/benchmarks.md"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_figure_changed_in_the_summary_alone_is_drift() {
    let dir = std::env::temp_dir().join(format!("janus-bench-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let summary = dir.join("summary.json");
    let docs = dir.join("benchmarks.md");
    let figure = |value: f64| {
        serde_json::json!([{
            "part": "failover", "figure": "SIGTERM of the leader → the standby holds the Lease",
            "unit": "ms", "value": value, "target": "< 1000", "pass": true,
            "command": "scripts/bench.sh failover", "machine": "2 cores", "at": "2026-12-06 23:00 UTC"
        }])
        .to_string()
    };
    std::fs::write(&summary, figure(120.0)).unwrap();
    let markers = std::fs::read_to_string(root().join("docs/benchmarks.md")).unwrap();
    let begin = markers
        .lines()
        .find(|l| l.starts_with("<!-- bench:summary:begin"))
        .unwrap();
    std::fs::write(
        &docs,
        format!("# Benchmarks\n\n{begin}\n<!-- bench:summary:end -->\n\nmore\n"),
    )
    .unwrap();
    let record = Command::new("python3")
        .arg(root().join("scripts/bench/summary.py"))
        .args(["record"])
        .arg(&summary)
        .arg(&docs)
        .status()
        .unwrap();
    assert!(record.success());
    let page = std::fs::read_to_string(&docs).unwrap();
    assert!(page.contains("| 120 ms | < 1000 ms | yes |"), "{page}");
    assert!(
        page.ends_with("\n\nmore\n"),
        "the hand-written text around the block stays"
    );
    assert!(check(&summary, &docs).status.success());
    std::fs::write(&summary, figure(130.0)).unwrap();
    let out = check(&summary, &docs);
    assert!(!out.status.success(), "a changed figure must fail the check");
    assert!(String::from_utf8_lossy(&out.stdout).contains("+| SIGTERM of the leader"));
    let _ = std::fs::remove_dir_all(&dir);
}
