#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Conformance of kubesim checked with a client we did not write: the real `kubectl` on the PATH.

mod common;

use std::time::Duration;

use common::{Env, eventually, kubectl_with};
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.io
spec:
  group: example.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Phase, type: string, jsonPath: .status.phase}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
              color: {type: string, enum: [red, blue], default: red}
          status:
            type: object
            properties:
              phase: {type: string}
"#;

#[tokio::test]
async fn version_and_discovery() {
    let env = Env::new().await;
    let v = json(&env.ok(&["version", "-o", "json"]).await);
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.33.1");
    let res = env.ok(&["api-resources"]).await;
    for r in [
        "pods",
        "serviceaccounts",
        "rolebindings",
        "customresourcedefinitions",
        "leases",
        "networkpolicies",
    ] {
        assert!(res.contains(r), "api-resources lacks {r}:\n{res}");
    }
    let ns = env.ok(&["get", "namespaces"]).await;
    assert!(ns.contains("kube-system") && ns.contains("Active"), "{ns}");
}

#[tokio::test]
async fn create_get_list_label_delete() {
    let env = Env::new().await;
    env.ok(&["create", "namespace", "team-a"]).await;
    env.ok(&["-n", "team-a", "create", "configmap", "cfg", "--from-literal=k=v"])
        .await;
    let cm = json(&env.ok(&["-n", "team-a", "get", "configmap", "cfg", "-o", "json"]).await);
    assert_eq!(cm["data"]["k"], "v");
    assert!(cm["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let err = env.fails(&["-n", "team-a", "create", "configmap", "cfg"]).await;
    assert!(err.contains("AlreadyExists") || err.contains("already exists"), "{err}");
    env.ok(&["-n", "team-a", "label", "configmap", "cfg", "tier=web"]).await;
    let sel = env
        .ok(&["-n", "team-a", "get", "cm", "-l", "tier=web", "-o", "name"])
        .await;
    assert_eq!(sel.trim(), "configmap/cfg");
    let none = env
        .ok(&["-n", "team-a", "get", "cm", "-l", "tier=db", "-o", "name"])
        .await;
    assert!(none.trim().is_empty(), "{none}");
    let all = env
        .ok(&["get", "cm", "-A", "--field-selector", "metadata.name=cfg", "-o", "name"])
        .await;
    assert_eq!(all.trim(), "configmap/cfg");
    env.ok(&["-n", "team-a", "delete", "configmap", "cfg"]).await;
    let err = env.fails(&["-n", "team-a", "get", "configmap", "cfg"]).await;
    assert!(err.contains("NotFound") || err.contains("not found"), "{err}");
    let err = env.fails(&["-n", "nowhere", "create", "configmap", "x"]).await;
    assert!(
        err.contains("not found"),
        "creating in a missing namespace must fail: {err}"
    );
}

#[tokio::test]
async fn apply_client_and_server_side() {
    let env = Env::new().await;
    let v1 = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default, labels: {a: '1'}}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - {name: app, image: nginx:1}\n      - {name: side, image: busybox}\n";
    env.ok_stdin(&["apply", "-f", "-"], v1).await;
    let v2 = v1
        .replace("replicas: 1", "replicas: 2")
        .replace("      - {name: side, image: busybox}\n", "");
    let out = env.ok_stdin(&["apply", "-f", "-"], &v2).await;
    assert!(out.contains("configured"), "{out}");
    let d = json(&env.ok(&["get", "deploy", "web", "-o", "json"]).await);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"].as_array().map(|c| c.len()),
        Some(1),
        "client-side apply removes the dropped container"
    );
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(d["status"]["readyReplicas"], 2);

    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: default}\ndata: {a: '1', b: '2'}\n";
    env.ok_stdin(&["apply", "--server-side", "--field-manager=alice", "-f", "-"], cm)
        .await;
    let got = json(
        &env.ok(&["get", "cm", "ssa", "-o", "json", "--show-managed-fields"])
            .await,
    );
    assert_eq!(got["metadata"]["managedFields"][0]["manager"], "alice");
    // Another manager changing a field alice owns conflicts unless forced.
    let bob = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: default}\ndata: {a: 'bob'}\n";
    let err = kubectl_with(
        &env.kubeconfig,
        &["apply", "--server-side", "--field-manager=bob", "-f", "-"],
        Some(bob),
    )
    .await;
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("conflict"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    env.ok_stdin(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=bob",
            "-f",
            "-",
        ],
        bob,
    )
    .await;
    // Alice drops `b` from her configuration: it is removed.
    let alice2 = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: default}\ndata: {}\n";
    env.ok_stdin(&["apply", "--server-side", "--field-manager=alice", "-f", "-"], alice2)
        .await;
    let got = json(&env.ok(&["get", "cm", "ssa", "-o", "json"]).await);
    assert_eq!(got["data"], serde_json::json!({"a": "bob"}));
}

#[tokio::test]
async fn patch_types() {
    let env = Env::new().await;
    env.ok(&["create", "configmap", "p", "--from-literal=a=1"]).await;
    env.ok(&["patch", "cm", "p", "--type", "merge", "-p", r#"{"data":{"b":"2"}}"#])
        .await;
    env.ok(&[
        "patch",
        "cm",
        "p",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/data/a"}]"#,
    ])
    .await;
    env.ok(&["patch", "cm", "p", "-p", r#"{"metadata":{"labels":{"x":"y"}}}"#])
        .await;
    let got = json(&env.ok(&["get", "cm", "p", "-o", "json"]).await);
    assert_eq!(got["data"], serde_json::json!({"b": "2"}));
    assert_eq!(got["metadata"]["labels"]["x"], "y");
    let err = env
        .fails(&[
            "patch",
            "cm",
            "p",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/data/b","value":"9"}]"#,
        ])
        .await;
    assert!(!err.is_empty());
    // A stale resourceVersion is a conflict.
    let err = env
        .fails(&[
            "patch",
            "cm",
            "p",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"resourceVersion":"1"},"data":{"c":"3"}}"#,
        ])
        .await;
    assert!(err.contains("Conflict") || err.contains("modified"), "{err}");
}

#[tokio::test]
async fn custom_resources_with_schema_and_status() {
    let env = Env::new().await;
    env.ok_stdin(&["apply", "-f", "-"], CRD).await;
    env.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.io",
        "--timeout=20s",
    ])
    .await;
    let widget = "apiVersion: example.io/v1\nkind: Widget\nmetadata: {name: w1, namespace: default}\nspec: {size: 3, extra: dropped}\n";
    // kubectl validates strictly on the server by default: unknown fields are refused...
    let strict = kubectl_with(&env.kubeconfig, &["apply", "-f", "-"], Some(widget)).await;
    assert!(
        String::from_utf8_lossy(&strict.stderr).contains("unknown field \"spec.extra\""),
        "{}",
        String::from_utf8_lossy(&strict.stderr)
    );
    // ...and pruned when validation is off.
    env.ok_stdin(&["apply", "--validate=false", "-f", "-"], widget).await;
    let w = json(&env.ok(&["get", "widget", "w1", "-o", "json"]).await);
    assert_eq!(w["spec"]["color"], "red", "default applied");
    assert!(w["spec"].get("extra").is_none(), "unknown field pruned");
    let table = env.ok(&["get", "wg"]).await;
    assert!(
        table.contains("SIZE") && table.contains("w1") && table.contains('3'),
        "{table}"
    );
    let bad = kubectl_with(&env.kubeconfig, &["apply", "-f", "-"], Some("apiVersion: example.io/v1\nkind: Widget\nmetadata: {name: w2, namespace: default}\nspec: {size: 11, color: green}\n")).await;
    assert!(!bad.status.success());
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("spec.size") && msg.contains("spec.color"), "{msg}");
    env.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Ready"}}"#,
    ])
    .await;
    let w = json(&env.ok(&["get", "widget", "w1", "-o", "json"]).await);
    assert_eq!(w["status"]["phase"], "Ready");
    assert_eq!(w["metadata"]["generation"], 1, "status writes do not bump generation");
    // Status written through the main resource is ignored.
    env.ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Hacked"},"spec":{"size":4}}"#,
    ])
    .await;
    let w = json(&env.ok(&["get", "widget", "w1", "-o", "json"]).await);
    assert_eq!(w["status"]["phase"], "Ready");
    assert_eq!(w["metadata"]["generation"], 2);
    env.ok(&["delete", "crd", "widgets.example.io"]).await;
    assert!(
        eventually(Duration::from_secs(5), || env
            .sim
            .get("example.io", "widgets", "default", "w1")
            .is_none())
        .await
    );
}

#[tokio::test]
async fn finalizers_block_deletion_and_gc_removes_dependents() {
    let env = Env::new().await;
    env.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: default, finalizers: [example.io/keep]}\n",
    )
    .await;
    env.ok(&["delete", "cm", "held", "--wait=false"]).await;
    let got = json(&env.ok(&["get", "cm", "held", "-o", "json"]).await);
    assert!(got["metadata"]["deletionTimestamp"].is_string());
    env.ok(&[
        "patch",
        "cm",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .await;
    env.fails(&["get", "cm", "held"]).await;

    env.ok(&["create", "configmap", "owner"]).await;
    let owner = json(&env.ok(&["get", "cm", "owner", "-o", "json"]).await);
    let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
    let dep = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: dep\n  namespace: default\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}}}]\nstringData: {{a: b}}\n"
    );
    env.ok_stdin(&["apply", "-f", "-"], &dep).await;
    env.ok(&["delete", "cm", "owner"]).await;
    assert!(
        eventually(Duration::from_secs(5), || env
            .sim
            .get("", "secrets", "default", "dep")
            .is_none())
        .await,
        "dependent collected"
    );

    env.ok(&["create", "namespace", "doomed"]).await;
    env.ok(&["-n", "doomed", "create", "configmap", "inside"]).await;
    env.ok(&["delete", "namespace", "doomed", "--timeout=20s"]).await;
    assert!(env.sim.get("", "configmaps", "doomed", "inside").is_none());
    env.fails(&["get", "namespace", "doomed"]).await;
}

#[tokio::test]
async fn watch_streams_changes() {
    let env = Env::new().await;
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["get", "configmaps", "--watch", "--output-watch-events"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    env.ok(&["create", "configmap", "seen"]).await;
    env.ok(&["delete", "configmap", "seen"]).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ADDED") && text.contains("seen"), "{text}");
    assert!(text.contains("DELETED"), "{text}");
}

#[tokio::test]
async fn wait_for_delete() {
    let env = Env::new().await;
    env.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w, namespace: default, finalizers: [x.io/f]}\n",
    )
    .await;
    env.ok(&["delete", "cm", "w", "--wait=false"]).await;
    let kc = env.kubeconfig.clone();
    let waiter =
        tokio::spawn(async move { kubectl_with(&kc, &["wait", "--for=delete", "cm/w", "--timeout=20s"], None).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.ok(&[
        "patch",
        "cm",
        "w",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .await;
    let out = waiter.await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn auth_can_i_and_tokens() {
    // The end checks kubesim's own revocation (refused as soon as the ServiceAccount is deleted), so
    // the 10 s authentication cache a real server has (and kubesim by default) is off;
    // tests/token_timing.rs covers the cache.
    let env = Env::with(kubesim::SimBuilder::new().auth_cache_ttl(Duration::ZERO)).await;
    assert_eq!(env.ok(&["auth", "can-i", "delete", "pods", "-A"]).await.trim(), "yes");
    env.ok(&["create", "namespace", "apps"]).await;
    env.ok(&["-n", "apps", "create", "serviceaccount", "bot"]).await;
    let token = env
        .ok(&["-n", "apps", "create", "token", "bot", "--duration=10m"])
        .await
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT");
    let kc = env.kubeconfig_for("bot", &token);
    let no = kubectl_with(&kc, &["auth", "can-i", "get", "pods", "-n", "apps"], None).await;
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    let denied = kubectl_with(&kc, &["get", "pods", "-n", "apps"], None).await;
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    env.ok(&[
        "-n",
        "apps",
        "create",
        "role",
        "reader",
        "--verb=get,list",
        "--resource=pods",
    ])
    .await;
    env.ok(&[
        "-n",
        "apps",
        "create",
        "rolebinding",
        "bot-reader",
        "--role=reader",
        "--serviceaccount=apps:bot",
    ])
    .await;
    let yes = kubectl_with(&kc, &["auth", "can-i", "get", "pods", "-n", "apps"], None).await;
    assert_eq!(String::from_utf8_lossy(&yes.stdout).trim(), "yes");
    // Impersonation: the admin may act as the ServiceAccount; the ServiceAccount may not act as anyone.
    assert_eq!(
        env.ok(&[
            "auth",
            "can-i",
            "get",
            "pods",
            "-n",
            "apps",
            "--as=system:serviceaccount:apps:bot"
        ])
        .await
        .trim(),
        "yes"
    );
    assert_eq!(
        env.kubectl(&["auth", "can-i", "delete", "secrets", "--as=nobody"])
            .await
            .stdout,
        b"no\n"
    );
    let err = kubectl_with(&kc, &["get", "pods", "-n", "apps", "--as=kubesim-admin"], None).await;
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("cannot impersonate"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    let other_ns = kubectl_with(&kc, &["auth", "can-i", "get", "pods", "-n", "default"], None).await;
    assert_eq!(String::from_utf8_lossy(&other_ns.stdout).trim(), "no");
    assert!(
        kubectl_with(&kc, &["get", "pods", "-n", "apps"], None)
            .await
            .status
            .success()
    );
    // Deleting the ServiceAccount invalidates its token at once.
    env.ok(&["-n", "apps", "delete", "serviceaccount", "bot"]).await;
    let gone = kubectl_with(&kc, &["get", "pods", "-n", "apps"], None).await;
    assert!(!gone.status.success());
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(err.contains("Unauthorized") || err.contains("logged in"), "{err}");
    // A token shorter than the API server minimum is refused.
    env.ok(&["-n", "apps", "create", "serviceaccount", "bot2"]).await;
    let err = env
        .fails(&["-n", "apps", "create", "token", "bot2", "--duration=60s"])
        .await;
    assert!(err.contains("10 minutes") || err.contains("expirationSeconds"), "{err}");
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: shell, namespace: default}\nspec:\n  containers:\n  - {name: main, image: debian}\n";
const TWO: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: duo, namespace: default}\nspec:\n  containers:\n  - {name: app, image: debian}\n  - {name: sidecar, image: envoy}\n";

#[tokio::test]
async fn exec_and_logs() {
    let env = Env::new().await;
    env.ok_stdin(&["apply", "-f", "-"], POD).await;
    env.ok_stdin(&["apply", "-f", "-"], TWO).await;
    env.ok(&["wait", "--for=condition=Ready", "pod/shell", "--timeout=20s"])
        .await;
    let out = env.ok(&["exec", "shell", "--", "echo", "hello"]).await;
    assert_eq!(out.trim(), "hello");
    let code = env.kubectl(&["exec", "shell", "--", "sh", "-c", "exit 3"]).await;
    assert_eq!(
        code.status.code(),
        Some(3),
        "exit code travels back: {}",
        String::from_utf8_lossy(&code.stderr)
    );
    let piped = env
        .ok_stdin(&["exec", "-i", "shell", "--", "cat"], "from stdin\n")
        .await;
    assert_eq!(piped, "from stdin\n");
    // kubectl picks the first container itself and says so.
    let defaulted = env.kubectl(&["exec", "duo", "--", "true"]).await;
    assert!(defaulted.status.success());
    assert!(String::from_utf8_lossy(&defaulted.stderr).contains("Defaulted container \"app\""));
    let out = env
        .ok(&["exec", "duo", "-c", "sidecar", "--", "sh", "-c", "echo $HOSTNAME"])
        .await;
    assert_eq!(out.trim(), "duo");

    env.sim.cluster.logs.append("default", "shell", "main", "first line");
    env.sim.cluster.logs.append("default", "shell", "main", "second line");
    let logs = env.ok(&["logs", "shell"]).await;
    assert_eq!(logs, "first line\nsecond line\n");
    let tail = env.ok(&["logs", "shell", "--tail=1"]).await;
    assert_eq!(tail, "second line\n");
    let mut follow = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["logs", "-f", "shell"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    env.sim.cluster.logs.append("default", "shell", "main", "live line");
    tokio::time::sleep(Duration::from_millis(700)).await;
    follow.start_kill().unwrap();
    let out = follow.wait_with_output().await.unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("live line"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn exec_with_a_terminal() {
    let env = Env::new().await;
    env.ok_stdin(&["apply", "-f", "-"], POD).await;
    // `script` gives kubectl a real terminal, so `-it` negotiates a TTY and sends the window size.
    let cmd = format!(
        "stty cols 99 rows 33; kubectl --kubeconfig {} exec -it shell -- sh -c 'tty >/dev/null && echo TTY-OK; stty size'",
        env.kubeconfig.display()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TTY-OK"), "{text}");
    assert!(text.contains("33 99"), "terminal size travels: {text}");
}
