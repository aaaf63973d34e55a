//! Access roles and pod scopes (issue 16), end to end against kubesim with the chart's RBAC, the
//! controller running as the chart's controller ServiceAccount, and the REAL kubectl using the
//! request's own token: what the API server allows is what is proven, not what the UI shows.
//!
//! - role `logs`: logs and events readable, exec refused;
//! - a role the configuration does not list: Denied; a role whose ClusterRole is missing on the
//!   target: Failed with a message naming role, ClusterRole and cluster;
//! - a selector scope: exec into matching pods only; the Role follows labels and deletions (the
//!   promise is 1 s, asserted with 5 s; the bench measures the lag);
//! - a workload scope (Deployment): scaled up and down, the Role follows; a missing one is Denied;
//! - expiry and revocation remove Role, RoleBinding, ServiceAccount and Secret; the token is refused;
//! - a controller restart: the watch resumes, and a Role edited meanwhile is reset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kubesim::RunningSim;
use serde_json::{Value, json};

/// A kubeconfig for `token` on `sim`, written to a temporary file kubectl reads.
fn kubeconfig(sim: &RunningSim, token: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), sim.kubeconfig_for_token(token)).expect("kubeconfig");
    file
}

/// Runs the real kubectl with `kubeconfig`: (exit code, stdout, stderr).
async fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl on PATH");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl finished in 60s")
        .expect("kubectl ran");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kubectl exec` into `pod` in `ns` succeeds and prints what it ran.
async fn assert_exec_works(kc: &std::path::Path, ns: &str, pod: &str) {
    let (code, out, err) = kubectl(kc, &["-n", ns, "exec", pod, "--", "echo", "in-scope"]).await;
    assert_eq!((code, out.trim()), (0, "in-scope"), "exec into {ns}/{pod}: {err}");
}

/// `kubectl exec` into `pod` in `ns` is refused by the API server (exit code and "forbidden").
async fn assert_exec_forbidden(kc: &std::path::Path, ns: &str, pod: &str) {
    let (code, out, err) = kubectl(kc, &["-n", ns, "exec", pod, "--", "echo", "in-scope"]).await;
    assert_ne!(code, 0, "exec into {ns}/{pod} must be refused: {out}");
    assert!(err.to_lowercase().contains("forbidden"), "exec into {ns}/{pod}: {err}");
}

/// The request's token for `ns` (from its token Secret).
async fn token_for(sim: &RunningSim, request: &str, ns: &str) -> String {
    tokens(sim, request)
        .await
        .into_iter()
        .find(|(n, _)| n == ns)
        .map(|(_, t)| t)
        .expect("a token Secret for the namespace")
}

/// A pod-scoped request: `scope` is the podScope value.
fn scoped_request(
    name: &str,
    namespaces: &[&str],
    ttl: i64,
    role: Option<&str>,
    scope: Option<Value>,
) -> janus_api::AccessRequest {
    let mut ar = request(name, "central", namespaces, ttl);
    ar.spec.role = role.map(str::to_string);
    ar.spec.pod_scope = scope.map(|s| serde_json::from_value(s).expect("podScope"));
    ar
}

async fn create_pod(sim: &RunningSim, ns: &str, name: &str, labels: Value) {
    let pods: Api<Pod> = Api::namespaced(sim.admin().await, ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "debian"}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create pod");
}

async fn label_pod(sim: &RunningSim, ns: &str, name: &str, labels: Value) {
    let pods: Api<Pod> = Api::namespaced(sim.admin().await, ns);
    pods.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": labels}})),
    )
    .await
    .expect("label pod");
}

async fn delete_pod(sim: &RunningSim, ns: &str, name: &str) {
    let pods: Api<Pod> = Api::namespaced(sim.admin().await, ns);
    pods.delete(name, &DeleteParams::default()).await.expect("delete pod");
}

/// The pods the scoped Role names for exec (`pods/exec` resourceNames); `None` when there is no Role.
async fn role_pods(sim: &RunningSim, ns: &str, role: &str) -> Option<BTreeSet<String>> {
    let roles: Api<Role> = Api::namespaced(sim.admin().await, ns);
    let r = roles.get_opt(role).await.expect("get role")?;
    Some(
        r.rules
            .unwrap_or_default()
            .iter()
            .filter(|rule| rule.resources.iter().flatten().any(|res| res == "pods/exec"))
            .flat_map(|rule| rule.resource_names.clone().unwrap_or_default())
            .collect(),
    )
}

/// Waits until the Role names exactly `want` (the promise is 1 s; asserted with 5 s).
async fn wait_role_pods(sim: &RunningSim, ns: &str, role: &str, want: &[&str]) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let have = role_pods(sim, ns, role).await;
        if have.as_ref() == Some(&want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Role {ns}/{role} should name {want:?} within 5 s; it names {have:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn condition_reason(ar: &janus_api::AccessRequest, type_: &str) -> String {
    ar.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

fn message(ar: &janus_api::AccessRequest) -> String {
    ar.status.as_ref().map(|s| s.message.clone()).unwrap_or_default()
}

#[tokio::test]
async fn logs_role_reads_logs_and_events_and_is_refused_exec() {
    let sim = central().await;
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &scoped_request("reader", &["team-a"], 600, Some("logs"), None)).await;
    approve(&sim, "reader").await;
    let active = wait_phase(&sim, "reader", "Active", 10).await;
    let grant = &active.status.as_ref().unwrap().grants[0];
    assert_eq!(grant.scoped_role, None, "no pod scope, no Role");
    let rb: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(sim.admin().await, "team-a");
    let rb = rb.get(&grant.role_binding).await.unwrap();
    assert_eq!(
        (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
        ("ClusterRole", "janus-pod-logs")
    );

    let kc = kubeconfig(&sim, &token_for(&sim, "reader", "team-a").await);
    sim.cluster
        .logs
        .append("team-a", "app", "main", "a line for the reader");
    let (code, out, err) = kubectl(kc.path(), &["-n", "team-a", "logs", "app"]).await;
    assert_eq!(code, 0, "kubectl logs: {err}");
    assert!(out.contains("a line for the reader"), "{out}");
    let (code, _, err) = kubectl(kc.path(), &["-n", "team-a", "get", "events"]).await;
    assert_eq!(code, 0, "kubectl get events: {err}");
    assert_exec_forbidden(kc.path(), "team-a", "app").await;
    // Nothing outside the granted namespace either.
    let (code, _, err) = kubectl(kc.path(), &["-n", "team-b", "logs", "app"]).await;
    assert_ne!(code, 0);
    assert!(err.to_lowercase().contains("forbidden"), "{err}");
}

#[tokio::test]
async fn a_role_the_configuration_does_not_list_is_denied() {
    let sim = central().await;
    let _ctl = Controller::start(&sim, config("")).await;
    create(
        &sim,
        &scoped_request("admin-please", &["team-a"], 600, Some("cluster-admin"), None),
    )
    .await;
    let denied = wait_phase(&sim, "admin-please", "Denied", 10).await;
    assert_eq!(condition_reason(&denied, "Denied"), "ValidationFailed");
    assert!(
        message(&denied).contains("role \"cluster-admin\" is not configured"),
        "{}",
        message(&denied)
    );
    assert!(leftovers(&sim, &sim, "admin-please").await.is_empty());
}

#[tokio::test]
async fn a_role_whose_cluster_role_is_missing_on_the_target_fails_with_a_clear_message() {
    let sim = central().await;
    // The cluster lacks janus-pod-logs (an agent or chart from before access roles).
    let crs: Api<ClusterRole> = Api::all(sim.admin().await);
    crs.delete("janus-pod-logs", &DeleteParams::default())
        .await
        .expect("delete");
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &scoped_request("old-agent", &["team-a"], 600, Some("logs"), None)).await;
    approve(&sim, "old-agent").await;
    let failed = wait_phase(&sim, "old-agent", "Failed", 10).await;
    assert_eq!(
        message(&failed),
        "ClusterRole janus-pod-logs (role logs) does not exist on cluster central: install or upgrade the k8s-janus chart/agent there"
    );
    assert!(leftovers(&sim, &sim, "old-agent").await.is_empty());
}

#[tokio::test]
async fn a_selector_scope_reaches_matching_pods_only_and_follows_labels() {
    let sim = central().await;
    create_pod(&sim, "team-a", "web-1", json!({"app": "web"})).await;
    create_pod(&sim, "team-a", "db-1", json!({"app": "db"})).await;
    let _ctl = Controller::start(&sim, config("")).await;
    let scope = json!({"selector": {"matchLabels": {"app": "web"}}});
    create(&sim, &scoped_request("webonly", &["team-a"], 600, None, Some(scope))).await;
    approve(&sim, "webonly").await;
    let active = wait_phase(&sim, "webonly", "Active", 10).await;
    let grant = active.status.as_ref().unwrap().grants[0].clone();
    let role = grant.scoped_role.clone().expect("a scoped Role");
    assert_eq!(role, grant.role_binding, "named like the grant");
    assert_eq!(grant.pod_selector.as_deref(), Some("app=web"));
    let rb: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(sim.admin().await, "team-a");
    let rb = rb.get(&grant.role_binding).await.unwrap();
    assert_eq!(
        (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
        ("Role", role.as_str())
    );
    assert_eq!(
        role_pods(&sim, "team-a", &role).await,
        Some(BTreeSet::from(["web-1".to_string()]))
    );

    let kc = kubeconfig(&sim, &token_for(&sim, "webonly", "team-a").await);
    assert_exec_works(kc.path(), "team-a", "web-1").await;
    assert_exec_forbidden(kc.path(), "team-a", "db-1").await;
    assert_exec_forbidden(kc.path(), "team-a", "app").await;
    // Listing stays collection-wide (the terminal lists with the selector to show those in scope).
    let (code, out, err) = kubectl(
        kc.path(),
        &["-n", "team-a", "get", "pods", "-l", "app=web", "-o", "name"],
    )
    .await;
    assert_eq!((code, out.trim()), (0, "pod/web-1"), "{err}");

    // A pod that starts matching becomes reachable...
    label_pod(&sim, "team-a", "app", json!({"app": "web"})).await;
    wait_role_pods(&sim, "team-a", &role, &["app", "web-1"]).await;
    assert_exec_works(kc.path(), "team-a", "app").await;
    // ...and one that stops matching is out again.
    label_pod(&sim, "team-a", "app", json!({"app": null})).await;
    wait_role_pods(&sim, "team-a", &role, &["web-1"]).await;
    assert_exec_forbidden(kc.path(), "team-a", "app").await;
    // A new matching pod is in; a deleted one is out; with none left, no pod is reachable (never an
    // empty resourceNames, which would mean every pod).
    create_pod(&sim, "team-a", "web-2", json!({"app": "web"})).await;
    wait_role_pods(&sim, "team-a", &role, &["web-1", "web-2"]).await;
    assert_exec_works(kc.path(), "team-a", "web-2").await;
    delete_pod(&sim, "team-a", "web-1").await;
    delete_pod(&sim, "team-a", "web-2").await;
    wait_role_pods(&sim, "team-a", &role, &[]).await;
    assert_exec_forbidden(kc.path(), "team-a", "db-1").await;
}

/// Scales the Deployment `name` to `n` replicas and waits (up to 10 s) until kubesim's workload
/// controller runs exactly that many pods with the Deployment's labels (`selector`); returns their names.
async fn scale(sim: &RunningSim, ns: &str, name: &str, selector: &str, n: usize) -> Vec<String> {
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(sim.admin().await, ns);
    deploys
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": n}})),
        )
        .await
        .expect("scale");
    let pods: Api<Pod> = Api::namespaced(sim.admin().await, ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut live: Vec<String> = pods
            .list(&kube::api::ListParams::default().labels(selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.name)
            .collect();
        if live.len() == n {
            live.sort();
            return live;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deployment {ns}/{name}: {n} pods wanted, {live:?} running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_workload_scope_follows_the_deployment_and_a_missing_one_is_denied() {
    // kubesim's workload controller runs the Deployment's pods, as kube-controller-manager would.
    let sim = central_from(kubesim::SimBuilder::new().workload_pods(true)).await;
    let labels = "app=payments";
    sim.load_seed(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: payments-api, namespace: team-a}
spec:
  replicas: 0
  selector: {matchLabels: {app: payments}}
  template:
    metadata: {labels: {app: payments}}
    spec: {containers: [{name: main, image: debian}]}
"#,
    )
    .expect("deployment");
    let _ctl = Controller::start(&sim, config("")).await;

    let missing = json!({"workload": {"kind": "Deployment", "name": "payments-apx"}});
    create(&sim, &scoped_request("typo", &["team-a"], 600, None, Some(missing))).await;
    let denied = wait_phase(&sim, "typo", "Denied", 10).await;
    assert_eq!(condition_reason(&denied, "Denied"), "ValidationFailed");
    assert_eq!(
        message(&denied),
        "deployment payments-apx does not exist in namespace team-a on cluster central"
    );

    let first = scale(&sim, "team-a", "payments-api", labels, 1).await;
    let scope = json!({"workload": {"kind": "Deployment", "name": "payments-api"}});
    create(&sim, &scoped_request("payments", &["team-a"], 600, None, Some(scope))).await;
    approve(&sim, "payments").await;
    let active = wait_phase(&sim, "payments", "Active", 10).await;
    let grant = active.status.as_ref().unwrap().grants[0].clone();
    assert_eq!(grant.pod_selector.as_deref(), Some("app=payments"));
    let role = grant.scoped_role.clone().expect("scoped Role");
    wait_role_pods(&sim, "team-a", &role, &names(&first)).await;
    let kc = kubeconfig(&sim, &token_for(&sim, "payments", "team-a").await);
    assert_exec_works(kc.path(), "team-a", &first[0]).await;
    assert_exec_forbidden(kc.path(), "team-a", "app").await;

    let up = scale(&sim, "team-a", "payments-api", labels, 3).await;
    wait_role_pods(&sim, "team-a", &role, &names(&up)).await;
    for pod in &up {
        assert_exec_works(kc.path(), "team-a", pod).await;
    }
    let down = scale(&sim, "team-a", "payments-api", labels, 1).await;
    wait_role_pods(&sim, "team-a", &role, &names(&down)).await;
    for gone in up.iter().filter(|p| !down.contains(p)) {
        assert!(!role_pods(&sim, "team-a", &role).await.unwrap().contains(gone));
    }
}

#[tokio::test]
async fn expiry_and_revocation_remove_the_scoped_role_with_everything_else() {
    let sim = central().await;
    create_pod(&sim, "team-a", "web-1", json!({"app": "web"})).await;
    let _ctl = Controller::start(&sim, config("")).await;
    let scope = || Some(json!({"selector": {"matchLabels": {"app": "web"}}}));
    create(&sim, &scoped_request("short", &["team-a"], 3, None, scope())).await;
    create(
        &sim,
        &scoped_request("revoked", &["team-a"], 600, Some("logs"), scope()),
    )
    .await;
    approve(&sim, "short").await;
    approve(&sim, "revoked").await;
    wait_phase(&sim, "short", "Active", 10).await;
    wait_phase(&sim, "revoked", "Active", 10).await;
    let short = token_for(&sim, "short", "team-a").await;
    let revoked = token_for(&sim, "revoked", "team-a").await;
    let roles = |r: &str| {
        let r = r.to_string();
        let sim = &sim;
        async move {
            let lp = kube::api::ListParams::default().labels(&format!("{}={r}", janus_api::REQUEST_LABEL));
            Api::<Role>::all(sim.admin().await).list(&lp).await.unwrap().items.len()
        }
    };
    assert_eq!(roles("short").await, 1);
    assert_eq!(roles("revoked").await, 1);

    decide(
        &sim,
        "revoked",
        "revocation",
        json!({"by": "admin@example.com", "at": now(), "reason": "done"}),
    )
    .await;
    wait_phase(&sim, "revoked", "Revoked", 10).await;
    wait_phase(&sim, "short", "Expired", 10).await;
    for (name, token) in [("short", &short), ("revoked", &revoked)] {
        assert!(
            leftovers(&sim, &sim, name).await.is_empty(),
            "{name}: {:?}",
            leftovers(&sim, &sim, name).await
        );
        assert_eq!(roles(name).await, 0, "{name}: the scoped Role is gone");
        assert_token_dead(&sim, "team-a", token).await;
    }
}

#[tokio::test]
async fn after_a_controller_restart_the_watch_resumes_and_an_edited_role_is_reset() {
    let sim = central().await;
    create_pod(&sim, "team-a", "web-1", json!({"app": "web"})).await;
    let ctl = Controller::start(&sim, config("")).await;
    let scope = json!({"selector": {"matchLabels": {"app": "web"}}});
    create(&sim, &scoped_request("lasting", &["team-a"], 600, None, Some(scope))).await;
    approve(&sim, "lasting").await;
    let active = wait_phase(&sim, "lasting", "Active", 10).await;
    let role = active.status.as_ref().unwrap().grants[0].scoped_role.clone().unwrap();
    wait_role_pods(&sim, "team-a", &role, &["web-1"]).await;
    ctl.stop().await;

    // While no controller runs: someone widens the Role, and a pod starts matching.
    let roles: Api<Role> = Api::namespaced(sim.admin().await, "team-a");
    let mut edited = roles.get(&role).await.unwrap();
    for rule in edited.rules.iter_mut().flatten() {
        if let Some(names) = rule.resource_names.as_mut() {
            names.push("db-1".into());
        }
    }
    roles.replace(&role, &PostParams::default(), &edited).await.unwrap();
    create_pod(&sim, "team-a", "web-2", json!({"app": "web"})).await;

    let _ctl = Controller::start(&sim, config("")).await;
    wait_role_pods(&sim, "team-a", &role, &["web-1", "web-2"]).await;
    // The watch runs again: a later change is followed too.
    create_pod(&sim, "team-a", "web-3", json!({"app": "web"})).await;
    wait_role_pods(&sim, "team-a", &role, &["web-1", "web-2", "web-3"]).await;
    delete_pod(&sim, "team-a", "web-1").await;
    wait_role_pods(&sim, "team-a", &role, &["web-2", "web-3"]).await;
}

/// On a cluster whose CRD lacks the CEL rules, an admin can change `spec.role` or `spec.podScope`
/// after approval; the controller's baseline (`status.approved`, role and scope recorded) ends the
/// request and removes the scoped Role with the rest.
#[tokio::test]
async fn role_or_scope_changed_after_approval_fails_the_request() {
    let sim = central_without_cel().await;
    create_pod(&sim, "team-a", "web-1", json!({"app": "web"})).await;
    let _ctl = Controller::start(&sim, config("")).await;
    let api: Api<janus_api::AccessRequest> = Api::all(sim.admin().await);
    let cases = [
        (
            "widen-role",
            Some("logs"),
            json!({"spec": {"role": "exec"}}),
            "spec.role",
        ),
        (
            "widen-scope",
            None,
            json!({"spec": {"podScope": {"selector": {"matchLabels": {"app": "db"}}}}}),
            "spec.podScope",
        ),
    ];
    for (name, role, patch, field) in cases {
        let scope = Some(json!({"selector": {"matchLabels": {"app": "web"}}}));
        create(&sim, &scoped_request(name, &["team-a"], 600, role, scope)).await;
        approve(&sim, name).await;
        wait_phase(&sim, name, "Active", 10).await;
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("no CEL rule stops the change");
        let failed = wait_phase(&sim, name, "Failed", 10).await;
        assert_eq!(condition_reason(&failed, "Failed"), "SpecChangedAfterApproval");
        assert!(message(&failed).contains(field), "{name}: {}", message(&failed));
        assert!(leftovers(&sim, &sim, name).await.is_empty(), "{name}");
    }
}

/// A role's ClusterRole edited on the target to reach beyond pods (here: reading every Secret through a
/// wildcard) is refused: the grant fails, naming the ClusterRole and why, and nothing is left.
#[tokio::test]
async fn a_cluster_role_widened_beyond_pods_is_refused() {
    let sim = central().await;
    let crs: Api<ClusterRole> = Api::all(sim.admin().await);
    let mut logs = crs.get("janus-pod-logs").await.unwrap();
    logs.rules
        .get_or_insert_with(Vec::new)
        .push(serde_json::from_value(json!({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]})).unwrap());
    crs.replace("janus-pod-logs", &PostParams::default(), &logs)
        .await
        .unwrap();
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &scoped_request("widened", &["team-a"], 600, Some("logs"), None)).await;
    approve(&sim, "widened").await;
    let failed = wait_phase(&sim, "widened", "Failed", 10).await;
    assert!(
        message(&failed).starts_with("ClusterRole janus-pod-logs on cluster central: "),
        "{}",
        message(&failed)
    );
    assert!(leftovers(&sim, &sim, "widened").await.is_empty());
}

/// A role removed from the configuration while a request under it is Active (the controller restarted
/// with the new configuration) ends the grant: Failed with reason ValidationFailed, its scoped Role,
/// RoleBinding, ServiceAccount and token Secret gone, and the token refused.
#[tokio::test]
async fn an_active_grant_whose_role_is_removed_from_the_configuration_fails() {
    let sim = central().await;
    create_pod(&sim, "team-a", "web-1", json!({"app": "web"})).await;
    let ctl = Controller::start(&sim, config("")).await;
    let scope = json!({"selector": {"matchLabels": {"app": "web"}}});
    create(
        &sim,
        &scoped_request("orphaned", &["team-a"], 600, Some("logs"), Some(scope)),
    )
    .await;
    approve(&sim, "orphaned").await;
    let active = wait_phase(&sim, "orphaned", "Active", 10).await;
    assert!(active.status.as_ref().unwrap().grants[0].scoped_role.is_some());
    let token = token_for(&sim, "orphaned", "team-a").await;
    let kc = kubeconfig(&sim, &token);
    // The Role follows the pod within 1 s; asserted with 5 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (code, _, err) = kubectl(kc.path(), &["-n", "team-a", "logs", "web-1"]).await;
        if code == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "kubectl logs while active: {err}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ctl.stop().await;

    let _ctl = Controller::start(
        &sim,
        config("roles: [{name: exec, clusterRole: janus-pod-exec, terminal: shell}]"),
    )
    .await;
    let failed = wait_phase(&sim, "orphaned", "Failed", 10).await;
    assert_eq!(
        condition_reason(&failed, "Failed"),
        "ValidationFailed",
        "{}",
        message(&failed)
    );
    assert!(
        message(&failed).contains("role \"logs\" is not configured"),
        "{}",
        message(&failed)
    );
    assert!(
        leftovers(&sim, &sim, "orphaned").await.is_empty(),
        "{:?}",
        leftovers(&sim, &sim, "orphaned").await
    );
    assert_token_dead(&sim, "team-a", &token).await;
    let (code, _, err) = kubectl(kc.path(), &["-n", "team-a", "logs", "web-1"]).await;
    assert_ne!(code, 0, "kubectl logs after the role was removed");
    assert!(!err.is_empty());
}

/// A pending workload-scoped request whose workload cannot be looked up for now (the target answers
/// 500 on the Deployment) still times out: the failure is recorded in ClusterReachable and the
/// pending timeout applies as for any request.
#[tokio::test]
async fn a_pending_request_whose_workload_lookup_keeps_failing_still_times_out() {
    let sim = central().await;
    sim.cluster.faults.set(kubesim::faults::FaultConfig {
        error_rate: 1.0,
        path_contains: "/deployments/payments-api".into(),
        ..Default::default()
    });
    let _ctl = Controller::start(&sim, config("pendingExpirySeconds: 2\n")).await;
    let scope = json!({"workload": {"kind": "Deployment", "name": "payments-api"}});
    create(&sim, &scoped_request("stuck", &["team-a"], 600, None, Some(scope))).await;
    let denied = wait_phase(&sim, "stuck", "Denied", 10).await;
    sim.cluster.faults.clear();
    assert_eq!(
        condition_reason(&denied, "Denied"),
        "PendingTimeout",
        "{}",
        message(&denied)
    );
    let reachable = denied
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "ClusterReachable")
        .cloned()
        .expect("ClusterReachable recorded");
    assert_eq!(
        (reachable.status.as_str(), reachable.reason.as_str()),
        ("False", "ClusterError")
    );
    assert!(
        reachable.message.contains("looking up the workload"),
        "{}",
        reachable.message
    );
}
