//! The email sink against a real SMTP server: Python's aiosmtpd (installed into .tools/venv by
//! scripts/install-test-tools.sh) with STARTTLS and AUTH required, started by the test. The delivered
//! message is parsed by Python's email package (tests/receivers/smtp_receiver.py) and checked: the
//! envelope, the headers (From, Reply-To, To, Subject, Message-ID, the idempotency key, urgency) and
//! both parts of the multipart/alternative body.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use janus_api::config::Config;
use janus_api::notifications::resolve;
use janus_notify::model::{Context, Event, implied};
use janus_notify::{SendError, Sink};
use serde_json::{Value, json};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> Option<PathBuf> {
    let py = common::repo().join(".tools/venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(py)
}

fn start(py: &Path, pki: &common::Pki, out: &Path) -> (Server, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/receivers/smtp_receiver.py");
    let mut child = Command::new(py)
        .arg(script)
        .arg(port.to_string())
        .arg(&pki.cert_file)
        .arg(&pki.key_file)
        .arg(out)
        .args(["janus", "smtp-pass-word"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY", "the SMTP receiver did not start");
    (Server(child), port)
}

fn wait_for(path: &Path) -> Value {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} never arrived",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sink(port: u16, pki: &common::Pki, password: &str) -> Box<dyn Sink> {
    let yaml = format!(
        r#"
adminEmails: [admin@example.com]
notifications:
  timeoutSeconds: 10
  email:
    - name: mail
      host: 127.0.0.1
      port: {port}
      security: starttls
      username: janus
      passwordEnv: SMTP_PASSWORD
      from: "k8s-janus <janus@example.com>"
      replyTo: platform@example.com
      caFile: {}
"#,
        pki.ca_file.display()
    );
    let c = Config::from_yaml(&yaml, "test").unwrap();
    let env = BTreeMap::from([("SMTP_PASSWORD".to_string(), password.to_string())]);
    let resolved = resolve(&c.notifications, &|k| env.get(k).cloned()).unwrap();
    janus_notify::build(&resolved, "web-0").unwrap().remove(0)
}

#[tokio::test]
async fn approvers_and_requesters_get_a_multipart_email_over_starttls_with_auth() {
    let Some(py) = python() else {
        return common::skip("email test", "aiosmtpd is not installed in .tools/venv");
    };
    let pki = common::Pki::new();
    let out = tempfile::tempdir().unwrap();
    let (_server, port) = start(&py, &pki, out.path());
    let mail = sink(port, &pki, "smtp-pass-word");

    // A pending request: to the admins (no policy), both parts, the links, the headers.
    let n = common::pending("prod");
    assert!(mail.accepts(&n));
    let key = n.idempotency_key("mail");
    let d = mail.send(&n, &key).await.unwrap();
    assert_eq!(d.status, Some(250));
    let got = wait_for(&out.path().join("1.json"));
    assert_eq!(got["tls"], true, "STARTTLS was used");
    assert_eq!(got["authenticated"], true);
    assert_eq!(got["mail_from"], "janus@example.com");
    assert_eq!(got["rcpt_tos"], json!(["admin@example.com", "oncall@example.com"]));
    let h = &got["headers"];
    assert_eq!(h["From"], "k8s-janus <janus@example.com>");
    assert_eq!(h["Reply-To"], "platform@example.com");
    assert_eq!(h["To"], "admin@example.com, oncall@example.com");
    assert_eq!(h["Subject"], "Access request from alice@example.com waits for approval");
    assert_eq!(h["X-Janus-Idempotency-Key"], key.as_str());
    assert!(
        h["Message-ID"].as_str().unwrap().ends_with("@example.com>"),
        "{}",
        h["Message-ID"]
    );
    assert!(h.get("Importance").is_none());
    assert_eq!(got["content_type"], "multipart/alternative");
    let parts = got["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["content_type"], "text/plain");
    assert_eq!(parts[1]["content_type"], "text/html");
    let text = parts[0]["body"].as_str().unwrap();
    let html = parts[1]["body"].as_str().unwrap();
    assert!(
        text.contains("Reason      INC-42: crash loop <b>in</b> payments & billing"),
        "{text}"
    );
    assert!(
        text.contains("Review the request: https://janus.example.com/requests/alice-prod-x1"),
        "{text}"
    );
    // The HTML part escapes what people typed.
    assert!(
        html.contains("INC-42: crash loop &lt;b&gt;in&lt;/b&gt; payments &amp; billing"),
        "{html}"
    );
    assert!(
        html.contains("<a href=\"https://janus.example.com/admin\">Open approvals</a>"),
        "{html}"
    );

    // The same delivery again (a crash between send and commit): the same Message-ID.
    mail.send(&n, &key).await.unwrap();
    let again = wait_for(&out.path().join("2.json"));
    assert_eq!(again["headers"]["Message-ID"], got["headers"]["Message-ID"]);

    // Break-glass: urgent.
    let config = common::config();
    let e = Event {
        kind: "request.break_glass".into(),
        key: "0b7d-uid/request.break_glass".into(),
        details: json!({"reason": "outage"}),
        ..n.event.clone()
    };
    let urgent = implied(&e, &Context::new(&config));
    mail.send(&urgent, &urgent.idempotency_key("mail")).await.unwrap();
    let got = wait_for(&out.path().join("3.json"));
    assert!(got["headers"]["Subject"].as_str().unwrap().starts_with("[URGENT] "));
    assert_eq!(got["headers"]["Importance"], "high");
    assert_eq!(got["headers"]["X-Priority"], "1");
}

#[tokio::test]
async fn smtp_refusals_are_permanent_and_temporary_failures_retryable() {
    let Some(py) = python() else {
        return common::skip("email refusal test", "aiosmtpd is not installed in .tools/venv");
    };
    let pki = common::Pki::new();
    let out = tempfile::tempdir().unwrap();
    let (_server, port) = start(&py, &pki, out.path());
    let mut n = common::pending("prod");
    let m = n.message.as_mut().unwrap();

    m.to.emails = vec!["reject@example.com".into()];
    match sink(port, &pki, "smtp-pass-word").send(&n, "k1").await {
        Err(SendError::Permanent { status, body }) => {
            assert_eq!(status, Some(550));
            assert!(body.contains("no such user"), "{body}");
        }
        other => panic!("a 550 is permanent: {other:?}"),
    }
    n.message.as_mut().unwrap().to.emails = vec!["later@example.com".into()];
    let r = sink(port, &pki, "smtp-pass-word").send(&n, "k2").await;
    assert!(
        matches!(r, Err(SendError::Retryable { .. })),
        "a 451 is retryable: {r:?}"
    );
    // A refused login (the server keeps the session waiting afterwards) ends within the sink's
    // timeout (10 s here), and the error never shows the password.
    n.message.as_mut().unwrap().to.emails = vec!["alice@example.com".into()];
    let t = Instant::now();
    let r = sink(port, &pki, "wrong-secret-pw").send(&n, "k3").await;
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "a refused login took {:?}",
        t.elapsed()
    );
    let e = r.expect_err("a wrong password is not a delivery");
    assert!(!e.to_string().contains("wrong-secret-pw"), "{e}");
    assert!(!out.path().join("1.json").exists(), "nothing was delivered");
}
