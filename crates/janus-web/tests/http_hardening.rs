#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The web server against slow and greedy clients and for what it exposes: the request-head deadline,
//! the idle timeout of kept-alive connections (and the long-lived streams it must spare), the
//! connection cap, `Secure` cookies and HSTS, `/metrics` only on the metrics address, and the session
//! key checked at start-up.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{ADMIN, NS, Stack};
use futures::{SinkExt as _, StreamExt as _};
use janus_web::server::{self, Options, StartError};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

/// A web process without a controller (none of these tests needs one).
struct Web {
    url: String,
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
    _sim: kubesim::RunningSim,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Web {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Options as the harness uses them; `tweak` changes them before the start.
async fn prepare(
    web_section: impl FnOnce(&str) -> String,
    tweak: impl FnOnce(&mut Options),
) -> (
    tokio::net::TcpListener,
    kubesim::RunningSim,
    tempfile::TempDir,
    janus_api::config::Config,
    kube::Client,
    Options,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let sim = common::k8s::central().await;
    let cfg = common::k8s::config(&format!("web: {{{}}}", web_section(&format!("http://{addr}"))));
    let token = common::k8s::sa_token(&sim, NS, "k8s-janus-web").await;
    let client = sim.client_for_token(&token).await.expect("web client");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = Options {
        listen: addr,
        metrics_listen: None,
        database_url: Some(format!("sqlite://{}", dir.path().join("janus.db").display())),
        database_password: None,
        session_key: Some("k".repeat(48)),
        bootstrap_admin: Some((ADMIN.0.into(), "admin@example.com".into(), ADMIN.1.into())),
        replica: "test".into(),
        central_server: sim.url(),
        central_ca_pem: sim.ca_pem().to_string(),
        oidc_client_secret: None,
    };
    tweak(&mut opts);
    (listener, sim, dir, cfg, client, opts)
}

/// Starts the web process with `web:` settings made from its URL.
async fn start(web_section: impl FnOnce(&str) -> String, tweak: impl FnOnce(&mut Options)) -> Web {
    let (listener, sim, dir, cfg, client, opts) = prepare(web_section, tweak).await;
    let addr = listener.local_addr().expect("addr");
    let metrics = opts.metrics_listen;
    let (state, watch) = server::build_state(cfg, client.clone(), &opts).await.expect("state");
    let task = tokio::spawn(async move {
        if let Err(e) = server::serve(state, client, opts, listener, std::future::pending(), watch).await {
            panic!("web failed: {e}");
        }
    });
    let url = format!("http://{addr}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await
            && r.status().is_success()
        {
            return Web {
                url,
                addr,
                metrics,
                _sim: sim,
                _dir: dir,
                task,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("web never became ready");
}

/// Reads until the server closes the connection; how long that took, or `None` if it stayed open.
async fn closed_within(tcp: &mut (impl tokio::io::AsyncRead + Unpin), limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), tcp.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends one keep-alive request on a raw connection and reads its complete response.
async fn exchange(tcp: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // /healthz answers `ok` with a content-length: the response is complete when the body is there.
    while !got.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_head_is_cut_at_the_header_deadline() {
    let web = start(
        |url| format!("baseUrl: \"{url}\", headerReadTimeoutSeconds: 1, idleConnectionTimeoutSeconds: 30"),
        |_| {},
    )
    .await;
    // Half a request line; nothing at all; half of the HTTP/2 preface (hyper's protocol sniffing).
    for partial in [&b"GET /heal"[..], b"", b"PRI * HT"] {
        let mut slow = TcpStream::connect(web.addr).await.expect("connect");
        slow.write_all(partial).await.expect("write");
        let took = closed_within(&mut slow, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{partial:?}: connection still open after 10 s"));
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(5),
            "{partial:?}: closed after {took:?}, the deadline is 1 s"
        );
    }
    // A request body that stops arriving is cut at the same deadline (counted from its last byte).
    let mut slow = TcpStream::connect(web.addr).await.expect("connect");
    slow.write_all(
        b"POST /api/v1/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
    )
    .await
    .expect("write");
    let took = closed_within(&mut slow, Duration::from_secs(10))
        .await
        .expect("a stalled request body: connection still open after 10 s");
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "stalled body: closed after {took:?}, the deadline is 1 s"
    );
    // A request trickled in within the deadline is served.
    let mut ok = TcpStream::connect(web.addr).await.expect("connect");
    ok.write_all(b"GET /hea").await.expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    ok.write_all(b"lthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let n = ok.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

/// A client that sends `GET /healthz` while every connection slot is taken: how long until it is served.
async fn served_after(web: &Web, limit: Duration) -> Duration {
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("http://{}/healthz", web.addr))
        .timeout(limit)
        .send()
        .await
        .expect("another client is served once the stalled one is cut");
    assert_eq!(r.status(), 200);
    started.elapsed()
}

/// Settings where one stalled client holds the only connection slot, and nothing but the write-stall
/// deadline (2 s) can free it soon.
fn one_slot(url: &str) -> String {
    format!(
        "baseUrl: \"{url}\", maxConnections: 1, headerReadTimeoutSeconds: 20, idleConnectionTimeoutSeconds: 60, \
         writeStallTimeoutSeconds: 2, requestBodyTimeoutSeconds: 60"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_cut_at_the_write_stall_deadline() {
    let web = start(one_slot, |_| {}).await;
    // Let the readiness probe's connection close first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A tiny receive window, and large assets asked for (pipelined) but never read: more than the
    // socket buffers hold, so the server's writes are refused from then on.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut hog = socket.connect(web.addr).await.expect("connect");
    let asked = 40;
    hog.write_all(
        "GET /assets/vendor/xterm.js HTTP/1.1\r\nHost: test\r\n\r\n"
            .repeat(asked)
            .as_bytes(),
    )
    .await
    .expect("write");
    let took = served_after(&web, Duration::from_secs(15)).await;
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "the slot was freed after {took:?}; the write-stall deadline is 2 s"
    );
    // The stalled client finds its connection ended: what was sent, then the end.
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), hog.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("the stalled connection is still open"),
        }
    }
    assert!(got < asked * 289_000, "all {asked} responses were sent ({got} bytes)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_with_a_shut_window_is_cut_at_the_write_stall_deadline() {
    let web = start(one_slot, |_| {}).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut h2 = TcpStream::connect(web.addr).await.expect("connect");
    // Prior knowledge: the preface, SETTINGS_INITIAL_WINDOW_SIZE = 0, and `GET /login` on stream 1.
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0x4, 0, 0, 0, 0]);
    // HPACK: :method GET, :scheme http, :path /login and :authority test (literals, not indexed).
    let mut block = vec![0x82, 0x86, 0x04, 6];
    block.extend_from_slice(b"/login");
    block.extend_from_slice(&[0x01, 4]);
    block.extend_from_slice(b"test");
    let len = u8::try_from(block.len()).expect("short");
    // HEADERS, END_STREAM | END_HEADERS, stream 1.
    out.extend_from_slice(&[0, 0, len, 0x1, 0x5, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    h2.write_all(&out).await.expect("write");
    // The response's head goes out, its body waits for a window that never opens.
    let took = closed_within(&mut h2, Duration::from_secs(15))
        .await
        .expect("an HTTP/2 connection with a shut window is still open after 15 s");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "closed after {took:?}; the write-stall deadline is 2 s"
    );
    let took = served_after(&web, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_dribbled_in_is_cut_at_the_body_deadline() {
    let web = start(
        |url| {
            format!(
                "baseUrl: \"{url}\", headerReadTimeoutSeconds: 2, idleConnectionTimeoutSeconds: 30, \
                 requestBodyTimeoutSeconds: 4"
            )
        },
        |_| {},
    )
    .await;
    let tcp = TcpStream::connect(web.addr).await.expect("connect");
    let (mut rd, mut wr) = tcp.into_split();
    wr.write_all(
        b"POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 100\r\n\r\n",
    )
    .await
    .expect("write");
    // One byte per second: within the 2 s between bytes, never complete.
    let dribble = tokio::spawn(async move {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if wr.write_all(b"a").await.is_err() {
                break;
            }
        }
    });
    let took = closed_within(&mut rd, Duration::from_secs(12))
        .await
        .expect("a body dribbled one byte a second is still being received after 12 s");
    dribble.abort();
    assert!(
        took >= Duration::from_millis(3500) && took < Duration::from_secs(7),
        "closed after {took:?}; the body deadline is 4 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_idle_until_the_idle_timeout_only() {
    let web = start(
        |url| format!("baseUrl: \"{url}\", headerReadTimeoutSeconds: 1, idleConnectionTimeoutSeconds: 3"),
        |_| {},
    )
    .await;
    let mut tcp = TcpStream::connect(web.addr).await.expect("connect");
    assert!(exchange(&mut tcp, "/healthz").await.starts_with("HTTP/1.1 200"));
    // Waiting longer than the header deadline between requests is keep-alive, not a slow head: a
    // proxy reusing its upstream connection must not find it closed.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(exchange(&mut tcp, "/healthz").await.starts_with("HTTP/1.1 200"));
    let took = closed_within(&mut tcp, Duration::from_secs(10))
        .await
        .expect("an idle connection is closed");
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(6),
        "idle connection closed after {took:?}, the timeout is 3 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_and_are_served_when_one_closes() {
    let web = start(
        |url| format!("baseUrl: \"{url}\", maxConnections: 2, headerReadTimeoutSeconds: 60"),
        |_| {},
    )
    .await;
    // Let the readiness probe's connection close first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut kept = TcpStream::connect(web.addr).await.expect("connect");
    assert!(exchange(&mut kept, "/healthz").await.starts_with("HTTP/1.1 200"));
    let hog = TcpStream::connect(web.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .get(format!("http://{}/healthz", web.addr))
            .timeout(Duration::from_secs(20))
            .send()
            .await?;
        Ok::<_, reqwest::Error>((r.status(), r.text().await?))
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!waiting.is_finished(), "a third connection was served past a cap of 2");
    // Connections already open go on being served at the cap.
    assert!(exchange(&mut kept, "/healthz").await.starts_with("HTTP/1.1 200"));
    drop(hog);
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once a connection closed")
        .expect("task")
        .expect("response");
    assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
    assert!(exchange(&mut kept, "/healthz").await.starts_with("HTTP/1.1 200"));
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn read_until(ws: &mut Ws, want: &str) {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen.contains(want) {
        assert!(Instant::now() < deadline, "never saw {want:?}; saw {seen:?}");
        match tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(_))) => {}
            other => panic!("socket ended while waiting for {want:?}: {other:?}; saw {seen:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminals_and_event_streams_outlive_the_idle_timeout() {
    // Also the request timeout: the terminal WebSocket and the event stream are routed outside it.
    let stack = Stack::start_with(
        |url| {
            format!(
                "web: {{baseUrl: \"{url}\", idleConnectionTimeoutSeconds: 1, headerReadTimeoutSeconds: 1, \
                 writeStallTimeoutSeconds: 1, requestBodyTimeoutSeconds: 1, requestTimeoutSeconds: 2}}"
            )
        },
        None,
    )
    .await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let name = alice.request(&["team-a"], 600, "idle test").await;
    let r = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
    assert_eq!(r.status(), 200);
    alice.wait_phase(&name, "Active").await;

    // A server-sent event stream is a request in progress: quiet, but not idle.
    let mut events = alice.get("/api/v1/events").await.bytes_stream();

    let url = format!(
        "ws://{}/ws/terminal/{name}?namespace=team-a&pod=app&cols=80&rows=24&csrf={}",
        stack.host, alice.csrf
    );
    let mut req = url.into_client_request().expect("request");
    req.headers_mut().insert("cookie", alice.cookie.parse().unwrap());
    req.headers_mut().insert("origin", stack.url.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("websocket");
    ws.send(Message::Binary(b"echo first-$((6*7))\n".to_vec().into()))
        .await
        .expect("send");
    read_until(&mut ws, "first-42").await;

    // Three idle (and write-stall, and body) timeouts without a byte either way, and longer than the
    // request timeout (2 s), which binds ordinary routes only.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ws.send(Message::Binary(b"echo still-$((6*7))\n".to_vec().into()))
        .await
        .expect("the terminal survived the HTTP idle timeout");
    read_until(&mut ws, "still-42").await;

    // The event stream is still open: the revocation's phase change arrives on it.
    let r = admin
        .post(
            &format!("/api/v1/requests/{name}/revoke"),
            json!({"reason": "idle test done"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("Revoked") {
        assert!(
            Instant::now() < deadline,
            "no event after the idle timeout; saw {seen:?}"
        );
        match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
            Ok(Some(Ok(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
            other => panic!("the event stream ended: {other:?}; saw {seen:?}"),
        }
    }
    stack.stop().await;
}

/// `Set-Cookie` of a login through the API, and the response's HSTS header.
async fn login_cookie(web: &Web) -> (String, Option<String>, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/login", web.url))
        .json(&json!({"username": ADMIN.0, "password": ADMIN.1}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let hsts = r
        .headers()
        .get("strict-transport-security")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = r.json().await.expect("json");
    (cookie, hsts, body["csrfToken"].as_str().unwrap().to_string())
}

fn attrs(set_cookie: &str) -> Vec<String> {
    set_cookie.split(';').map(|a| a.trim().to_ascii_lowercase()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_unless_plain_http_on_loopback() {
    // (web.baseUrl, listen address the process was given, Secure expected, HSTS expected)
    let cases: [(&str, Option<&str>, bool, bool); 5] = [
        ("LOCAL", None, false, false),
        ("https://janus.example.com", None, true, true),
        ("http://janus.example.com", None, true, false),
        ("", None, false, false),
        ("", Some("0.0.0.0"), true, false),
    ];
    for (base, listen, secure, hsts) in cases {
        let web = start(
            |url| format!("baseUrl: \"{}\"", if base == "LOCAL" { url } else { base }),
            |o| {
                if let Some(ip) = listen {
                    o.listen = SocketAddr::new(ip.parse().unwrap(), o.listen.port());
                }
            },
        )
        .await;
        let case = format!("baseUrl {base}, listen {listen:?}");
        let (cookie, got_hsts, csrf) = login_cookie(&web).await;
        let a = attrs(&cookie);
        assert!(cookie.starts_with("janus_session="), "{case}: {cookie}");
        assert!(
            a.contains(&"httponly".into()) && a.contains(&"samesite=lax".into()),
            "{case}: {cookie}"
        );
        assert_eq!(a.contains(&"secure".into()), secure, "{case}: {cookie}");
        assert_eq!(got_hsts.as_deref(), hsts.then_some("max-age=31536000"), "{case}");
        let page = reqwest::get(format!("{}/login", web.url)).await.expect("GET");
        assert_eq!(
            page.headers().contains_key("strict-transport-security"),
            hsts,
            "{case}: pages too"
        );

        // Logging out clears the cookie with the same attributes.
        let session = cookie.split(';').next().unwrap().to_string();
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/logout", web.url))
            .header("cookie", session)
            .header("x-csrf-token", csrf)
            .send()
            .await
            .expect("logout");
        assert_eq!(r.status(), 200, "{case}");
        let cleared = r.headers()["set-cookie"].to_str().unwrap().to_string();
        let a = attrs(&cleared);
        assert!(cleared.starts_with("janus_session=;"), "{case}: {cleared}");
        assert!(a.contains(&"max-age=0".into()), "{case}: {cleared}");
        assert_eq!(a.contains(&"secure".into()), secure, "{case}: {cleared}");
    }
}

/// A stand-in OpenID provider that only answers discovery (enough to start an OIDC login).
async fn discovery_only_provider() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let meta = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
    });
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || {
                let meta = meta.clone();
                async move { axum::Json(meta) }
            }),
        )
        .route(
            "/jwks",
            axum::routing::get(|| async { axum::Json(json!({"keys": []})) }),
        );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (issuer, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oidc_state_cookie_follows_the_same_rule() {
    let (issuer, _provider) = discovery_only_provider().await;
    for (base, secure) in [
        ("LOCAL", false),
        ("https://janus.example.com", true),
        ("http://janus.example.com", true),
    ] {
        let issuer = issuer.clone();
        let web = start(
            move |url| {
                format!(
                    "baseUrl: \"{}\", authMode: oidc, oidc: {{issuerUrl: \"{issuer}\", clientId: janus-web}}",
                    if base == "LOCAL" { url } else { base }
                )
            },
            |_| {},
        )
        .await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = http.get(format!("{}/oidc/login", web.url)).send().await.expect("GET");
        assert_eq!(r.status(), 303, "{base}");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        let a = attrs(&cookie);
        assert!(
            a.contains(&"path=/oidc".into()) && a.contains(&"httponly".into()),
            "{cookie}"
        );
        assert_eq!(a.contains(&"secure".into()), secure, "{base}: {cookie}");
        // The callback clears it, with the same attributes.
        let r = http
            .get(format!("{}/oidc/callback?code=x&state=y", web.url))
            .send()
            .await
            .expect("GET");
        let cleared: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        let clear = cleared
            .iter()
            .find(|c| c.contains("Max-Age=0"))
            .unwrap_or_else(|| panic!("{base}: no clearing cookie in {cleared:?}"));
        assert_eq!(attrs(clear).contains(&"secure".into()), secure, "{base}: {clear}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_only_on_the_metrics_address() {
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let web = start(
        |url| format!("baseUrl: \"{url}\""),
        |o| o.metrics_listen = Some(metrics),
    )
    .await;
    assert_eq!(web.metrics, Some(metrics));
    let get = |url: String| async move {
        let r = reqwest::get(url).await.expect("GET");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    };
    let (ui, _) = get(format!("{}/metrics", web.url)).await;
    assert_eq!(ui, 404, "/metrics on the UI address");
    let (code, body) = get(format!("http://{metrics}/metrics")).await;
    assert_eq!(code, 200);
    assert!(body.contains("janus_web_"), "{body}");
    for addr in [web.url.clone(), format!("http://{metrics}")] {
        assert_eq!(get(format!("{addr}/healthz")).await.0, 200, "{addr}");
        assert_eq!(get(format!("{addr}/readyz")).await.0, 200, "{addr}");
    }
    // The metrics address serves nothing of the UI.
    assert_eq!(get(format!("http://{metrics}/login")).await.0, 404);
}

async fn start_error(tweak: impl FnOnce(&mut Options)) -> Result<(), StartError> {
    let (_listener, _sim, _dir, cfg, client, opts) = prepare(|url| format!("baseUrl: \"{url}\""), tweak).await;
    server::build_state(cfg, client, &opts).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_or_missing_shared_session_key_refuses_to_start() {
    let short = "tooshort-0123456789abcdef012345"; // 31 bytes
    match start_error(|o| o.session_key = Some(short.into())).await {
        Err(StartError::Config(m)) => {
            assert!(
                m.contains("JANUS_SESSION_KEY") && m.contains("31 bytes") && m.contains("32"),
                "{m}"
            );
            assert!(!m.contains(short), "the key itself is never shown: {m}");
        }
        other => panic!("a 31-byte key was accepted: {other:?}"),
    }
    // PostgreSQL means replicas that must share the key: refused before connecting anywhere.
    match start_error(|o| {
        o.session_key = None;
        o.database_url = Some("postgres://janus@127.0.0.1:1/janus".into());
    })
    .await
    {
        Err(StartError::Config(m)) => assert!(m.contains("JANUS_SESSION_KEY is not set"), "{m}"),
        other => panic!("no key with PostgreSQL was accepted: {other:?}"),
    }
    // Exactly 32 bytes is enough; no key on SQLite (one replica, e.g. the demo) gets a random one.
    start_error(|o| o.session_key = Some("k".repeat(32)))
        .await
        .expect("a 32-byte key");
    start_error(|o| o.session_key = None).await.expect("no key on SQLite");
}

/// Every malformed query, path or body under `/api/v1` answers the project's JSON error
/// (`{"error","code","field"}`, 422), not axum's plain-text rejection; "admins only" is still checked
/// before the input is looked at, so a non-admin learns nothing from the input's validity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_api_input_gets_the_json_error() {
    let web = start(|url| format!("baseUrl: \"{url}\""), |_| {}).await;
    let (cookie, _, csrf) = login_cookie(&web).await;
    let session = cookie.split(';').next().unwrap().to_string();
    let http = reqwest::Client::new();
    let json_error = |what: &'static str, field: &'static str| {
        move |status: u16, ctype: String, body: String| {
            assert_eq!(status, 422, "{what}: {body}");
            assert!(ctype.starts_with("application/json"), "{what}: {ctype} {body}");
            let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
            assert_eq!(
                (v["code"].as_str(), v["field"].as_str()),
                (Some("invalid"), Some(field)),
                "{what}: {v}"
            );
        }
    };
    let send = |rb: reqwest::RequestBuilder| async move {
        let r = rb.send().await.expect("send");
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        (status, ctype, r.text().await.unwrap_or_default())
    };
    // A repeated field is a query that does not deserialize.
    let (s, c, b) = send(
        http.get(format!("{}/api/v1/audit/export?format=csv&format=jsonl", web.url))
            .header("cookie", &session),
    )
    .await;
    json_error("audit export query", "query")(s, c, b);
    // A path segment that is not UTF-8 once decoded.
    let (s, c, b) = send(
        http.get(format!("{}/api/v1/clusters/%FF/namespaces", web.url))
            .header("cookie", &session),
    )
    .await;
    json_error("cluster path", "path")(s, c, b);
    let (s, c, b) = send(
        http.patch(format!("{}/api/v1/users/%FF", web.url))
            .header("cookie", &session)
            .header("x-csrf-token", &csrf)
            .json(&json!({"admin": true})),
    )
    .await;
    json_error("user path", "path")(s, c, b);
    let (s, c, b) = send(
        http.delete(format!("{}/api/v1/users/%FF", web.url))
            .header("cookie", &session)
            .header("x-csrf-token", &csrf),
    )
    .await;
    json_error("user path (delete)", "path")(s, c, b);
    // A non-admin gets 403 on the same paths, not the 422 that would tell it the path was the problem.
    let r = http
        .post(format!("{}/api/v1/users", web.url))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .json(&json!({"username": "eng", "email": "eng@example.com", "password": common::PASSWORD}))
        .send()
        .await
        .expect("create user");
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{}/api/v1/login", web.url))
        .json(&json!({"username": "eng", "password": common::PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    let eng_session = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let eng_csrf = r.json::<Value>().await.expect("json")["csrfToken"]
        .as_str()
        .unwrap()
        .to_string();
    for req in [
        http.patch(format!("{}/api/v1/users/%FF", web.url))
            .json(&json!({"isAdmin": true})),
        http.patch(format!("{}/api/v1/users/%FF", web.url)).body("{not json"),
        http.delete(format!("{}/api/v1/users/%FF", web.url)),
    ] {
        let (s, c, b) = send(req.header("cookie", &eng_session).header("x-csrf-token", &eng_csrf)).await;
        assert_eq!(s, 403, "non-admin: {b}");
        assert!(c.starts_with("application/json"), "{c} {b}");
        assert_eq!(serde_json::from_str::<Value>(&b).unwrap()["code"], "forbidden", "{b}");
    }
    // A body that is not the input's JSON.
    let (s, c, b) = send(
        http.post(format!("{}/api/v1/users", web.url))
            .header("cookie", &session)
            .header("x-csrf-token", &csrf)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    json_error("user body", "body")(s, c, b);
    let (s, c, b) = send(
        http.post(format!("{}/api/v1/login", web.url))
            .header("content-type", "application/json")
            .body("[1]"),
    )
    .await;
    json_error("login body", "body")(s, c, b);
    // The terminal side's API uses the same extractors: a missing query field, a non-JSON body.
    let (s, c, b) = send(
        http.get(format!("{}/api/v1/quick-commands", web.url))
            .header("cookie", &session),
    )
    .await;
    json_error("quick-commands query", "query")(s, c, b);
    let (s, c, b) = send(
        http.get(format!("{}/api/v1/requests/some-request/pods", web.url))
            .header("cookie", &session),
    )
    .await;
    json_error("terminal pods query", "query")(s, c, b);
    let (s, c, b) = send(
        http.post(format!("{}/api/v1/quick-commands", web.url))
            .header("cookie", &session)
            .header("x-csrf-token", &csrf)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    json_error("quick-commands body", "body")(s, c, b);
}

/// The signed OIDC login-state cookie (the `cookie` crate's signed jar, keyed from the session key): a
/// missing, tampered or foreign-key cookie is a clear 403 login page, never a 500 nor a session; a
/// genuine one passes the signature and reaches the next check (the `state` comparison). Expiry is in
/// `auth::oidc`'s unit test; the full provider round trip in tests/oidc.rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_oidc_state_cookie_is_a_clear_login_error() {
    let (issuer, _provider) = discovery_only_provider().await;
    let section = |issuer: String| {
        move |url: &str| {
            format!("baseUrl: \"{url}\", authMode: oidc, oidc: {{issuerUrl: \"{issuer}\", clientId: janus-web}}")
        }
    };
    let web = start(section(issuer.clone()), |_| {}).await;
    let other = start(section(issuer.clone()), |o| o.session_key = Some("j".repeat(48))).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let state_cookie = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(format!("{url}/oidc/login")).send().await.expect("GET");
            assert_eq!(r.status(), 303);
            let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
            let pair = set.split(';').next().unwrap().to_string();
            pair.strip_prefix("janus_oidc=").expect("the state cookie").to_string()
        }
    };
    let mine = state_cookie(web.url.clone()).await;
    let foreign = state_cookie(other.url.clone()).await;
    let mut tampered = mine.clone().into_bytes();
    let i = tampered.len() - 3;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (what, cookie, says) in [
        ("missing", None, "took too long or started in another browser"),
        ("tampered", Some(tampered), "invalid or expired"),
        ("signed with another key", Some(foreign), "invalid or expired"),
        ("garbage", Some("%zz==\"x\"".to_string()), "invalid or expired"),
        ("genuine, wrong state", Some(mine), "state mismatch"),
    ] {
        let mut req = http.get(format!("{}/oidc/callback?code=c&state=s", web.url));
        if let Some(c) = &cookie {
            req = req.header("cookie", format!("janus_oidc={c}"));
        }
        let r = req.send().await.expect("callback");
        assert_eq!(r.status(), 403, "{what}");
        assert!(
            !r.headers()
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap_or("").starts_with("janus_session=")),
            "{what}: no session"
        );
        let body = r.text().await.unwrap_or_default();
        assert!(body.contains("Login refused") && body.contains(says), "{what}: {body}");
    }
}

/// Request ids (tower-http `SetRequestIdLayer`/`PropagateRequestIdLayer` behind a screen): every
/// response carries `x-request-id`. An incoming one is kept and echoed only when the peer is a trusted
/// proxy (`web.trustedProxies`, the rule of the client address) and it is plausible; from any other
/// peer even a plausible id is replaced by a fresh UUID (a client must not choose the id its requests
/// are logged under). One that is too long, repeated or carries characters that could break a log line
/// or a page is replaced even from a trusted proxy, never echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id() {
    let untrusted = start(|url| format!("baseUrl: \"{url}\", trustedProxies: []"), |_| {}).await;
    let trusted = start(
        |url| format!("baseUrl: \"{url}\", trustedProxies: [\"127.0.0.0/8\"]"),
        |_| {},
    )
    .await;
    let http = reqwest::Client::new();
    let id_of = |r: &reqwest::Response| {
        let all: Vec<String> = r
            .headers()
            .get_all("x-request-id")
            .iter()
            .map(|v| v.to_str().expect("printable id").to_string())
            .collect();
        assert_eq!(all.len(), 1, "exactly one id: {all:?}");
        all.into_iter().next().unwrap()
    };
    let is_uuid = |s: &str| s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    let mut seen = Vec::new();
    for web in [&untrusted, &trusted] {
        for path in ["/healthz", "/login", "/api/v1/session", "/assets/nope", "/nope"] {
            let r = http.get(format!("{}{path}", web.url)).send().await.expect("GET");
            let id = id_of(&r);
            assert!(is_uuid(&id), "{path}: {id}");
            assert!(!seen.contains(&id), "{path}: a fresh id per request");
            seen.push(id);
        }
    }
    for good in [
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "req-42",
        "Root=1-5759e988-bd862e3fe1be46a994272793",
    ] {
        let send = |web: &Web| {
            http.get(format!("{}/api/v1/session", web.url))
                .header("x-request-id", good)
                .send()
        };
        let r = send(&trusted).await.expect("GET");
        assert_eq!(id_of(&r), good, "a trusted proxy's id is echoed");
        let r = send(&untrusted).await.expect("GET");
        assert_eq!(r.status(), 401, "{good}: answered as usual");
        let id = id_of(&r);
        assert!(
            is_uuid(&id) && id != good,
            "an untrusted peer's {good:?} is replaced, got {id}"
        );
    }
    let long = "a".repeat(65);
    for web in [&untrusted, &trusted] {
        for bad in [
            long.as_bytes(),
            b"<script>alert(1)</script>".as_slice(),
            b"two words",
            b"line\tbreak",
            b"\xff\xfe",
            b"",
        ] {
            let r = http
                .get(format!("{}/api/v1/session", web.url))
                .header("x-request-id", reqwest::header::HeaderValue::from_bytes(bad).unwrap())
                .send()
                .await
                .expect("GET");
            assert_eq!(r.status(), 401, "{bad:?}: answered as usual");
            let id = id_of(&r);
            assert!(is_uuid(&id), "{bad:?} replaced, got {id}");
        }
        let r = http
            .get(format!("{}/healthz", web.url))
            .header("x-request-id", "first")
            .header("x-request-id", "second")
            .send()
            .await
            .expect("GET");
        assert!(is_uuid(&id_of(&r)), "two ids: replaced");
    }
}

/// `web.requestTimeoutSeconds`: an ordinary read
/// that hangs on a slow Kubernetes API (kubesim's injected latency on the namespace list, below the
/// handler's own 10 s bound) is answered 503 with the JSON error at the deadline, not when the API
/// finally answers; the same route answers normally once the API is fast again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_is_answered_at_the_request_timeout() {
    let web = start(
        |url| format!("baseUrl: \"{url}\", requestTimeoutSeconds: 1, requestBodyTimeoutSeconds: 1"),
        |_| {},
    )
    .await;
    let (cookie, _, _) = login_cookie(&web).await;
    let session = cookie.split(';').next().unwrap().to_string();
    let http = reqwest::Client::new();
    let clusters: Value = http
        .get(format!("{}/api/v1/clusters", web.url))
        .header("cookie", &session)
        .send()
        .await
        .expect("clusters")
        .json()
        .await
        .expect("json");
    let cluster = clusters["clusters"][0]["name"].as_str().expect("a cluster").to_string();
    let url = format!("{}/api/v1/clusters/{cluster}/namespaces", web.url);
    let r = http.get(&url).header("cookie", &session).send().await.expect("GET");
    assert_eq!(r.status(), 200, "fast: answered");

    web._sim.cluster.faults.set(kubesim::faults::FaultConfig {
        latency_ms: 6000,
        path_contains: "/api/v1/namespaces".into(),
        ..Default::default()
    });
    let started = Instant::now();
    let r = http.get(&url).header("cookie", &session).send().await.expect("GET");
    let took = started.elapsed();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("x-request-id"));
    let v: Value = r.json().await.expect("the JSON error");
    assert_eq!(v["code"], "unavailable", "{v}");
    assert!(v["error"].as_str().unwrap_or_default().contains("took too long"), "{v}");
    // At the deadline (1 s), well before the API's 6 s; generous for a loaded machine.
    assert!(took < Duration::from_secs(4), "answered after {took:?}");

    web._sim.cluster.faults.set(Default::default());
    let r = http.get(&url).header("cookie", &session).send().await.expect("GET");
    assert_eq!(r.status(), 200, "fast again: answered");
}

/// Writes are not cut at `web.requestTimeoutSeconds`: a handler dropped at an await may already have
/// written (here the AccessRequest; elsewhere a user or a session) while what follows it (the answer,
/// the audit event) never happens. A `POST /api/v1/requests` whose AccessRequest list and create each
/// hang 1.5 s on kubesim's injected latency — 3 s against a 1 s request timeout — gets its 201 with
/// the request, which is then in the API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_write_is_not_cut_at_the_request_timeout() {
    let web = start(
        |url| format!("baseUrl: \"{url}\", requestTimeoutSeconds: 1, requestBodyTimeoutSeconds: 1"),
        |_| {},
    )
    .await;
    let (cookie, _, csrf) = login_cookie(&web).await;
    let session = cookie.split(';').next().unwrap().to_string();
    let http = reqwest::Client::new();
    web._sim.cluster.faults.set(kubesim::faults::FaultConfig {
        latency_ms: 1500,
        path_contains: "accessrequests".into(),
        ..Default::default()
    });
    let started = Instant::now();
    let r = http
        .post(format!("{}/api/v1/requests", web.url))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .json(&json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 600, "reason": "slow API"}))
        .send()
        .await
        .expect("POST");
    let took = started.elapsed();
    let status = r.status();
    let body: Value = r.json().await.expect("json");
    assert_eq!(status, 201, "{body}");
    // It did outlive the request timeout: the test exercised what it claims.
    assert!(took > Duration::from_secs(2), "answered after {took:?}");
    web._sim.cluster.faults.set(Default::default());
    let name = body["name"].as_str().expect("name").to_string();
    let central = web._sim.client().await.expect("admin client");
    let api: kube::Api<janus_api::AccessRequest> = kube::Api::all(central);
    let ar = api.get(&name).await.expect("the AccessRequest exists");
    assert_eq!(ar.spec.reason, "slow API");
}

/// Runs `sql` in its own `psql` session against `url` in the background (holding a table lock).
fn psql_background(url: &str, sql: &str) -> std::process::Child {
    std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql")
}

/// Waits until another session holds a lock on `table` (so the request sent next really waits).
async fn wait_locked(url: &str, table: &str) {
    let q = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = '{table}' AND l.mode = 'AccessExclusiveLock' AND l.granted"
    );
    for _ in 0..100 {
        let out = std::process::Command::new("psql")
            .args([url, "-At", "-c", &q])
            .output()
            .expect("psql");
        if String::from_utf8_lossy(&out.stdout).trim() == "1" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{table} was never locked");
}

/// A slow PostgreSQL (a table held under an exclusive lock for 3 s by another session, against a 1 s
/// request timeout): creating a user waits for it and answers 201, and its `user.created` audit event
/// is recorded (cut at the timeout, the user could be created with no event); the audit export, built
/// whole from the database, waits for it too and is complete instead of a 503.
///
/// Runs where scripts/test.sh configured a PostgreSQL (JANUS_TEST_POSTGRES_URL); it starts a cluster of
/// its own with scripts/pg-throwaway.sh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_the_audit_export_wait_for_a_slow_database() {
    if std::env::var("JANUS_TEST_POSTGRES_URL").is_err() {
        return;
    }
    let pg = common::Pg::start();
    let url = pg.url.clone();
    let web = start(
        |url| format!("baseUrl: \"{url}\", requestTimeoutSeconds: 1, requestBodyTimeoutSeconds: 1"),
        |o| o.database_url = Some(url),
    )
    .await;
    let (cookie, _, csrf) = login_cookie(&web).await;
    let session = cookie.split(';').next().unwrap().to_string();
    let http = reqwest::Client::new();

    let mut lock = psql_background(
        &pg.url,
        "BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;",
    );
    wait_locked(&pg.url, "users").await;
    let started = Instant::now();
    let r = http
        .post(format!("{}/api/v1/users", web.url))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .json(&json!({"username": "slowpoke", "email": "slowpoke@example.com", "password": common::PASSWORD}))
        .send()
        .await
        .expect("POST");
    let took = started.elapsed();
    let status = r.status();
    assert_eq!(status, 201, "{}", r.text().await.unwrap_or_default());
    assert!(
        took > Duration::from_secs(1),
        "answered after {took:?}: the lock was not in the way"
    );
    assert!(lock.wait().expect("psql").success());
    let events: Value = http
        .get(format!("{}/api/v1/audit?limit=100", web.url))
        .header("cookie", &session)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("json");
    let created: Vec<&Value> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "user.created" && e["details"]["username"] == "slowpoke")
        .collect();
    assert_eq!(created.len(), 1, "{events}");

    let mut lock = psql_background(
        &pg.url,
        "BEGIN; LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;",
    );
    wait_locked(&pg.url, "audit_events").await;
    let started = Instant::now();
    let r = http
        .get(format!("{}/api/v1/audit/export?format=jsonl", web.url))
        .header("cookie", &session)
        .send()
        .await
        .expect("export");
    let took = started.elapsed();
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{text}");
    assert!(
        took > Duration::from_secs(1),
        "answered after {took:?}: the lock was not in the way"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("user.created") && l.contains("slowpoke")),
        "{text}"
    );
    assert!(lock.wait().expect("psql").success());
}

/// The security headers (tower-http `SetResponseHeaderLayer`) are those of the hand-written middleware
/// they replaced, on pages, the API, errors, health and the metrics address: the CSP, nosniff, DENY,
/// same-origin, and `Cache-Control: no-store` unless the handler set its own (static assets); no HSTS
/// on plain http (HSTS on https is in `cookies_are_secure_unless_plain_http_on_loopback`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_are_set_everywhere() {
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let web = start(
        |url| format!("baseUrl: \"{url}\""),
        |o| o.metrics_listen = Some(metrics),
    )
    .await;
    let csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
               font-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
    for (url, cache) in [
        (format!("{}/login", web.url), "no-store"),
        (format!("{}/api/v1/session", web.url), "no-store"),
        (format!("{}/api/v1/clusters/%FF/namespaces", web.url), "no-store"),
        (format!("{}/nope", web.url), "no-store"),
        (format!("{}/healthz", web.url), "no-store"),
        (format!("{}/assets/app.css", web.url), "public, max-age=300"),
        (format!("http://{metrics}/metrics"), "no-store"),
    ] {
        let r = reqwest::get(&url).await.expect("GET");
        let h = r.headers();
        let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert_eq!(get("content-security-policy"), csp, "{url}");
        assert_eq!(get("x-content-type-options"), "nosniff", "{url}");
        assert_eq!(get("x-frame-options"), "DENY", "{url}");
        assert_eq!(get("referrer-policy"), "same-origin", "{url}");
        assert_eq!(get("cache-control"), cache, "{url}");
        assert!(h.get("strict-transport-security").is_none(), "{url}");
    }
}
