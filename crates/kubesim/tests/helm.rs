#![allow(clippy::unwrap_used, clippy::expect_used)]
//! kubesim checked with the real `helm` v4 binary (installed by scripts/install-test-tools.sh).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::Env;

fn helm_binary() -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/helm");
    if local.exists() {
        return local;
    }
    which("helm")
        .unwrap_or_else(|| panic!("helm not found: run scripts/install-test-tools.sh (it puts helm in .tools/bin)"))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|c| c.exists()))
}

async fn helm(env: &Env, args: &[&str]) -> Output {
    let out = tokio::process::Command::new(helm_binary())
        .args(args)
        .env("KUBECONFIG", &env.kubeconfig)
        .env("HELM_CACHE_HOME", env.dir.path().join("helm-cache"))
        .env("HELM_CONFIG_HOME", env.dir.path().join("helm-config"))
        .env("HELM_DATA_HOME", env.dir.path().join("helm-data"))
        .output();
    tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .expect("helm finished")
        .expect("helm ran")
}

async fn helm_ok(env: &Env, args: &[&str]) -> String {
    let out = helm(env, args).await;
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_chart(dir: &Path) {
    let t = dir.join("templates");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: tiny\nversion: 0.1.0\nkubeVersion: '>=1.24.0-0'\n",
    )
    .unwrap();
    std::fs::write(dir.join("values.yaml"), "replicas: 1\ngreeting: hello\n").unwrap();
    std::fs::write(
        t.join("all.yaml"),
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cfg
data:
  greeting: {{ .Values.greeting | quote }}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ .Release.Name }}-sa
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ .Release.Name }}-role
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ .Release.Name }}-rb
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: {{ .Release.Name }}-role}
subjects:
- {kind: ServiceAccount, name: {{ .Release.Name }}-sa, namespace: {{ .Release.Namespace }}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: {{ .Release.Name }}-sa
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-svc
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
"#,
    )
    .unwrap();
}

#[tokio::test]
async fn helm_install_upgrade_uninstall() {
    let env = Env::new().await;
    let chart = env.dir.path().join("tiny");
    write_chart(&chart);
    let chart_s = chart.to_str().unwrap();
    helm_ok(
        &env,
        &[
            "install",
            "demo",
            chart_s,
            "--namespace",
            "helmtest",
            "--create-namespace",
            "--wait",
            "--timeout",
            "60s",
        ],
    )
    .await;
    let list = helm_ok(&env, &["list", "-n", "helmtest", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["status"], "deployed", "{list}");
    assert!(env.sim.get("", "configmaps", "helmtest", "demo-cfg").is_some());
    assert!(env.sim.get("apps", "deployments", "helmtest", "demo-web").is_some());

    helm_ok(
        &env,
        &[
            "upgrade",
            "demo",
            chart_s,
            "--namespace",
            "helmtest",
            "--set",
            "replicas=2",
            "--set",
            "greeting=hi",
            "--wait",
        ],
    )
    .await;
    let d = env.sim.get("apps", "deployments", "helmtest", "demo-web").unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    let cm = env.sim.get("", "configmaps", "helmtest", "demo-cfg").unwrap();
    assert_eq!(cm["data"]["greeting"], "hi");
    let status = helm_ok(&env, &["status", "demo", "-n", "helmtest"]).await;
    assert!(status.contains("REVISION: 2"), "{status}");

    helm_ok(&env, &["uninstall", "demo", "--namespace", "helmtest", "--wait"]).await;
    for (g, r, n) in [
        ("", "configmaps", "demo-cfg"),
        ("apps", "deployments", "demo-web"),
        ("", "services", "demo-svc"),
        ("rbac.authorization.k8s.io", "rolebindings", "demo-rb"),
    ] {
        assert!(
            env.sim.get(g, r, "helmtest", n).is_none(),
            "{r}/{n} left after uninstall"
        );
    }
    let list = helm_ok(&env, &["list", "-n", "helmtest", "-o", "json"]).await;
    assert_eq!(list.trim(), "[]");
}
