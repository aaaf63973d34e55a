#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Web benchmarks against kubesim (DESIGN §9): the dashboard with 10,000 requests, the terminal's added
//! keystroke round trip and output throughput (through janus vs. straight to the API server), memory per
//! open terminal session and with many sessions open.
//!
//! Run: `cargo bench -p janus-web --bench web` (needs .tools/bin/helm for the chart RBAC).
//! `BENCH_SESSIONS=1000` sets how many concurrent sessions the memory part opens (default 200);
//! `BENCH_PARTS=keystroke,output` runs only some parts (`dashboard`, `keystroke`, `output`, `sessions`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, Stack};
use futures::{SinkExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

/// Whether a part was asked for (all when `BENCH_PARTS` is unset).
fn part(name: &str) -> bool {
    std::env::var("BENCH_PARTS").map_or(true, |v| v.split(',').any(|p| p.trim() == name))
}

/// The exec a janus terminal session makes (same shell command, same buffers), straight to kubesim
/// with an admin client, so that "through janus minus straight" is what janus adds.
async fn direct_exec(stack: &Stack) -> kube::api::AttachedProcess {
    let client = stack.sim.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "team-a");
    let ap = AttachParams::interactive_tty()
        .max_stdout_buf_size(64 * 1024)
        .max_stdin_buf_size(64 * 1024);
    pods.exec("app", janus_web::terminal::session::shell_command("app"), &ap)
        .await
        .expect("direct exec")
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// CPU time this process has used (user + system), from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Waits until the process (kubesim, controller, web) has caught up with what it was given: less than
/// 5% of one core used over two seconds. Measuring while the controller still works through 10,000 new
/// requests would measure the catch-up, not the path under test.
async fn wait_quiet() {
    let start = Instant::now();
    loop {
        let c0 = cpu_time();
        tokio::time::sleep(Duration::from_secs(2)).await;
        if cpu_time() - c0 < Duration::from_millis(100) {
            println!("(quiet after {:.0?})", start.elapsed());
            return;
        }
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

async fn open(stack: &Stack, s: &common::Session, name: &str, pod: &str) -> Ws {
    let url = format!(
        "ws://{}/ws/terminal/{name}?namespace=team-a&pod={pod}&csrf={}",
        stack.host, s.csrf
    );
    let mut req = url.into_client_request().expect("req");
    req.headers_mut().insert("cookie", s.cookie.parse().unwrap());
    req.headers_mut().insert("origin", stack.url.parse().unwrap());
    // Browsers disable Nagle on WebSockets; so does this client.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
        .await
        .expect("ws");
    loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await
            && t.contains("connected")
        {
            return ws;
        }
    }
}

async fn read_until(ws: &mut Ws, want: &[u8]) {
    let mut buf: Vec<u8> = Vec::new();
    while !buf.windows(want.len()).any(|w| w == want) {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                buf.extend_from_slice(&b);
                if buf.len() > 1 << 20 {
                    buf.drain(..buf.len() - 4096);
                }
            }
            Some(Ok(_)) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let stack = Stack::start("web: {maxTerminalsPerUser: 5000, maxTerminalsPerReplica: 5000, maxOpenRequestsPerUser: 100, maxRequestsPerHour: 1000}\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;

    // Dashboard with 10,000 requests (created straight in the API server; the web cache follows).
    let n = if part("dashboard") { 10_000 } else { 0 };
    let mut seed = String::new();
    for i in 0..n {
        seed.push_str(&format!(
            "---\napiVersion: k8s-janus.opsmode.io/v1alpha1\nkind: AccessRequest\nmetadata: {{name: bench-{i:05}}}\nspec: {{requester: user{}@example.com, cluster: central, namespaces: [team-a], reason: load, ttlSeconds: 600}}\n",
            i % 97
        ));
    }
    stack.sim.load_seed(&seed).expect("seed");
    loop {
        let v = admin.json("/api/v1/requests?scope=all&limit=1").await;
        if v["total"].as_u64().unwrap_or(0) >= n as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if n > 0 {
        wait_quiet().await;
    }
    for (label, path) in [
        ("dashboard page /admin (HTML, 10,000 requests)", "/admin"),
        (
            "API page /api/v1/requests?scope=all&limit=50",
            "/api/v1/requests?scope=all&limit=50",
        ),
        (
            "API filtered by requester",
            "/api/v1/requests?scope=all&requester=user7%40&limit=50",
        ),
    ] {
        if n == 0 {
            break;
        }
        let mut t = Vec::new();
        for _ in 0..100 {
            let s = Instant::now();
            let r = admin.get(path).await;
            assert!(r.status().is_success());
            let _ = r.bytes().await.unwrap();
            t.push(s.elapsed());
        }
        println!("{label}: p50 {:?}  p99 {:?}", pct(&mut t, 0.5), pct(&mut t, 0.99));
    }

    // An active request for the terminal parts.
    let name = alice.request(&["team-a"], 3600, "bench").await;
    assert_eq!(
        admin
            .post(&format!("/api/v1/requests/{name}/approve"), json!({}))
            .await
            .status(),
        200
    );
    alice.wait_phase(&name, "Active").await;
    wait_quiet().await;

    // Keystroke round trip: the PTY echoes each character. Through janus, and straight to kubesim with
    // the same exec (what janus adds is the difference).
    if part("keystroke") {
        let mut buf = vec![0u8; 65536];
        let mut ws = open(&stack, &alice, &name, "app").await;
        ws.send(Message::Binary(b"stty -icanon; PS1=; echo ready\r".to_vec().into()))
            .await
            .unwrap();
        read_until(&mut ws, b"ready").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut p = direct_exec(&stack).await;
        let mut stdin = p.stdin().unwrap();
        let mut stdout = p.stdout().unwrap();
        stdin.write_all(b"stty -icanon; PS1=; echo ready\r").await.unwrap();
        let mut acc = Vec::new();
        while !acc.windows(5).any(|w| w == b"ready") {
            let k = stdout.read(&mut buf).await.unwrap();
            acc.extend_from_slice(&buf[..k]);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Alternating, so that whatever else the machine does weighs on both paths alike.
        let (mut via, mut direct) = (Vec::new(), Vec::new());
        for i in 0..1000 {
            let c = [b'a' + (i % 26) as u8];
            let s = Instant::now();
            ws.send(Message::Binary(c.to_vec().into())).await.unwrap();
            read_until(&mut ws, &c).await;
            via.push(s.elapsed());
            let s = Instant::now();
            stdin.write_all(&c).await.unwrap();
            loop {
                let k = stdout.read(&mut buf).await.unwrap();
                if buf[..k].contains(&c[0]) {
                    break;
                }
            }
            direct.push(s.elapsed());
        }
        let (v50, v99, d50, d99) = (
            pct(&mut via, 0.5),
            pct(&mut via, 0.99),
            pct(&mut direct, 0.5),
            pct(&mut direct, 0.99),
        );
        println!(
            "keystroke round trip through janus: p50 {v50:?} p99 {v99:?}; straight to the API server: p50 {d50:?} p99 {d99:?}"
        );
        println!(
            "added by janus: p50 {:?} p99 {:?}",
            v50.saturating_sub(d50),
            v99.saturating_sub(d99)
        );
        drop(ws);
        drop(stdin);
        drop(p);
    }

    if part("output") {
        // Output throughput: 64 MiB of output, each in a fresh shell, bounded in time.
        let mut buf = vec![0u8; 65536];
        let total: u64 = 64 * 1024 * 1024;
        let cmd = format!("stty -opost; head -c {total} /dev/zero | tr '\\0' x; echo; echo DONE-$((1+1))\r");
        let mut ws = open(&stack, &alice, &name, "app").await;
        let through = tokio::time::timeout(Duration::from_secs(120), async {
            ws.send(Message::Binary(cmd.clone().into_bytes().into())).await.unwrap();
            let s = Instant::now();
            let mut got: u64 = 0;
            let mut frames: u64 = 0;
            let mut tail: Vec<u8> = Vec::new();
            loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        got += b.len() as u64;
                        frames += 1;
                        tail.extend_from_slice(&b);
                        if tail.len() > 64 {
                            tail.drain(..tail.len() - 64);
                        }
                        if tail.windows(6).any(|w| w == b"DONE-2") {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("socket ended: {other:?}"),
                }
            }
            (got as f64 / s.elapsed().as_secs_f64() / 1e6, got / frames.max(1))
        })
        .await;
        match through {
            Ok((mbps, frame)) => println!(
                "terminal output through janus: {mbps:.1} MB/s ({total} bytes, {frame} bytes per WebSocket frame)"
            ),
            Err(_) => println!("terminal output through janus: did not finish within 120 s"),
        }
        drop(ws);
        let mut p = direct_exec(&stack).await;
        let mut stdin = p.stdin().unwrap();
        let mut stdout = p.stdout().unwrap();
        let direct = tokio::time::timeout(Duration::from_secs(120), async {
            stdin.write_all(cmd.as_bytes()).await.unwrap();
            let s = Instant::now();
            let mut tail: Vec<u8> = Vec::new();
            let mut got: u64 = 0;
            loop {
                let k = stdout.read(&mut buf).await.unwrap();
                if k == 0 {
                    break;
                }
                got += k as u64;
                tail.extend_from_slice(&buf[..k]);
                if tail.len() > 64 {
                    tail.drain(..tail.len() - 64);
                }
                if tail.windows(6).any(|w| w == b"DONE-2") {
                    break;
                }
            }
            got as f64 / s.elapsed().as_secs_f64() / 1e6
        })
        .await;
        match direct {
            Ok(mbps) => println!("terminal output straight from the API server: {mbps:.1} MB/s"),
            Err(_) => println!("terminal output straight from the API server: did not finish within 120 s"),
        }
    }

    if part("sessions") {
        // Memory: many open sessions (each with a real shell in kubesim, in this same process).
        let sessions: usize = std::env::var("BENCH_SESSIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = rss_kib();
        let mut open_ws = Vec::new();
        for i in 0..sessions {
            let mut ws = open(&stack, &alice, &name, "app").await;
            if i % 50 == 0 {
                ws.send(Message::Binary(b"echo alive\r".to_vec().into())).await.unwrap();
                read_until(&mut ws, b"alive").await;
            }
            open_ws.push(ws);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib();
        println!(
            "{sessions} open terminal sessions: RSS of this process (web + kubesim + clients) grew {} KiB, {:.1} KiB per session",
            after.saturating_sub(before),
            after.saturating_sub(before) as f64 / sessions as f64
        );
        let v: Value = admin.json("/api/v1/session").await;
        assert!(
            v["identity"].is_object(),
            "the server still answers with {sessions} sessions open"
        );
        drop(open_ws);
    }

    stack.stop().await;
}
