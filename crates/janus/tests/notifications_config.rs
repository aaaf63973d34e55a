//! `janus web` checks the notification sinks against its environment at start: a secret variable a
//! sink names but the environment lacks stops it, with the key named (issue 17).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;
use std::time::Duration;

#[test]
fn web_refuses_to_start_when_a_sinks_secret_variable_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    // A central cluster that is never reached: the check comes before anything talks to it.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n\
         users: [{name: u, user: {token: abc}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "database: {{url: 'sqlite://{}'}}\nnotifications:\n  slack: [{{name: ops, urlEnv: JANUS_TEST_SLACK_OPS_URL}}]\n",
            dir.path().join("janus.db").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_janus"))
        .args(["web", "--config"])
        .arg(&config)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .env_remove("JANUS_TEST_SLACK_OPS_URL")
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It must stop by itself; a web process that starts regardless is killed after the deadline.
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "janus web started without the sink's secret");
    assert!(
        stderr.contains("notifications.slack[0].urlEnv: environment variable JANUS_TEST_SLACK_OPS_URL is not set"),
        "{stderr}"
    );
}
