#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Exec processes start with default signal dispositions, as a container runtime starts them (runc's
//! init resets them), whatever kubesim's own parent ignored. Under `nohup` kubesim inherits an ignored
//! SIGHUP; before this was modelled, every shell exec'd into a pod ignored it too, so a shell's
//! foreground job outlived the hang-up that ends a terminal session (seen in a CI run started with
//! nohup: the web terminal suite, run through a kubeconfig, found the job still running).

mod common;

use common::Env;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};

/// The standard signals (1-31) a process exec'd into the pod ignores, from the `SigIgn` mask of its own
/// /proc status. Real-time signals are left out: glibc reserves 32 and 33 for itself (no `sigaction`
/// can touch them), so their bits say nothing about kubesim.
async fn ignored_standard_signals(pods: &Api<Pod>, params: &AttachParams) -> Vec<u32> {
    let mut p = pods
        .exec("one", vec!["sh", "-c", "grep SigIgn /proc/self/status"], params)
        .await
        .expect("exec");
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut p.stdout().expect("stdout"), &mut out)
        .await
        .expect("output");
    let _ = p.join().await;
    let mask = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).expect("a hex mask"))
        .unwrap_or_else(|| panic!("no SigIgn line in {out:?}"));
    (1..32).filter(|sig| mask & (1 << (sig - 1)) != 0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_processes_start_with_default_signal_dispositions() {
    // This test binary is its own process: ignoring SIGHUP and SIGINT here is what `nohup` and a
    // background job of a non-interactive shell do to kubesim.
    // SAFETY: SIG_IGN installs no handler; nothing else in this process relies on these signals.
    #[allow(unsafe_code, reason = "sigaction is unsafe in nix; SIG_IGN runs no code")]
    unsafe {
        use nix::sys::signal::{SigHandler, Signal, signal};
        signal(Signal::SIGHUP, SigHandler::SigIgn).expect("ignore SIGHUP");
        signal(Signal::SIGINT, SigHandler::SigIgn).expect("ignore SIGINT");
    }
    let env = Env::new().await;
    env.seed("apiVersion: v1\nkind: Pod\nmetadata: {name: one, namespace: default}\nspec:\n  containers:\n  - {name: app, image: x}\n");
    let pods: Api<Pod> = Api::namespaced(env.sim.client().await.expect("client"), "default");
    let plain = ignored_standard_signals(&pods, &AttachParams::default().stderr(false)).await;
    assert_eq!(
        plain,
        Vec::<u32>::new(),
        "signals ignored by an exec without a terminal"
    );
    let tty = ignored_standard_signals(&pods, &AttachParams::default().stderr(false).tty(true)).await;
    assert_eq!(tty, Vec::<u32>::new(), "signals ignored by an exec in a terminal");
}
