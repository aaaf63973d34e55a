//! Shared helpers for kubesim's end-to-end tests: a running sim, its kubeconfig, and the real kubectl.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use kubesim::{RunningSim, SimBuilder};

/// A kubesim instance with an admin kubeconfig on disk.
pub struct Env {
    pub sim: RunningSim,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl Env {
    pub async fn new() -> Self {
        Self::with(SimBuilder::new()).await
    }

    pub async fn with(b: SimBuilder) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = b
            .workdir(dir.path().join("work"))
            .start()
            .await
            .expect("kubesim starts");
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).expect("write kubeconfig");
        Self { sim, dir, kubeconfig }
    }

    /// Writes a kubeconfig for another token and returns its path.
    pub fn kubeconfig_for(&self, name: &str, token: &str) -> PathBuf {
        let p = self.dir.path().join(format!("kubeconfig-{name}"));
        kubesim::kubeconfig::write_private(&p, &self.sim.kubeconfig_for_token(token)).expect("write");
        p
    }

    /// Runs the real kubectl with the admin kubeconfig.
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_with(&self.kubeconfig, args, None).await
    }

    /// Runs kubectl and asserts success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl and asserts failure; returns stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args).await;
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail but printed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// kubectl with stdin.
    pub async fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = kubectl_with(&self.kubeconfig, args, Some(stdin)).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies YAML through the admin API (not kubectl), for setting up state.
    pub fn seed(&self, yaml: &str) {
        self.sim.load_seed(yaml).expect("seed");
    }
}

/// Runs kubectl with a given kubeconfig and optional stdin, with a timeout.
pub async fn kubectl_with(kubeconfig: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    cmd.env_remove("KUBECONFIG");
    cmd.stdin(if stdin.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    });
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("kubectl on PATH");
    if let Some(s) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(s.as_bytes()).await.expect("write stdin");
        drop(w);
    }
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl finished in 60s")
        .expect("kubectl ran")
}

/// Polls until `f` returns true or the timeout passes.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, mut f: F) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}
