#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Registering remote clusters end to end, with two kubesim clusters (central and remote), the real
//! kubectl and helm: `scripts/setup.sh` (flags and an interactive run driven through tmux), then a
//! request lifecycle on the registered cluster, offboarding with `setup.sh remove`, and
//! `janus kubeconfig-sync` against sample ArgoCD cluster Secrets.

#[path = "../../janus-controller/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use base64::Engine;
use common::*;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kubesim::{RunningSim, SimBuilder};
use serde_json::json;

fn script() -> PathBuf {
    repo_root().join("scripts/setup.sh")
}

fn tools_path() -> String {
    let tools = repo_root().join(".tools/bin");
    format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default())
}

struct Env {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Env {
    /// A kubeconfig with contexts `central` and `remote` (current: central).
    fn new(central: &RunningSim, remote: &RunningSim) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let merged = kubesim::kubeconfig::merge(&[central.kubeconfig_yaml(), remote.kubeconfig_yaml()]).unwrap();
        kubesim::kubeconfig::write_private(&kubeconfig, &merged).unwrap();
        Self { dir, kubeconfig }
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", tools_path())
            .env("JANUS", env!("CARGO_BIN_EXE_janus"))
            .env("HELM_CACHE_HOME", self.dir.path().join("helm-cache"))
            .env("HELM_CONFIG_HOME", self.dir.path().join("helm-config"))
            .env("HELM_DATA_HOME", self.dir.path().join("helm-data"))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn setup(&self, args: &[&str]) -> Output {
        let out = self.command("bash").arg(script()).args(args).output();
        tokio::time::timeout(Duration::from_secs(120), out)
            .await
            .expect("setup.sh finished in time")
            .expect("setup.sh runs")
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "expected success:\n{}", text(out));
    text(out)
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "expected failure:\n{}", text(out));
    text(out)
}

/// A remote kubesim with workloads and no agent yet.
async fn bare_remote() -> RunningSim {
    let sim = SimBuilder::new().name("remote").start().await.expect("kubesim");
    sim.load_seed(WORKLOADS).expect("workloads");
    sim
}

async fn secret(sim: &RunningSim, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(sim.client().await.unwrap(), NS)
        .get_opt(name)
        .await
        .unwrap()
}

fn rv(s: &Secret) -> String {
    s.metadata.resource_version.clone().unwrap()
}

fn kubeconfig_of(s: &Secret) -> serde_json::Value {
    let raw = &s.data.as_ref().unwrap()["kubeconfig"].0;
    yaml_serde::from_slice(raw).unwrap()
}

async fn agent_exists(remote: &RunningSim) -> bool {
    Api::<ServiceAccount>::namespaced(remote.client().await.unwrap(), NS)
        .get_opt("k8s-janus-agent")
        .await
        .unwrap()
        .is_some()
}

/// `kubectl auth can-i get` and `create pods/exec` on the remote cluster with a request's token:
/// "yes" only if both are allowed, as a WebSocket exec needs `get` and, from Kubernetes 1.35, `create`
/// too (a SPDY exec needs `create`).
async fn can_exec(env: &Env, remote: &RunningSim, token: &str, ns: &str) -> String {
    let mut answers = Vec::new();
    for verb in ["get", "create"] {
        let out = env
            .command("kubectl")
            .args([
                "--server",
                &remote.url(),
                "--insecure-skip-tls-verify",
                "--token",
                token,
            ])
            .args(["auth", "can-i", verb, "pods", "--subresource=exec", "-n", ns])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if stdout.is_empty() {
            return format!("error: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        answers.push(stdout);
    }
    if answers.iter().all(|a| a == "yes") {
        "yes".to_string()
    } else {
        answers.into_iter().find(|a| a != "yes").unwrap_or_default()
    }
}

/// Approves once the controller has seen the request (status Pending). Approving in the same instant
/// as the creation sometimes left a request Pending for good in this test (2 runs in ~15): the
/// approval seemed lost, which fits a lost update in kubesim between the approval (spec patch) and the
/// controller's status patch, being fixed in kubesim's store. Waiting for the first reconcile keeps
/// this test about registration; go back to approving at once when that fix is in.
async fn submitted_then_approve(central: &RunningSim, name: &str) {
    wait_phase(central, name, "Pending", 20).await;
    approve(central, name).await;
}

// ----------------------------------------------------------------------------------------- tmux

fn have_tmux() -> bool {
    std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Drives an interactive setup.sh in a private tmux server (its own socket, killed at the end).
struct Tmux {
    socket: PathBuf,
    log: PathBuf,
    rc: PathBuf,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux runs")
    }

    fn start(env: &Env, setup_args: &str) -> Self {
        let d = env.dir.path();
        let t = Tmux {
            socket: d.join("tmux.sock"),
            log: d.join("interactive.log"),
            rc: d.join("interactive.rc"),
        };
        let wrapper = d.join("interactive.sh");
        std::fs::write(
            &wrapper,
            format!(
                "export KUBECONFIG='{}' PATH='{}' JANUS='{}' HELM_CACHE_HOME='{d}/hc' HELM_CONFIG_HOME='{d}/hf' HELM_DATA_HOME='{d}/hd'\n\
                 bash '{}' {setup_args} 2>&1 | tee '{}'\necho \"${{PIPESTATUS[0]}}\" > '{}'\n",
                env.kubeconfig.display(),
                tools_path(),
                env!("CARGO_BIN_EXE_janus"),
                script().display(),
                t.log.display(),
                t.rc.display(),
                d = d.display(),
            ),
        )
        .unwrap();
        let out = t.run(&[
            "new-session",
            "-d",
            "-x",
            "200",
            "-y",
            "50",
            "-s",
            "setup",
            &format!("bash '{}'", wrapper.display()),
        ]);
        assert!(out.status.success(), "tmux: {}", String::from_utf8_lossy(&out.stderr));
        t
    }

    fn screen(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the prompt `prompt` is on screen (after `seen` bytes), then types `answer` + Enter.
    async fn answer(&self, prompt: &str, answer: &str, seen: &mut usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.screen();
            if let Some(i) = s[*seen..].find(prompt) {
                *seen += i + prompt.len();
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline && !self.rc.exists(),
                "prompt {prompt:?} never came; screen:\n{s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = self.run(&["send-keys", "-t", "setup", "-l", answer]);
        assert!(out.status.success());
        self.run(&["send-keys", "-t", "setup", "Enter"]);
    }

    async fn wait(&self) -> i32 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while !self.rc.exists() || std::fs::read_to_string(&self.rc).unwrap().trim().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "interactive setup.sh did not finish:\n{}",
                self.screen()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::fs::read_to_string(&self.rc).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

// ----------------------------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn setup_sh_registers_a_remote_cluster_and_removes_it() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    assert_eq!(
        janus_registration::CLUSTER_LABEL,
        janus_controller::clusters::CLUSTER_LABEL
    );
    assert_eq!(
        janus_registration::DISPLAY_NAME_ANNOTATION,
        janus_controller::clusters::DISPLAY_NAME_ANNOTATION
    );
    let central = central().await;
    let remote = bare_remote().await;
    let env = Env::new(&central, &remote);
    let base = ["--central-context", "central", "--remote-context", "remote"];

    // Missing tools: said by name.
    let out = env
        .command("bash")
        .arg(script())
        .args([
            "--central-context",
            "central",
            "--remote-context",
            "remote",
            "--name",
            "prod",
            "--yes",
        ])
        .env("KUBECTL", "/nonexistent/kubectl")
        .output()
        .await
        .unwrap();
    assert!(failed(&out).contains("kubectl not found on the PATH"), "{}", text(&out));
    let out = env
        .command("bash")
        .arg(script())
        .args([
            "--central-context",
            "central",
            "--remote-context",
            "remote",
            "--name",
            "prod",
            "--yes",
        ])
        .args(["--no-helm"])
        .env("JANUS", "/nonexistent/janus")
        .output()
        .await
        .unwrap();
    assert!(
        failed(&out).contains("JANUS=/nonexistent/janus is not executable"),
        "{}",
        text(&out)
    );

    // Wrong context names: a clear message, nothing created anywhere.
    let out = failed(
        &env.setup(&[
            "--central-context",
            "central",
            "--remote-context",
            "nope",
            "--name",
            "prod",
            "--yes",
        ])
        .await,
    );
    assert!(out.contains("unknown remote context 'nope'"), "{out}");
    assert!(out.contains("available contexts: central remote"), "{out}");
    // Without a terminal and without the answers, it says what is missing instead of hanging.
    let out = failed(&env.setup(&["--central-context", "central"]).await);
    assert!(
        out.contains("missing  --remote-context --name") || out.contains("--remote-context"),
        "{out}"
    );
    // Without --yes and without a terminal it does not proceed.
    let out = failed(&env.setup(&[&base[..], &["--name", "prod"]].concat()).await);
    assert!(out.contains("pass --yes"), "{out}");
    assert!(secret(&central, "prod-kubeconfig").await.is_none());
    assert!(!agent_exists(&remote).await);

    // An identity that may not write Secrets in the Janus namespace (the web UI's): refused up front.
    let weak_token = sa_token(&central, NS, "k8s-janus-web").await;
    let weak = kubesim::kubeconfig::render("weak", &central.url(), central.ca_pem(), &weak_token);
    let merged = std::fs::read_to_string(&env.kubeconfig).unwrap();
    let weak_env = Env::new(&central, &remote);
    kubesim::kubeconfig::write_private(
        &weak_env.kubeconfig,
        &kubesim::kubeconfig::merge(&[merged, weak]).unwrap(),
    )
    .unwrap();
    let out = failed(
        &weak_env
            .setup(&[
                "--central-context",
                "weak",
                "--remote-context",
                "remote",
                "--name",
                "prod",
                "--yes",
            ])
            .await,
    );
    assert!(
        out.contains("insufficient rights on the central cluster ('weak'): you cannot create secrets"),
        "{out}"
    );
    assert!(!agent_exists(&remote).await);

    // Dry run: the plan, no change.
    let out = ok(&env.setup(&[&base[..], &["--name", "prod", "--dry-run"]].concat()).await);
    assert!(out.contains("helm upgrade --install k8s-janus"), "{out}");
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    assert!(!agent_exists(&remote).await);

    // An extra binding gives the agent more than it needs: refused, and the agent this run
    // installed is rolled back.
    remote
        .load_seed(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: read-secrets}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: too-much}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: read-secrets}
subjects: [{kind: ServiceAccount, name: k8s-janus-agent, namespace: k8s-janus}]
"#,
        )
        .unwrap();
    let out = failed(&env.setup(&[&base[..], &["--name", "prod", "--yes"]].concat()).await);
    assert!(out.contains("unexpected permission: get secrets -A"), "{out}");
    assert!(out.contains("rolling back"), "{out}");
    assert!(
        secret(&central, "prod-kubeconfig").await.is_none(),
        "no Secret on failure"
    );
    assert!(
        !agent_exists(&remote).await,
        "the agent installed by the failed run is removed"
    );
    let crb: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(remote.client().await.unwrap());
    crb.delete("too-much", &DeleteParams::default()).await.unwrap();

    // The central chart's ConfigMap names an operator's own role beside the shipped ones (keys in
    // another order than helm's toJson writes them): the agent is installed for all four roles, and
    // the remote cluster, which lacks the operator's ClusterRole, is registered with a clear warning.
    let roles = janus_registration::agent::roles_from_flag("exec,logs,debug,audit=acme-audit").unwrap();
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "k8s-janus-config", "namespace": NS},
        "data": {"config.yaml": format!("namespace: k8s-janus\nroles: {}\n", serde_json::to_string(&roles).unwrap())},
    });
    central.load_seed(&serde_json::to_string(&config_map).unwrap()).unwrap();

    // Register with flags.
    let out = ok(&env
        .setup(&[&base[..], &["--name", "prod", "--display-name", "Prod EU", "--yes"]].concat())
        .await);
    assert!(out.contains("creating Secret k8s-janus/prod-kubeconfig"), "{out}");
    assert!(
        out.contains("roles           : exec logs debug audit (ClusterRoles: janus-pod-exec janus-pod-logs janus-pod-debug acme-audit"),
        "{out}"
    );
    assert!(
        out.contains("setup.sh: warning: cluster prod lacks ClusterRole acme-audit (role audit): install the chart there with remote.enabled=true or apply `janus agent-manifests`"),
        "{out}"
    );
    assert!(
        !out.contains("lacks ClusterRole janus-pod"),
        "the chart installed the shipped ones:\n{out}"
    );
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(remote.client().await.unwrap());
    assert_eq!(
        bindings.get("k8s-janus-agent-role-audit").await.unwrap().role_ref.name,
        "acme-audit",
        "the agent holds (and may bind) the operator's role too"
    );
    let s = secret(&central, "prod-kubeconfig").await.expect("Secret");
    let labels = s.metadata.labels.clone().unwrap();
    assert_eq!(labels["k8s-janus.opsmode.io/cluster"], "prod");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "k8s-janus");
    assert_eq!(
        s.metadata.annotations.as_ref().unwrap()["k8s-janus.opsmode.io/display-name"],
        "Prod EU"
    );
    let kc = kubeconfig_of(&s);
    assert_eq!(kc["clusters"][0]["cluster"]["server"], remote.url());
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            kc["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(String::from_utf8(ca).unwrap(), remote.ca_pem());
    let agent_token = kc["users"][0]["user"]["token"].as_str().unwrap().to_string();
    assert!(!out.contains(&agent_token), "the token is never printed");
    assert!(agent_exists(&remote).await);

    // Re-running changes nothing: same Secret version, no new helm revision.
    let out = ok(&env
        .setup(&[&base[..], &["--name", "prod", "--display-name", "Prod EU", "--yes"]].concat())
        .await);
    assert!(out.contains("is up to date (no change)"), "{out}");
    assert!(out.contains("keep the current token"), "{out}");
    assert_eq!(rv(&secret(&central, "prod-kubeconfig").await.unwrap()), rv(&s));
    let remote_secrets: Api<Secret> = Api::namespaced(remote.client().await.unwrap(), NS);
    assert!(
        remote_secrets
            .get_opt("sh.helm.release.v1.k8s-janus.v2")
            .await
            .unwrap()
            .is_none()
    );

    // The same name for another server is a collision.
    let other = bare_remote().await;
    let env2 = Env::new(&central, &other);
    let out = failed(&env2.setup(&[&base[..], &["--name", "prod", "--yes"]].concat()).await);
    assert!(out.contains("already registered for another API server"), "{out}");
    drop(other);

    // The controller (chart RBAC, not restarted) grants on the new cluster.
    let ctl = Controller::start(&central, config("")).await;
    create(&central, &request("r1", "prod", &["team-a"], 4)).await;
    submitted_then_approve(&central, "r1").await;
    wait_phase(&central, "r1", "Active", 20).await;
    let toks = tokens(&central, "r1").await;
    assert_eq!(toks.len(), 1);
    assert_eq!(can_exec(&env, &remote, &toks[0].1, "team-a").await, "yes");
    assert_eq!(can_exec(&env, &remote, &toks[0].1, "team-b").await, "no");
    wait_phase(&central, "r1", "Expired", 20).await;
    // Refused at once: "no" while the server's authentication cache (about 10 s, as on a real API
    // server) still remembers the token but its RoleBinding, deleted first, is gone; "Unauthorized"
    // once the deleted ServiceAccount's token no longer authenticates.
    let after = can_exec(&env, &remote, &toks[0].1, "team-a").await;
    assert!(after == "no" || after.contains("Unauthorized"), "{after}");
    assert!(leftovers(&central, &remote, "r1").await.is_empty());

    // remove: revokes the open request first, waits for its credentials, then deletes the Secret.
    create(&central, &request("r2", "prod", &["team-a"], 3600)).await;
    submitted_then_approve(&central, "r2").await;
    wait_phase(&central, "r2", "Active", 20).await;
    let out = ok(&env
        .setup(&[
            "remove",
            "prod",
            "--central-context",
            "central",
            "--remote-context",
            "remote",
            "--remove-agent",
            "--yes",
        ])
        .await);
    assert!(out.contains("revoking AccessRequest r2"), "{out}");
    assert!(out.contains("all credentials removed"), "{out}");
    let r2 = get(&central, "r2").await;
    if let Some(r2) = r2 {
        assert_eq!(phase(&r2), "Revoked");
        assert_eq!(r2.spec.revocation.unwrap().by, "setup.sh");
    }
    assert!(leftovers(&central, &remote, "r2").await.is_empty());
    assert!(secret(&central, "prod-kubeconfig").await.is_none());
    assert!(!agent_exists(&remote).await, "--remove-agent");
    // Removing again: nothing to do.
    let out = ok(&env
        .setup(&["remove", "prod", "--central-context", "central", "--yes"])
        .await);
    assert!(out.contains("nothing to do"), "{out}");

    // Interactive, through a terminal, deploying the agent with `janus agent-manifests | kubectl apply`.
    if have_tmux() {
        let tmux = Tmux::start(&env, "--no-helm");
        let mut seen = 0;
        tmux.answer("Central context (number or name) [central]: ", "1", &mut seen)
            .await;
        tmux.answer("Remote context (number or name): ", "remote", &mut seen)
            .await;
        tmux.answer("Cluster name (used in requests) [remote]: ", "prod", &mut seen)
            .await;
        tmux.answer("Display name [prod]: ", "Prod (interactive)", &mut seen)
            .await;
        tmux.answer("Proceed? [y/N]: ", "y", &mut seen).await;
        assert_eq!(tmux.wait().await, 0, "{}", tmux.screen());
        let screen = tmux.screen();
        assert!(screen.contains("1) central (current)"), "{screen}");
        assert!(screen.contains("janus agent-manifests"), "{screen}");
    } else {
        assert!(std::env::var_os("CI").is_none(), "tmux is required under CI");
        eprintln!("SKIPPED the interactive run: tmux not found; registering with flags instead");
        ok(&env
            .setup(
                &[
                    &base[..],
                    &[
                        "--name",
                        "prod",
                        "--display-name",
                        "Prod (interactive)",
                        "--no-helm",
                        "--yes",
                    ],
                ]
                .concat(),
            )
            .await);
    }
    let s = secret(&central, "prod-kubeconfig").await.expect("Secret");
    assert_eq!(
        s.metadata.annotations.as_ref().unwrap()["k8s-janus.opsmode.io/display-name"],
        "Prod (interactive)"
    );
    assert!(agent_exists(&remote).await);

    // The registration works for the controller again.
    create(&central, &request("r3", "prod", &["team-b"], 3600)).await;
    submitted_then_approve(&central, "r3").await;
    wait_phase(&central, "r3", "Active", 20).await;
    ctl.stop().await;

    // A stopped remote cluster: a clear error and no Secret.
    remote.shutdown().await.unwrap();
    let out = failed(&env.setup(&[&base[..], &["--name", "staging", "--yes"]].concat()).await);
    assert!(
        out.contains("cannot reach the remote cluster (context 'remote')"),
        "{out}"
    );
    assert!(secret(&central, "staging-kubeconfig").await.is_none());
}

// ----------------------------------------------------------------------------------------- kubeconfig-sync

const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEAAAA\n-----END PRIVATE KEY-----\n";

fn argo_secret(secret: &str, name: &str, server: &str, config: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": secret, "namespace": "argocd", "labels": {"argocd.argoproj.io/secret-type": "cluster"}},
        "type": "Opaque",
        "stringData": {"name": name, "server": server, "config": config.to_string()},
    })
}

/// The command line of the chart's kubeconfig-sync Job, with the config path pointed at `dir`.
fn job_args(chart: &str, dir: &Path) -> Vec<String> {
    let job = yaml_serde::Deserializer::from_str(chart)
        .map(|d| <serde_json::Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|v| v["kind"] == "Job")
        .expect("the chart renders the Job");
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"], json!(["janus"]));
    let config = dir.join("config.yaml").display().to_string();
    c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().replace("/etc/janus/config.yaml", &config))
        .collect()
}

/// Runs `janus` with the Job's arguments, as the Job's ServiceAccount.
async fn kubeconfig_sync(dir: &Path, args: &[String]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_janus"))
        .args(["--log-format", "text"])
        .args(args)
        .arg("--kubeconfig")
        .arg(dir.join("sync.kubeconfig"))
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_sync_writes_secrets_from_argocd() {
    let sim = central().await;
    sim.load_seed("apiVersion: v1\nkind: Namespace\nmetadata: {name: argocd}\n")
        .unwrap();
    // The Job's own ServiceAccount and Roles, as the chart renders them; and its command line.
    let chart = render_chart(
        &["kubeconfigSync.enabled=true", "kubeconfigSync.argocdNamespace=argocd"],
        &["templates/kubeconfig-sync.yaml"],
    );
    sim.load_seed(&chart).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ca = sim.ca_pem().to_string();
    let ca_pem = ca.as_str();
    let secrets = [
        argo_secret(
            "cluster-prod-1234",
            "prod",
            "https://prod.example:6443",
            json!({"bearerToken": "prod-token-value", "tlsClientConfig": {"insecure": false, "caData": b64(ca_pem)}}),
        ),
        argo_secret(
            "cluster-edge",
            "edge",
            "https://10.1.2.3",
            json!({"tlsClientConfig": {"caData": b64(ca_pem), "certData": b64(ca_pem), "keyData": b64(KEY_PEM)}}),
        ),
        argo_secret(
            "cluster-lab",
            "lab",
            "https://lab:6443",
            json!({"bearerToken": "lab-token-value", "tlsClientConfig": {"insecure": true}}),
        ),
        argo_secret(
            "cluster-gke",
            "gke",
            "https://34.1.1.1",
            json!({"execProviderConfig": {"command": "argocd-k8s-auth", "args": ["gcp"], "apiVersion": "client.authentication.k8s.io/v1beta1"}}),
        ),
        argo_secret(
            "cluster-eks",
            "eks",
            "https://abc.eks.amazonaws.com",
            json!({"awsAuthConfig": {"clusterName": "eks-prod", "roleARN": "arn:aws:iam::1:role/argocd"}}),
        ),
        argo_secret("cluster-unlisted", "unlisted", "https://x", json!({"bearerToken": "t"})),
    ];
    for s in &secrets {
        sim.load_seed(&serde_json::to_string(s).unwrap()).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        yaml_serde::to_string(&config(
            "clusters: [{name: central}, {name: prod, displayName: Production}, {name: edge}, {name: lab, secretName: lab-kc}, {name: gke}, {name: eks}, {name: nowhere}]",
        ))
        .unwrap(),
    )
    .unwrap();
    let token = sa_token(&sim, NS, "k8s-janus-kubeconfig-sync").await;
    kubesim::kubeconfig::write_private(&dir.path().join("sync.kubeconfig"), &sim.kubeconfig_for_token(&token)).unwrap();

    let args = job_args(&chart, dir.path());
    let config_path = dir.path().join("config.yaml").display().to_string();
    assert_eq!(
        args,
        [
            "kubeconfig-sync",
            "--config",
            &config_path,
            "--argocd-namespace",
            "argocd"
        ],
        "the flags janus kubeconfig-sync implements"
    );
    let out = kubeconfig_sync(dir.path(), &args).await;
    let t = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "failed and missing clusters fail the Job:\n{t}"
    );
    for want in [
        "prod: created Secret prod-kubeconfig",
        "edge: created Secret edge-kubeconfig",
        "lab: created Secret lab-kc",
        "gke: failed: cluster gke cannot be synced: it uses execProviderConfig (command `argocd-k8s-auth`)",
        "eks: failed: cluster eks cannot be synced: it uses awsAuthConfig (AWS IAM, EKS cluster `eks-prod`)",
        "nowhere: missing: no ArgoCD cluster Secret has name \"nowhere\"",
        "kubeconfig-sync: 6 clusters: 3 created, 0 updated, 0 unchanged, 2 failed, 1 missing in ArgoCD",
        "not synced: gke, eks, nowhere",
    ] {
        assert!(t.contains(want), "{want:?} not in:\n{t}");
    }
    assert!(!t.contains("prod-token-value") && !t.contains("lab-token-value"), "{t}");
    assert!(!t.contains("central:"), "the central cluster is not synced:\n{t}");

    let prod = secret(&sim, "prod-kubeconfig").await.unwrap();
    assert_eq!(
        prod.metadata.labels.as_ref().unwrap()["k8s-janus.opsmode.io/cluster"],
        "prod"
    );
    assert_eq!(
        prod.metadata.annotations.as_ref().unwrap()["k8s-janus.opsmode.io/display-name"],
        "Production"
    );
    let kc = kubeconfig_of(&prod);
    assert_eq!(kc["users"][0]["user"]["token"], "prod-token-value");
    assert_eq!(kc["clusters"][0]["cluster"]["server"], "https://prod.example:6443");
    assert_eq!(kc["clusters"][0]["cluster"]["certificate-authority-data"], b64(ca_pem));
    let edge = kubeconfig_of(&secret(&sim, "edge-kubeconfig").await.unwrap());
    assert_eq!(edge["users"][0]["user"]["client-key-data"], b64(KEY_PEM));
    let lab = kubeconfig_of(&secret(&sim, "lab-kc").await.unwrap());
    assert_eq!(lab["clusters"][0]["cluster"]["insecure-skip-tls-verify"], true);
    assert!(secret(&sim, "gke-kubeconfig").await.is_none());
    assert!(secret(&sim, "unlisted-kubeconfig").await.is_none());
    // what the controller reads must be a usable kubeconfig
    janus_controller::clusters::handle_from_kubeconfig("prod", &yaml_serde::to_string(&kc).unwrap())
        .await
        .unwrap();

    // Re-run: nothing written.
    let versions: Vec<String> = [
        secret(&sim, "prod-kubeconfig").await,
        secret(&sim, "edge-kubeconfig").await,
        secret(&sim, "lab-kc").await,
    ]
    .iter()
    .map(|s| rv(s.as_ref().unwrap()))
    .collect();
    let t = text(&kubeconfig_sync(dir.path(), &args).await);
    assert!(
        t.contains("0 created, 0 updated, 3 unchanged, 2 failed, 1 missing"),
        "{t}"
    );
    assert!(t.contains("prod: unchanged Secret prod-kubeconfig"), "{t}");
    let again: Vec<String> = [
        secret(&sim, "prod-kubeconfig").await,
        secret(&sim, "edge-kubeconfig").await,
        secret(&sim, "lab-kc").await,
    ]
    .iter()
    .map(|s| rv(s.as_ref().unwrap()))
    .collect();
    assert_eq!(versions, again);

    // A rotated token in ArgoCD is picked up; a Secret not managed by k8s-janus is never overwritten.
    Api::<Secret>::namespaced(sim.client().await.unwrap(), "argocd")
        .delete("cluster-prod-1234", &DeleteParams::default())
        .await
        .unwrap();
    sim.load_seed(
        &serde_json::to_string(&argo_secret(
            "cluster-prod-1234",
            "prod",
            "https://prod.example:6443",
            json!({"bearerToken": "prod-token-rotated", "tlsClientConfig": {"caData": b64(ca_pem)}}),
        ))
        .unwrap(),
    )
    .unwrap();
    let api: Api<Secret> = Api::namespaced(sim.client().await.unwrap(), NS);
    api.delete("edge-kubeconfig", &DeleteParams::default()).await.unwrap();
    let foreign: Secret = serde_json::from_value(json!({
        "metadata": {"name": "edge-kubeconfig", "namespace": NS},
        "stringData": {"kubeconfig": "hand-made"}
    }))
    .unwrap();
    api.create(&PostParams::default(), &foreign).await.unwrap();
    let t = text(&kubeconfig_sync(dir.path(), &args).await);
    assert!(t.contains("prod: updated Secret prod-kubeconfig"), "{t}");
    assert!(
        t.contains("edge: failed: Secret k8s-janus/edge-kubeconfig exists and is not managed by k8s-janus"),
        "{t}"
    );
    assert!(!t.contains("prod-token-rotated"), "{t}");
    let kc = kubeconfig_of(&secret(&sim, "prod-kubeconfig").await.unwrap());
    assert_eq!(kc["users"][0]["user"]["token"], "prod-token-rotated");
}

/// After writing the kubeconfig Secrets, kubeconfig-sync looks up every configured role's ClusterRole
/// on each cluster with the registered credential: a cluster that lacks one (or whose agent may not
/// read it) is named with the role and what to do, and the Job still succeeds (the other roles work).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_sync_names_the_roles_a_cluster_lacks() {
    let central = central().await;
    central
        .load_seed("apiVersion: v1\nkind: Namespace\nmetadata: {name: argocd}\n")
        .unwrap();
    let chart = render_chart(
        &["kubeconfigSync.enabled=true", "kubeconfigSync.argocdNamespace=argocd"],
        &["templates/kubeconfig-sync.yaml"],
    );
    central.load_seed(&chart).unwrap();
    let roles_flag = "exec,logs,debug,audit=acme-audit";
    let roles = janus_registration::agent::roles_from_flag(roles_flag).unwrap();
    // "full": the agent for all four roles, but janus-pod-debug and acme-audit are not on the cluster;
    // "old": an agent installed for the shipped roles only, which may not even look at acme-audit.
    let full = bare_remote().await;
    full.load_seed(&janus_registration::agent::agent_manifests_for(NS, &roles))
        .unwrap();
    Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(full.client().await.unwrap())
        .delete("janus-pod-debug", &DeleteParams::default())
        .await
        .unwrap();
    let old = bare_remote().await;
    old.load_seed(&janus_registration::agent::agent_manifests(NS)).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (name, sim) in [("full", &full), ("old", &old)] {
        let token = sa_token(sim, NS, "k8s-janus-agent").await;
        let s = argo_secret(
            &format!("cluster-{name}"),
            name,
            &sim.url(),
            json!({"bearerToken": token, "tlsClientConfig": {"caData": b64(sim.ca_pem())}}),
        );
        central.load_seed(&serde_json::to_string(&s).unwrap()).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let roles_yaml = serde_json::to_string(&roles).unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        yaml_serde::to_string(&config(&format!(
            "clusters: [{{name: central}}, {{name: full}}, {{name: old}}]\nroles: {roles_yaml}"
        )))
        .unwrap(),
    )
    .unwrap();
    let token = sa_token(&central, NS, "k8s-janus-kubeconfig-sync").await;
    kubesim::kubeconfig::write_private(
        &dir.path().join("sync.kubeconfig"),
        &central.kubeconfig_for_token(&token),
    )
    .unwrap();
    let out = kubeconfig_sync(dir.path(), &job_args(&chart, dir.path())).await;
    let t = ok(&out);
    for want in [
        "full: created Secret full-kubeconfig",
        "full: warning: cluster full lacks ClusterRole janus-pod-debug (role debug): install the chart there with remote.enabled=true or apply `janus agent-manifests`",
        "full: warning: cluster full lacks ClusterRole acme-audit (role audit): install the chart there with remote.enabled=true or apply `janus agent-manifests`",
        "old: created Secret old-kubeconfig",
        "old: warning: the credential of cluster old may not read ClusterRole acme-audit (role audit): upgrade the agent there",
        "kubeconfig-sync: 2 clusters: 2 created, 0 updated, 0 unchanged, 0 failed, 0 missing in ArgoCD; 2 with role warnings",
    ] {
        assert!(t.contains(want), "{want:?} not in:\n{t}");
    }
    for present in [
        "janus-pod-exec (role exec)",
        "janus-pod-logs (role logs)",
        "old: warning: cluster old lacks",
    ] {
        assert!(!t.contains(present), "{present:?} in:\n{t}");
    }
    assert!(secret(&central, "full-kubeconfig").await.is_some());
}
