#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `janus login --oidc` end to end: the built binary against the real web (kubesim, controller, SQLite) in
//! OIDC mode and the real npm `oidc-provider` with its device flow. The test plays the person's side at
//! the provider's pages over HTTP (as a browser would) with the user code the CLI printed; the CLI's
//! login then finishes by itself and `janus whoami` answers with the provider's identity.

#[path = "../../janus-web/tests/common/mod.rs"]
mod common;
#[path = "../../janus-web/tests/support/oidc_provider.rs"]
mod oidc_provider;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oidc_provider::{CLIENT_SECRET, approve_device, prerequisites, stack_with_provider, start_provider};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_janus");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_login_oidc_signs_in_through_the_device_flow() {
    if !prerequisites() {
        return;
    }
    let (stack, provider) = stack_with_provider(|web| start_provider(web, false)).await;
    let home = tempfile::tempdir().expect("config dir");
    let janus = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("XDG_CONFIG_HOME", home.path())
            .env_remove("JANUS_URL")
            .env_remove("JANUS_TOKEN");
        c
    };

    let mut login = janus(&["login", "--oidc", "--url", &stack.url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("janus login --oidc");
    // "To log in, open URI in a browser and enter the code CODE"
    let stderr = login.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("janus login: {line}");
            let _ = tx.send(line);
        }
    });
    let prompt = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("janus login --oidc printed no code");
        if line.contains("enter the code") {
            break line;
        }
    };
    let uri = prompt
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .expect("verification URI")
        .to_string();
    let code = prompt.split_whitespace().last().expect("user code").to_string();

    approve_device(&json!({"verificationUri": uri, "userCode": code}), "bob", false).await;

    // The CLI polls at the provider's interval (5 s by default) and finishes by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = login.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "janus login --oidc did not finish after the approval"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut login.stdout.take().expect("stdout"), &mut out).expect("stdout");
    assert!(status.success(), "janus login --oidc: {status}; {out}");
    assert!(out.contains("bob@example.com"), "{out}");

    let who = janus(&["whoami", "-o", "json"]).output().expect("janus whoami");
    assert!(who.status.success(), "{}", String::from_utf8_lossy(&who.stderr));
    let id: Value = serde_json::from_slice(&who.stdout).expect("whoami JSON");
    assert_eq!(id["email"], "bob@example.com", "{id}");
    assert_eq!(id["auth"], "oidc");
    assert_eq!(id["token"]["personal"], false);
    let token = std::fs::read_to_string(home.path().join("janus/token")).expect("token file");
    assert!(token.trim().starts_with("janus_cli_"), "a CLI session is saved");
    assert!(!token.contains(CLIENT_SECRET));

    stack.stop().await;
    drop(provider);
}
