#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Controller failover end to end: two `janus controller` processes with the chart's leader-election
//! timings against one API server. The leader is SIGKILLed while it grants requests and while others
//! are about to expire; then the new leader is stopped with SIGTERM (a rolling update). Nothing may be
//! lost or created twice, and the requests that expired around the handover must be cleaned up.
//!
//! Correctness only: the times are the benchmark's (`scripts/bench.sh failover`, the same scenario
//! from crates/janus-bench/src/failover.rs). The only time bounds are generous deadlines on promises.

#[path = "../../janus-controller/tests/common/mod.rs"]
mod common;
#[path = "../../janus-bench/src/failover.rs"]
#[allow(dead_code)]
mod failover;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_or_stopped_leader_loses_and_doubles_nothing_and_expiring_requests_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let sim = central().await;
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml_serde::to_string(&common::config("")).unwrap()).unwrap();
    let token = sa_token(&sim, NS, "k8s-janus-controller").await;
    let kubeconfig = dir.path().join("controller.kubeconfig");
    kubesim::kubeconfig::write_private(&kubeconfig, &sim.kubeconfig_for_token(&token)).unwrap();
    let setup = failover::Setup {
        admin: sim.client().await.unwrap(),
        janus: env!("CARGO_BIN_EXE_janus").into(),
        config,
        kubeconfig,
        logs: dir.path().to_path_buf(),
        namespace: NS.into(),
        target_namespaces: vec!["team-a".into(), "team-b".into()],
        batch: 4,
        // The chart's timings, which `janus controller` runs with.
        lease_duration: Duration::from_secs(15),
    };
    let report = match failover::run(setup).await {
        Ok(r) => r,
        Err(e) => {
            keep_logs(&dir);
            panic!("{e:#}");
        }
    };
    for o in [&report.kill, &report.term] {
        println!(
            "{:?}: old leader {}; Lease taken after {:?}; first request approved after the signal Active after {:?}; cleanup lags {:?} ({} expired before the takeover)",
            o.stop, o.exit, o.lease_taken, o.first_reconcile, o.cleanup_lags, o.expired_before_takeover
        );
        let problems: Vec<&String> = o.lost.iter().chain(&o.doubled).chain(&o.not_cleaned).collect();
        if !problems.is_empty() {
            keep_logs(&dir);
        }
        assert!(o.lost.is_empty(), "{:?}: requests lost: {:#?}", o.stop, o.lost);
        assert!(o.doubled.is_empty(), "{:?}: created twice: {:#?}", o.stop, o.doubled);
        assert!(
            o.not_cleaned.is_empty(),
            "{:?}: credentials left: {:#?}",
            o.stop,
            o.not_cleaned
        );
        assert_eq!(o.cleanup_lags.len(), 4, "every expiring request was cleaned up");
        // Deadlines five times the promises (cleanup within 1 s of the new leader; a reconcile within
        // the lease plus 1 s after a SIGKILL, within 1 s after a SIGTERM).
        let worst = o.cleanup_lags.iter().max().copied().unwrap_or_default();
        assert!(worst <= Duration::from_secs(5), "{:?}: cleanup took {worst:?}", o.stop);
    }
    assert!(
        report.kill.expired_before_takeover > 0,
        "the SIGKILL scenario must have requests expire while nobody leads"
    );
    assert!(
        report.kill.exit.contains("SIGKILL") || report.kill.exit.contains("signal: 9"),
        "{}",
        report.kill.exit
    );
    assert!(
        report.term.exit.contains("exit status: 0"),
        "a SIGTERMed controller exits cleanly: {}",
        report.term.exit
    );
    assert!(
        report.kill.first_reconcile <= Duration::from_secs(15 + 5),
        "{:?}",
        report.kill
    );
    assert!(
        report.term.first_reconcile <= Duration::from_secs(5),
        "{:?}",
        report.term
    );
}

fn keep_logs(dir: &tempfile::TempDir) {
    let keep = std::env::temp_dir().join(format!("janus-failover-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&keep);
    for e in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".log") {
            let _ = std::fs::copy(e.path(), keep.join(&name));
        }
    }
    eprintln!("controller logs kept in {}", keep.display());
}
