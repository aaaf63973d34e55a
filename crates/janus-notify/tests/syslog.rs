//! The syslog sink against Debian's rsyslog (apt `rsyslog` + `rsyslog-gnutls`, installed by
//! scripts/install-test-tools.sh), started by the test with `imtcp` over TLS (the gtls driver) and a
//! certificate from a throwaway CA. rsyslog parses each RFC 5424 message (octet-counted framing, RFC
//! 6587, which imtcp detects by the leading digits) and writes the parsed fields to a file the test
//! checks: facility, severity, host name, APP-NAME, MSGID, structured data and the JSON message.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use janus_api::config::Config;
use janus_api::notifications::resolve;
use janus_notify::model::{Context, Event, implied};
use janus_notify::{SendError, Sink};
use serde_json::json;

struct Rsyslog(Child);

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rsyslogd() -> Option<PathBuf> {
    let bin = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
    // The TLS driver is a separate Debian package (rsyslog-gnutls).
    let driver = [
        "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so",
        "/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so",
        "/usr/lib/rsyslog/lmnsd_gtls.so",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    driver.then_some(bin)
}

/// rsyslog with imtcp on TLS on 127.0.0.1:`port`, writing each parsed message as one line to `out`.
fn start(bin: &Path, pki: &common::Pki, dir: &Path, port: u16, out: &Path) -> Rsyslog {
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(
  workDirectory="{work}"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}"
)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="fields" type="string"
  string="%syslogfacility%|%syslogseverity%|%protocol-version%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
*.* action(type="omfile" file="{out}" template="fields")
"#,
            work = work.display(),
            ca = pki.ca_file.display(),
            cert = pki.cert_file.display(),
            key = pki.key_file.display(),
            out = out.display(),
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut rsyslog = Rsyslog(child);
    // Ready means a TLS handshake with this test's CA completes: a bare TCP connect can be taken by
    // the kernel's backlog before rsyslogd serves its listener, and CI saw the first send refused
    // right after such a connect. A handshake proves the listener is served, and served by us.
    let trusted = pki.client_config();
    let started = Instant::now();
    while let Err(e) = handshake(&trusted, port) {
        if let Some(status) = rsyslog.0.try_wait().unwrap() {
            panic!("rsyslogd exited with {status} before it served {port}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "rsyslogd did not serve TLS on {port}: {e}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    rsyslog
}

/// One TLS handshake with the receiver on 127.0.0.1:`port`, closed cleanly without a message.
fn handshake(config: &std::sync::Arc<rustls::ClientConfig>, port: u16) -> std::io::Result<()> {
    use std::io::Write;
    let tcp = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(2)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(2)))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    tls.conn.send_close_notify();
    tls.flush()
}

fn sink(port: u16, ca_file: Option<&Path>) -> Box<dyn Sink> {
    let ca = ca_file
        .map(|p| format!(", caFile: {}", p.display()))
        .unwrap_or_default();
    let yaml = format!(
        "notifications:\n  timeoutSeconds: 5\n  syslog: [{{name: siem, host: localhost, port: {port}, events: [request.created, login.failed]{ca}}}]\n"
    );
    let c = Config::from_yaml(&yaml, "test").unwrap();
    let resolved = resolve(&c.notifications, &|_| None::<String>).unwrap();
    janus_notify::build(&resolved, "janus-web-7d9f").unwrap().remove(0)
}

fn lines(out: &Path, want: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= want {
            return lines;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "rsyslog wrote {} of {want} lines: {text}",
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn every_audit_event_reaches_rsyslog_over_tls_as_rfc5424() {
    let Some(bin) = rsyslogd() else {
        return common::skip(
            "syslog test",
            "rsyslogd with the gtls driver (apt rsyslog rsyslog-gnutls) is not installed",
        );
    };
    let pki = common::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _rsyslog = start(&bin, &pki, dir.path(), port, &out);
    let siem = sink(port, Some(&pki.ca_file));

    let pending = common::pending("prod");
    let config = common::config();
    let failed = implied(
        &Event {
            key: "login/42".into(),
            kind: "login.failed".into(),
            actor: r#"mallory"] x="y"#.into(),
            request: None,
            cluster: None,
            namespaces: vec![],
            details: json!({"method": "local", "reason": "wrong password", "source": "10.0.0.9"}),
            ..pending.event.clone()
        },
        &Context::new(&config),
    );
    assert!(siem.accepts(&pending) && siem.accepts(&failed));
    let mut other = pending.clone();
    other.event.kind = "session.opened".into();
    assert!(!siem.accepts(&other), "the event filter applies");
    for n in [&pending, &failed] {
        let d = siem.send(n, &n.idempotency_key("siem")).await.unwrap();
        assert_eq!(d.status, None);
    }
    let got = lines(&out, 2);
    let f: Vec<&str> = got[0].splitn(10, '|').collect();
    // facility 13 = "log audit", severity 6 = informational.
    assert_eq!(
        &f[..9],
        &[
            "13",
            "6",
            "1",
            "2026-12-06T10:00:00.000000Z",
            "janus-web-7d9f",
            "k8s-janus",
            "-",
            "request.created",
            r#"[janus@32473 key="0b7d-uid/request.created" id="0b7d-uid/request.created/siem" kind="request.created" actor="alice@example.com" request="alice-prod-x1" cluster="prod" namespaces="payments,billing"]"#
        ],
        "{}",
        got[0]
    );
    let msg: serde_json::Value = serde_json::from_str(f[9].trim_start()).unwrap();
    assert_eq!(msg["kind"], "request.created");
    assert_eq!(msg["details"]["ttl_seconds"], 3600);
    let f: Vec<&str> = got[1].splitn(10, '|').collect();
    // login.failed is a notice (5); the actor's quote and bracket are escaped, so the element parses.
    assert_eq!((f[0], f[1], f[7]), ("13", "5", "login.failed"), "{}", got[1]);
    assert!(f[8].contains(r#"actor="mallory\"\] x=\"y""#), "{}", got[1]);
    assert!(f[9].contains("wrong password"));
}

#[tokio::test]
async fn an_untrusted_or_missing_receiver_is_retryable() {
    let Some(bin) = rsyslogd() else {
        return common::skip(
            "syslog TLS refusal test",
            "rsyslogd with the gtls driver is not installed",
        );
    };
    let pki = common::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rsyslog = start(&bin, &pki, dir.path(), port, &out);
    let n = common::pending("prod");
    // Without the CA the receiver's certificate is not trusted: nothing is sent in clear text.
    match sink(port, None).send(&n, "k").await {
        Err(SendError::Retryable { reason, .. }) => assert!(reason.contains("TLS handshake"), "{reason}"),
        other => panic!("{other:?}"),
    }
    drop(rsyslog);
    std::thread::sleep(Duration::from_millis(300));
    assert!(std::fs::read_to_string(&out).unwrap_or_default().is_empty());
    let r = sink(port, Some(&pki.ca_file)).send(&n, "k").await;
    assert!(
        matches!(r, Err(SendError::Retryable { .. })),
        "a receiver that is down: {r:?}"
    );
}
