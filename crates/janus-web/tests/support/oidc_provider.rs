//! The npm `oidc-provider` harness (`tests/oidc/provider.mjs`, installed into `.tools/node` by
//! `scripts/install-test-tools.sh`) and the person's side of its login and device pages, over plain
//! HTTP: shared by tests/oidc.rs, tests/device_limits.rs and the `janus login --oidc` end-to-end test in
//! crates/janus/tests. An includer also includes this crate's tests/common as `mod common` (the web stack).
#![allow(dead_code, reason = "each test file that includes this uses a part of it")]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{StatusCode, Url, header};
use serde_json::Value;

pub const CLIENT_ID: &str = "janus-web";
pub const CLIENT_SECRET: &str = "oidc-test-client-secret-0123456789";

/// The provider process; killed when dropped.
pub struct Provider {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the test can run here; `false` (with a printed reason) only outside CI.
pub fn prerequisites() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        assert!(!ci, "node is required for the OIDC test under CI");
        println!("SKIPPED oidc test: `node` is not on the PATH (set CI=true to make this a failure)");
        return false;
    }
    let module = repo().join(".tools/node/node_modules/oidc-provider/package.json");
    if !module.exists() {
        assert!(
            !ci,
            "{} is missing: scripts/install-test-tools.sh installs it",
            module.display()
        );
        println!("SKIPPED oidc test: oidc-provider is not installed; run scripts/install-test-tools.sh");
        return false;
    }
    true
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The web stack (tests/common) in OIDC mode against a provider that `start` starts for the web's URL
/// (its redirect URI names the web, so it can only start once that URL is known).
pub async fn stack_with_provider(start: impl FnOnce(&str) -> Provider) -> (crate::common::Stack, Provider) {
    let mut provider = None;
    let stack = crate::common::Stack::start_with(
        |web| {
            let p = start(web);
            let cfg = config(web, &p.issuer);
            provider = Some(p);
            cfg
        },
        Some(CLIENT_SECRET.to_string()),
    )
    .await;
    (stack, provider.expect("the stack started the provider"))
}

/// Starts the provider for a web UI at `web` and waits for its "ready".
pub fn start_provider(web: &str, conform: bool) -> Provider {
    start_provider_env(web, conform, &[])
}

/// [`start_provider`] with extra environment (`OIDC_DEVICE_FLOW`, `OIDC_DEVICE_TTL`).
pub fn start_provider_env(web: &str, conform: bool, env: &[(&str, &str)]) -> Provider {
    let port = free_port();
    let mut child = Command::new("node")
        .arg(repo().join("tests/oidc/provider.mjs"))
        .arg(port.to_string())
        .arg(format!("{web}/oidc/callback"))
        .arg(CLIENT_ID)
        .arg(CLIENT_SECRET)
        .env("OIDC_CONFORM", if conform { "1" } else { "0" })
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    // The provider's development-mode warnings (in-memory adapter, dev keys) are expected here.
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !line.starts_with("oidc-provider WARNING") {
                eprintln!("oidc-provider: {line}");
            }
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.trim() == "ready" {
                let _ = tx.send(());
            }
        }
    });
    let provider = Provider {
        child,
        issuer: format!("http://127.0.0.1:{port}"),
    };
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the OIDC provider did not print ready");
    provider
}

pub fn config(web: &str, issuer: &str) -> String {
    format!(
        "web:\n  authMode: oidc\n  baseUrl: {web}\n  oidc:\n    issuerUrl: {issuer}\n    clientId: {CLIENT_ID}\n    \
         allowedDomains: [Example.com]\n    adminGroups: [platform-admins]\n"
    )
}

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub fn location(r: &reqwest::Response) -> Url {
    let loc = r
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("Location");
    r.url().join(loc).expect("Location URL")
}

/// The hidden `xsrf` field of one of the provider's device pages.
pub fn xsrf(page: &str) -> String {
    let at = page.find(r#"name="xsrf" value=""#).expect("xsrf field") + r#"name="xsrf" value=""#.len();
    page[at..].split('"').next().expect("xsrf value").to_string()
}

/// The person's side of the device flow at the provider's own pages: enter the user code, confirm it
/// (or abort), then log `account` in and grant consent through the scripted interactions.
pub async fn approve_device(d: &Value, account: &str, abort: bool) {
    let http = browser();
    let uri = d["verificationUri"].as_str().expect("verificationUri");
    let code = d["userCode"].as_str().expect("userCode");
    let page = http
        .get(uri)
        .send()
        .await
        .expect("device page")
        .text()
        .await
        .expect("body");
    let secret = xsrf(&page);
    let r = http
        .post(uri)
        .form(&[("xsrf", secret.as_str()), ("user_code", code)])
        .send()
        .await
        .expect("enter code");
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.expect("confirm page");
    assert!(page.contains("Confirm Device"), "{page}");
    let answer = if abort { ("abort", "yes") } else { ("confirm", "yes") };
    let mut r = http
        .post(uri)
        .form(&[("xsrf", secret.as_str()), ("user_code", code), answer])
        .send()
        .await
        .expect("confirm");
    if abort {
        return;
    }
    for _ in 0..20 {
        if !r.status().is_redirection() {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            assert_eq!(status, StatusCode::OK, "{body}");
            assert!(body.contains("Sign-in Success"), "{body}");
            return;
        }
        let mut next = location(&r);
        if next.path().starts_with("/interaction/") {
            next.query_pairs_mut().append_pair("login", account);
        }
        r = http.get(next).send().await.expect("follow");
    }
    panic!("the device flow did not finish within 20 redirects");
}
