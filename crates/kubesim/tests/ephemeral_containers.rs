#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Ephemeral containers and attach (issue 16): the `pods/ephemeralcontainers` subresource as
//! kube-apiserver serves it (pkg/registry/core/pod/storage/storage.go EphemeralContainersREST,
//! pkg/apis/core/validation/validation.go ValidatePodEphemeralContainersUpdate), the simulated
//! kubelet running what was added, `pods/attach`, and the real `kubectl debug -it`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Env, eventually, kubectl_with};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PODS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  containers: [{name: app, image: nginx:1.27}]
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: default, labels: {app: other}}
spec:
  containers: [{name: app, image: nginx:1.27}]
";

/// A raw request through kube's client with a given content type: status code and JSON body.
async fn raw(client: &kube::Client, method: &str, path: &str, content_type: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    let bytes = match body {
        Some(b) => {
            req = req.header("content-type", content_type);
            serde_json::to_vec(&b).unwrap()
        }
        None => Vec::new(),
    };
    let resp = client
        .send(req.body(kube::client::Body::from(bytes)).unwrap())
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const SMP: &str = "application/strategic-merge-patch+json";
const EC_PATH: &str = "/api/v1/namespaces/default/pods/web/ephemeralcontainers";

fn pod_of(env: &Env, name: &str) -> Value {
    env.sim.get("", "pods", "default", name).unwrap()
}

fn ec_status(pod: &Value, name: &str) -> Value {
    pod["status"]["ephemeralContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn subresource_adds_validates_and_runs_ephemeral_containers() {
    let env = Env::new().await;
    env.seed(PODS);
    let client = env.sim.client().await.unwrap();

    // Discovery lists both subresources with upstream's verbs.
    let (_, v1) = raw(&client, "GET", "/api/v1", "", None).await;
    let res = |n: &str| {
        v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        res("pods/ephemeralcontainers")["verbs"],
        json!(["get", "patch", "update"])
    );
    assert_eq!(res("pods/attach")["verbs"], json!(["create", "get"]));

    // GET of the subresource is the pod.
    let (code, got) = raw(&client, "GET", EC_PATH, "", None).await;
    assert_eq!((code, got["kind"].clone()), (200, json!("Pod")), "{got}");

    // Add one by strategic merge patch, as kubectl debug does; other changes in the body are dropped.
    let (code, out) = raw(
        &client,
        "PATCH",
        EC_PATH,
        SMP,
        Some(
            json!({"metadata": {"labels": {"sneaky": "yes"}}, "spec": {"ephemeralContainers": [{
                "name": "dbg", "image": "busybox:1.36", "targetContainerName": "app",
                "command": ["sh", "-c", "echo from-debug; sleep 60"], "resources": {}
            }]}}),
        ),
    )
    .await;
    assert_eq!(code, 200, "{out}");
    assert!(
        out["metadata"]["labels"]["sneaky"].is_null(),
        "only ephemeral containers change: {out}"
    );
    let ec = &out["spec"]["ephemeralContainers"][0];
    assert_eq!(ec["terminationMessagePolicy"], "File");
    assert_eq!(ec["imagePullPolicy"], "IfNotPresent");

    // The kubelet starts it promptly; its output is its log; exec works in it.
    assert!(
        eventually(Duration::from_secs(5), || {
            ec_status(&pod_of(&env, "web"), "dbg")["state"]["running"].is_object()
        })
        .await,
        "{}",
        pod_of(&env, "web")["status"]
    );
    let st = ec_status(&pod_of(&env, "web"), "dbg");
    assert_eq!(st["ready"], false);
    assert_eq!(st["image"], "busybox:1.36");
    assert!(
        eventually(Duration::from_secs(5), || {
            env.sim
                .cluster
                .logs
                .lines("default", "web", "dbg")
                .iter()
                .any(|l| l.text == "from-debug")
        })
        .await
    );
    assert_eq!(env.ok(&["logs", "web", "-c", "dbg"]).await, "from-debug\n");
    assert_eq!(
        env.ok(&["exec", "web", "-c", "dbg", "--", "echo", "in-dbg"]).await,
        "in-dbg\n"
    );

    // Existing ones may not change or go; a change through a plain pod update is refused as well.
    let mut changed = pod_of(&env, "web");
    changed["spec"]["ephemeralContainers"][0]["image"] = json!("busybox:1.37");
    let (code, err) = raw(&client, "PUT", EC_PATH, "application/json", Some(changed)).await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("Pod \"web\" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be changed"),
        "{err}"
    );
    let (code, err) = raw(
        &client,
        "PATCH",
        EC_PATH,
        "application/json-patch+json",
        Some(json!([{"op": "remove", "path": "/spec/ephemeralContainers/0"}])),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert_eq!(
        err["message"],
        "Pod \"web\" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be removed\n"
    );
    let (code, err) = raw(
        &client,
        "PATCH",
        "/api/v1/namespaces/default/pods/web",
        SMP,
        Some(json!({"spec": {"ephemeralContainers": [{"name": "sneak", "image": "busybox"}]}})),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("spec: Forbidden: pod updates may not change fields"),
        "{err}"
    );

    // New ones are validated like upstream: unique names, an image, a real target, allowed fields.
    let (code, err) = raw(
        &client,
        "PATCH",
        EC_PATH,
        "application/merge-patch+json",
        Some(json!({"spec": {"ephemeralContainers": [
            out["spec"]["ephemeralContainers"][0].clone(),
            {"name": "app", "image": "busybox"},
            {"name": "noimage"},
            {"name": "lost", "image": "busybox", "targetContainerName": "nope"},
            {"name": "porty", "image": "busybox", "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}}},
        ]}})),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    let msg = err["message"].as_str().unwrap();
    for want in [
        "spec.ephemeralContainers[1].name: Duplicate value: \"app\"",
        "spec.ephemeralContainers[2].image: Required value",
        "spec.ephemeralContainers[3].targetContainerName: Not found: \"nope\"",
        "spec.ephemeralContainers[4].ports: Forbidden: cannot be set for an Ephemeral Container",
        "spec.ephemeralContainers[4].resources: Forbidden: cannot be set for an Ephemeral Container",
    ] {
        assert!(msg.contains(want), "{want} in {msg}");
    }
    // A pod cannot be created with them.
    let (code, err) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        Some(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}], "ephemeralContainers": [{"name": "e", "image": "x"}]}})),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("spec.ephemeralContainers: Forbidden: cannot be set on create")
    );

    // Deleting the pod ends the container's processes.
    assert!(env.sim.cluster.kubelet.active_processes("default", "web") > 0);
    env.ok(&["delete", "pod", "web", "--wait=true"]).await;
    assert!(
        eventually(Duration::from_secs(5), || env
            .sim
            .cluster
            .kubelet
            .active_processes("default", "web")
            == 0)
        .await
    );
}

#[tokio::test]
async fn ephemeral_container_exit_is_reported_with_its_code() {
    let env = Env::new().await;
    env.seed(PODS);
    let client = env.sim.client().await.unwrap();
    let (code, out) = raw(
        &client,
        "PATCH",
        EC_PATH,
        SMP,
        Some(json!({"spec": {"ephemeralContainers": [{"name": "quick", "image": "busybox", "command": ["sh", "-c", "echo bye; exit 3"]}]}})),
    )
    .await;
    assert_eq!(code, 200, "{out}");
    assert!(
        eventually(Duration::from_secs(5), || {
            ec_status(&pod_of(&env, "web"), "quick")["state"]["terminated"].is_object()
        })
        .await
    );
    let t = ec_status(&pod_of(&env, "web"), "quick")["state"]["terminated"].clone();
    assert_eq!(
        (t["exitCode"].clone(), t["reason"].clone()),
        (json!(3), json!("Error")),
        "{t}"
    );
    assert_eq!(env.ok(&["logs", "web", "-c", "quick"]).await, "bye\n");
}

/// Runs `script` around a command so kubectl gets a real terminal, with our pipe as its keyboard.
struct Terminal {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    out: Arc<Mutex<String>>,
}

impl Terminal {
    fn start(cmd: &str) -> Self {
        let mut child = tokio::process::Command::new("script")
            .args(["-qefc", cmd, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("script(1) on PATH");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self { child, stdin, out }
    }

    fn text(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    async fn wait_for(&self, what: &str) {
        let ok = eventually(Duration::from_secs(30), || self.text().contains(what)).await;
        assert!(ok, "waited for {what:?}; the terminal shows:\n{}", self.text());
    }

    async fn type_line(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\r").as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }
}

#[tokio::test]
async fn kubectl_debug_it_attaches_to_a_shell() {
    let env = Env::new().await;
    env.seed(PODS);
    let version = env.ok(&["version", "--client"]).await;
    let mut term = Terminal::start(&format!(
        "kubectl --kubeconfig {} debug -it web --image=busybox:1.36 --target=app -- sh",
        env.kubeconfig.display()
    ));
    term.wait_for("Defaulting debug container name to debugger-").await;
    term.wait_for("If you don't see a command prompt").await;
    term.type_line("echo typed-$((6*7))").await;
    term.wait_for("typed-42").await;
    term.type_line("exit").await;
    let status = tokio::time::timeout(Duration::from_secs(30), term.child.wait())
        .await
        .unwrap()
        .unwrap();
    let text = term.text();
    assert!(
        status.success(),
        "kubectl debug ({version}) ended with {status}:\n{text}"
    );
    assert!(
        !text.contains("falling back to streaming logs"),
        "attach really worked:\n{text}"
    );

    // The container is recorded as kubectl asked for it, and its session is its log.
    let pod = pod_of(&env, "web");
    let ec = pod["spec"]["ephemeralContainers"][0].clone();
    let name = ec["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("debugger-"), "{ec}");
    assert_eq!(
        (ec["image"].clone(), ec["targetContainerName"].clone()),
        (json!("busybox:1.36"), json!("app"))
    );
    assert_eq!((ec["stdin"].clone(), ec["tty"].clone()), (json!(true), json!(true)));
    assert!(
        eventually(Duration::from_secs(5), || {
            ec_status(&pod_of(&env, "web"), &name)["state"]["terminated"]["exitCode"] == 0
        })
        .await,
        "{}",
        pod_of(&env, "web")["status"]
    );
    let logs = env.ok(&["logs", "web", "-c", &name]).await;
    assert!(logs.contains("typed-42"), "{logs}");
}

/// A ServiceAccount `dev` whose Role allows what the rules say; its kubeconfig.
async fn dev_with(env: &Env, rules: &str) -> std::path::PathBuf {
    env.seed(&format!(
        "
apiVersion: v1
kind: ServiceAccount
metadata: {{name: dev, namespace: default}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: dev, namespace: default}}
rules: {rules}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: dev, namespace: default}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: dev}}
subjects: [{{kind: ServiceAccount, name: dev, namespace: default}}]
"
    ));
    let token = env.ok(&["create", "token", "dev"]).await.trim().to_string();
    env.kubeconfig_for("dev", &token)
}

#[tokio::test]
async fn ephemeral_containers_rbac_honours_resource_names_and_attach_needs_its_own_rule() {
    let env = Env::new().await;
    env.seed(PODS);
    let kc = dev_with(
        &env,
        r#"[{apiGroups: [""], resources: [pods], verbs: [get, list, watch]},
            {apiGroups: [""], resources: [pods/ephemeralcontainers], verbs: [get, patch, update], resourceNames: [web]}]"#,
    )
    .await;
    // Pod A (web): allowed, and kubectl debug without -i only adds the container.
    let ok = kubectl_with(
        &kc,
        &[
            "debug",
            "web",
            "--image=busybox:1.36",
            "--target=app",
            "--",
            "sleep",
            "60",
        ],
        None,
    )
    .await;
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // Pod B (other): refused with upstream's message.
    let no = kubectl_with(&kc, &["debug", "other", "--image=busybox:1.36", "--", "true"], None).await;
    let err = String::from_utf8_lossy(&no.stderr);
    assert!(!no.status.success());
    assert!(
        err.contains(
            "pods \"other\" is forbidden: User \"system:serviceaccount:default:dev\" cannot patch resource \"pods/ephemeralcontainers\" in API group \"\" in the namespace \"default\""
        ),
        "{err}"
    );
    assert!(pod_of(&env, "other")["spec"]["ephemeralContainers"].is_null());
    // Without pods/attach the running debug container cannot be attached to.
    let name = pod_of(&env, "web")["spec"]["ephemeralContainers"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        eventually(Duration::from_secs(5), || {
            ec_status(&pod_of(&env, "web"), &name)["state"]["running"].is_object()
        })
        .await
    );
    let no = kubectl_with(&kc, &["attach", "web", "-c", &name], None).await;
    let err = String::from_utf8_lossy(&no.stderr);
    assert!(!no.status.success());
    assert!(
        err.contains("cannot")
            && err.contains("resource \"pods/attach\" in API group \"\" in the namespace \"default\""),
        "{err}"
    );
}

#[tokio::test]
async fn kube_rs_attach_without_a_terminal_and_to_a_regular_container() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, AttachParams};
    let env = Env::new().await;
    env.seed(PODS);
    let client = env.sim.client().await.unwrap();
    let (code, out) = raw(
        &client,
        "PATCH",
        EC_PATH,
        SMP,
        Some(json!({"spec": {"ephemeralContainers": [{"name": "piped", "image": "busybox", "command": ["sh"], "stdin": true}]}})),
    )
    .await;
    assert_eq!(code, 200, "{out}");
    assert!(
        eventually(Duration::from_secs(5), || {
            ec_status(&pod_of(&env, "web"), "piped")["state"]["running"].is_object()
        })
        .await
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // A pipe, not a terminal: what goes to stdin is the shell's script.
    let mut attached = pods
        .attach(
            "web",
            &AttachParams::default().container("piped").stdin(true).stderr(false),
        )
        .await
        .unwrap();
    let mut stdin = attached.stdin().unwrap();
    let mut stdout = attached.stdout().unwrap();
    let status = attached.take_status().unwrap();
    stdin.write_all(b"echo via-$((40+2))\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&got).contains("via-42") {
        let n = tokio::time::timeout(Duration::from_secs(5), stdout.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "output ended early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    // The session ends with the process: `exit 0` ends the container, and the attach with it.
    stdin.write_all(b"exit 0\n").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), status)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"), "{status:?}");
    tokio::time::timeout(Duration::from_secs(10), attached.join())
        .await
        .unwrap()
        .unwrap();
    assert!(
        eventually(
            Duration::from_secs(5),
            || ec_status(&pod_of(&env, "web"), "piped")["state"]["terminated"]["exitCode"] == 0
        )
        .await
    );
    // Attaching to an ended container is refused; a regular container streams its new output.
    let err = pods
        .attach("web", &AttachParams::default().container("piped").stdin(false))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(!err.is_empty(), "attach to a terminated container must fail");
    let mut app = pods
        .attach(
            "web",
            &AttachParams::default().container("app").stdin(false).stderr(false),
        )
        .await
        .unwrap();
    let mut out = app.stdout().unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("GET /healthz") {
        env.sim.cluster.logs.append("default", "web", "app", "GET /healthz 200");
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), out.read(&mut buf)).await {
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
    }
    app.abort();
}
