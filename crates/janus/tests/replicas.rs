#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Two web replicas on one PostgreSQL end to end: two `janus web` processes with the chart's
//! configuration, one `janus controller`, kubesim. A session cookie from one replica works on the
//! other; a revoke closes the terminals on both; a replica SIGKILLed while decisions are being made
//! loses no decision and no audit event, and its users go on with their session on the other.
//!
//! Correctness only: the times are the benchmark's (`scripts/bench.sh web-replicas`, which shares
//! crates/janus-bench/src/replicas/farm.rs). The only time bounds are generous deadlines on promises.
//!
//! Needs PostgreSQL (the chart refuses more than one web replica on SQLite): runs on a database of its
//! own on the server of `JANUS_TEST_POSTGRES_URL` (scripts/test.sh starts one); skipped outside CI
//! when that is not set.

#[path = "../../janus-bench/src/replicas/farm.rs"]
#[allow(dead_code)]
mod farm;

use std::time::{Duration, Instant};

use farm::{Pair, Session, Terminal, Web, WebSpec};
use serde_json::json;
use sqlx::Connection as _;

/// A database of this test's own on the server of `JANUS_TEST_POSTGRES_URL`, dropped at the end.
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    async fn create() -> Option<Database> {
        let server = match std::env::var("JANUS_TEST_POSTGRES_URL") {
            Ok(u) if !u.is_empty() => u,
            _ => {
                assert!(
                    std::env::var("CI").map_or(true, |v| v.is_empty() || v == "false"),
                    "CI is set but JANUS_TEST_POSTGRES_URL is not: run the tests through scripts/test.sh"
                );
                eprintln!("JANUS_TEST_POSTGRES_URL not set: the two-replica test needs PostgreSQL, skipped");
                return None;
            }
        };
        let name = format!("janus_replicas_{}", std::process::id());
        let mut c = sqlx::PgConnection::connect(&server)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        let base = server.rsplit_once('/').map(|(b, _)| b).expect("a database in the URL");
        let url = format!("{base}/{name}");
        Some(Database { server, name, url })
    }

    async fn drop_now(self) {
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.server).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .execute(&mut c)
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_web_replicas_share_sessions_cut_terminals_on_revoke_and_lose_nothing_when_one_is_killed() {
    let Some(db) = Database::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let cluster = janus_testkit::TestCluster::start_simulated(kubesim::SimBuilder::new())
        .await
        .unwrap();
    cluster.prepare_janus().await.unwrap();
    let controller_kc = dir.path().join("controller.kubeconfig");
    let token = cluster.sa_token(farm::NS, "k8s-janus-controller").await.unwrap();
    farm::write_private(&controller_kc, &cluster.kubeconfig_for_token(&token).unwrap()).unwrap();
    let web_kc = dir.path().join("web.kubeconfig");
    let token = cluster.sa_token(farm::NS, "k8s-janus-web").await.unwrap();
    farm::write_private(&web_kc, &cluster.kubeconfig_for_token(&token).unwrap()).unwrap();
    // The chart's configuration; the decision load needs more open requests per user than its 5.
    let config = dir.path().join("janus.yaml");
    std::fs::write(
        &config,
        farm::chart_config(
            &db.url,
            &json!({"maxOpenRequestsPerUser": 10_000, "maxRequestsPerHour": 10_000}),
        )
        .unwrap(),
    )
    .unwrap();
    let janus = std::path::PathBuf::from(env!("CARGO_BIN_EXE_janus"));
    let _controller = farm::start_controller(&janus, &config, &controller_kc, dir.path())
        .await
        .unwrap();
    let spec = WebSpec {
        janus,
        config,
        kubeconfig: web_kc,
        logs: dir.path().to_path_buf(),
        session_key: "s".repeat(48),
        admin_password: "bootstrap-password-1".into(),
    };
    let result = scenario(&spec, &db.url).await;
    if result.is_err() {
        for f in ["web-web-0.log", "web-web-1.log", "controller.log"] {
            let text = std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!(
                "--- {f} (last lines)\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    db.drop_now().await;
    if let Err(e) = result {
        panic!("two-replica scenario failed: {e:#}");
    }
}

async fn scenario(spec: &WebSpec, database_url: &str) -> anyhow::Result<()> {
    let a = Web::start(spec, "web-0").await?;
    let mut b = Web::start(spec, "web-1").await?;
    let http = reqwest::Client::new();
    let admin = Session::login(&http, &a, "admin", &spec.admin_password).await?;
    admin.create_user("alice", "alice@example.com", false).await?;
    let alice = Session::login(&http, &a, "alice", farm::PASSWORD).await?;

    // A cookie from web-0 is a session on web-1 (sessions live in the shared database).
    let who: serde_json::Value = alice.on(&b).get("/api/v1/session").await?.json().await?;
    anyhow::ensure!(who["identity"]["email"] == "alice@example.com", "{who}");

    // A terminal on each replica; the revoke, made on web-0, closes both.
    let name = alice.create_request("two replicas").await?;
    let approved = admin.on(&b).decide(&name, "approve", &json!({})).await?;
    anyhow::ensure!(approved.is_success(), "approve on web-1: {approved}");
    admin
        .wait_phase(std::slice::from_ref(&name), "Active", Duration::from_secs(30))
        .await?;
    let t0 = Terminal::open(&alice, &name).await?;
    let t1 = Terminal::open(&alice.on(&b), &name).await?;
    let revoked = admin
        .decide(&name, "revoke", &json!({"reason": "replica test"}))
        .await?;
    anyhow::ensure!(revoked.is_success(), "revoke on web-0: {revoked}");
    let (r0, r1) = tokio::join!(t0.closed(Duration::from_secs(10)), t1.closed(Duration::from_secs(10)));
    let (r0, r1) = (r0?, r1?);
    anyhow::ensure!(r0.contains("revoked"), "web-0's terminal: {r0}");
    anyhow::ensure!(r1.contains("revoked"), "web-1's terminal: {r1}");

    // Decisions through both replicas; web-1 is SIGKILLed in the middle and its workers go on with
    // the same sessions on web-0.
    let pairs: Vec<Pair> = (0..4)
        .map(|i| {
            let web = if i % 2 == 0 { &a } else { &b };
            Pair {
                user: alice.on(web),
                admin: admin.on(web),
            }
        })
        .collect();
    let stop = Instant::now() + Duration::from_secs(6);
    let (d, killed) = tokio::join!(farm::decision_load(pairs, &a, stop), async {
        // Once web-1 has answered decisions, so that some were in flight when it died.
        tokio::time::sleep(Duration::from_secs(2)).await;
        b.kill().await
    });
    killed?;
    println!(
        "{} created, {} approved (2xx), {} refused, {} calls unanswered by the killed replica",
        d.created.len(),
        d.approved.len(),
        d.refused.len(),
        d.unanswered
    );
    anyhow::ensure!(d.unanswered > 0, "the load went on after the kill");
    anyhow::ensure!(!d.approved.is_empty(), "decisions were made");
    anyhow::ensure!(d.refused.is_empty(), "no call may be refused: {:#?}", d.refused);
    // Every decision answered 2xx took effect...
    admin.wait_phase(&d.approved, "Active", Duration::from_secs(30)).await?;
    // ...and has its audit events in PostgreSQL.
    let missing = farm::audit_missing(database_url, &d, Duration::from_secs(30)).await?;
    anyhow::ensure!(missing.is_empty(), "audit events lost: {missing:#?}");
    // web-1's users keep their session on web-0.
    let who: serde_json::Value = alice.on(&a).get("/api/v1/session").await?.json().await?;
    anyhow::ensure!(who["identity"]["email"] == "alice@example.com", "{who}");
    Ok(())
}
