#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TestCluster against kubesim: server-side apply of any kind, the chart-like preparation, and the
//! kubeconfig backend driven by nothing but a kubeconfig file.

use std::time::Duration;

use janus_testkit::{Backend, NS, TestCluster, TestkitError};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[test]
fn the_backend_is_kubesim_unless_kubeconfig_is_asked_for() {
    assert_eq!(Backend::parse("").unwrap(), Backend::Simulated);
    assert_eq!(Backend::parse("kubesim").unwrap(), Backend::Simulated);
    assert_eq!(Backend::parse("kubeconfig").unwrap(), Backend::Kubeconfig);
    let e = Backend::parse("kind").unwrap_err().to_string();
    assert!(e.contains("JANUS_TEST_CLUSTER=\"kind\""), "{e}");
}

/// A kubeconfig file for `sim` whose only context is `context` (the CA as a file and the token in a
/// token file, as kind and cloud kubeconfigs often have them).
fn kubeconfig_file(sim: &kubesim::RunningSim, dir: &std::path::Path, context: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("ca.pem"), sim.ca_pem()).unwrap();
    std::fs::write(dir.join("token"), sim.admin_token()).unwrap();
    let kubeconfig = dir.join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: {context}\n\
             clusters: [{{name: sim, cluster: {{server: '{}', certificate-authority: ca.pem}}}}]\n\
             users: [{{name: sim, user: {{token-file: token}}}}]\n\
             contexts: [{{name: {context}, context: {{cluster: sim, user: sim}}}}]\n",
            sim.url()
        ),
    )
    .unwrap();
    kubeconfig
}

#[test]
fn the_kubeconfig_backend_needs_the_current_context_confirmed() {
    use janus_testkit::confirm_context;
    confirm_context(Some("kind-janus"), Some("kind-janus")).unwrap();
    let missing = confirm_context(Some("prod-eu"), None).unwrap_err().to_string();
    assert!(
        missing.contains("\"prod-eu\"") && missing.contains("JANUS_TEST_CLUSTER_CONTEXT is not set"),
        "{missing}"
    );
    let other = confirm_context(Some("prod-eu"), Some("kind-janus"))
        .unwrap_err()
        .to_string();
    assert!(
        other.contains("JANUS_TEST_CLUSTER_CONTEXT is \"kind-janus\""),
        "{other}"
    );
    assert!(other.contains("set JANUS_TEST_CLUSTER_CONTEXT=\"prod-eu\""), "{other}");
    // No current context: nothing can confirm it, not even an empty value.
    assert!(confirm_context(None, Some("")).is_err());
    assert!(confirm_context(Some(""), Some("")).is_err());
}

#[tokio::test]
async fn the_kubeconfig_backend_refuses_a_context_nobody_confirmed() {
    let sim = kubesim::SimBuilder::new().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A context name no environment sets, so JANUS_TEST_CLUSTER_CONTEXT (unset under cargo test, the
    // proof context under scripts/test-real-cluster.sh --sim) never confirms it.
    let kubeconfig = kubeconfig_file(&sim, dir.path(), "janus-testkit-unconfirmed-probe");
    match TestCluster::from_kubeconfig_file(&kubeconfig).await {
        Err(TestkitError::UnconfirmedContext { current, .. }) => assert_eq!(current, "janus-testkit-unconfirmed-probe"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    match TestCluster::from_kubeconfig_file_in_context(&kubeconfig, "kind-janus").await {
        Err(TestkitError::UnconfirmedContext { current, confirmed }) => {
            assert_eq!(current, "janus-testkit-unconfirmed-probe");
            assert_eq!(confirmed.as_deref(), Some("kind-janus"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    TestCluster::from_kubeconfig_file_in_context(&kubeconfig, "janus-testkit-unconfirmed-probe")
        .await
        .unwrap();
}

#[test]
fn test_requesters_are_exactly_the_example_com_domain() {
    use janus_testkit::is_test_requester;
    for ours in ["alice@example.com", "Jane.Doe+ops@example.com", "Alice@Example.COM"] {
        assert!(is_test_requester(ours), "{ours}");
    }
    for theirs in [
        "jane@corp.example.org",
        "x@corp.example.com",
        "x@example.com.evil.org",
        "x@notexample.com",
        "example.com",
        "@example.com",
        "",
    ] {
        assert!(!is_test_requester(theirs), "{theirs}");
    }
}

/// A request of `requester` held by the controller's finalizer, and its credentials in team-a (a
/// ServiceAccount, a pod-scoped grant's Role, a RoleBinding and a token Secret, labelled as the
/// controller labels them).
async fn seed_request(client: &kube::Client, name: &str, requester: &str) {
    let ar: janus_api::AccessRequest = serde_json::from_value(json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": name, "finalizers": [janus_api::FINALIZER]},
        "spec": {"requester": requester, "cluster": "central", "namespaces": ["team-a"], "reason": "r", "ttlSeconds": 600}
    }))
    .unwrap();
    Api::<janus_api::AccessRequest>::all(client.clone())
        .create(&PostParams::default(), &ar)
        .await
        .unwrap();
    let meta =
        json!({"name": format!("janus-{name}"), "namespace": "team-a", "labels": {janus_api::REQUEST_LABEL: name}});
    let pp = PostParams::default();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": meta})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), "team-a")
        .create(&pp, &sa)
        .await
        .unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": meta,
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceNames": ["app"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), "team-a")
        .create(&pp, &role)
        .await
        .unwrap();
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": format!("janus-{name}"), "namespace": "team-a"}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), "team-a")
        .create(&pp, &rb)
        .await
        .unwrap();
    let secret: Secret = serde_json::from_value(json!({"metadata": meta, "stringData": {"token": "t"}})).unwrap();
    Api::<Secret>::namespaced(client.clone(), "team-a")
        .create(&pp, &secret)
        .await
        .unwrap();
}

/// Which of the request's credentials exist, as `sa`, `role`, `rb`, `secret`.
async fn credentials(client: &kube::Client, name: &str) -> Vec<&'static str> {
    let n = format!("janus-{name}");
    let mut found = Vec::new();
    if Api::<ServiceAccount>::namespaced(client.clone(), "team-a")
        .get_opt(&n)
        .await
        .unwrap()
        .is_some()
    {
        found.push("sa");
    }
    if Api::<Role>::namespaced(client.clone(), "team-a")
        .get_opt(&n)
        .await
        .unwrap()
        .is_some()
    {
        found.push("role");
    }
    if Api::<RoleBinding>::namespaced(client.clone(), "team-a")
        .get_opt(&n)
        .await
        .unwrap()
        .is_some()
    {
        found.push("rb");
    }
    if Api::<Secret>::namespaced(client.clone(), "team-a")
        .get_opt(&n)
        .await
        .unwrap()
        .is_some()
    {
        found.push("secret");
    }
    found
}

#[tokio::test]
async fn a_reused_cluster_loses_only_test_requests_and_their_credentials() {
    let sim = kubesim::SimBuilder::new().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_file(&sim, dir.path(), "sim");
    let tc = TestCluster::from_kubeconfig_file_in_context(&kubeconfig, "sim")
        .await
        .unwrap();
    tc.prepare_janus().await.unwrap();
    let admin = tc.client();
    // Left by an earlier test run, and a real Janus's requests (audit record, a live grant) beside it.
    seed_request(&admin, "left-by-a-test", "Alice@Example.com").await;
    seed_request(&admin, "prod-grant", "jane@corp.example.org").await;
    seed_request(&admin, "lookalike", "x@corp.example.com").await;
    tc.prepare_janus().await.unwrap();
    let ars: Api<janus_api::AccessRequest> = Api::all(admin.clone());
    assert!(
        ars.get_opt("left-by-a-test").await.unwrap().is_none(),
        "the test's request removed"
    );
    assert_eq!(credentials(&admin, "left-by-a-test").await, Vec::<&str>::new());
    for theirs in ["prod-grant", "lookalike"] {
        let ar = ars.get(theirs).await.unwrap();
        assert!(ar.metadata.deletion_timestamp.is_none(), "{theirs} not deleted");
        assert_eq!(
            ar.metadata.finalizers.unwrap_or_default(),
            [janus_api::FINALIZER],
            "{theirs}"
        );
        assert_eq!(
            credentials(&admin, theirs).await,
            ["sa", "role", "rb", "secret"],
            "{theirs}"
        );
    }
}

#[tokio::test]
async fn apply_yaml_creates_and_updates_any_kind_by_server_side_apply() {
    let tc = TestCluster::start_simulated(kubesim::SimBuilder::new()).await.unwrap();
    let docs = |value: &str| {
        format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: applied}}\n---\n# a comment-only document\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm, namespace: applied}}\ndata: {{k: {value}}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: applied-role}}\n\
             rules: [{{apiGroups: [''], resources: [pods], verbs: [get]}}]\n"
        )
    };
    tc.apply_yaml(&docs("one")).await.unwrap();
    tc.apply_yaml(&docs("two")).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(tc.client(), "applied");
    let cm = cms.get("cm").await.unwrap();
    assert_eq!(cm.data.unwrap()["k"], "two", "the second apply updated it");
    let managers: Vec<(String, String)> = cm
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.manager.unwrap_or_default(), m.operation.unwrap_or_default()))
        .collect();
    assert_eq!(managers, [("janus-testkit".to_string(), "Apply".to_string())]);
    Api::<ClusterRole>::all(tc.client()).get("applied-role").await.unwrap();
    Api::<Namespace>::all(tc.client()).get("applied").await.unwrap();
}

#[tokio::test]
async fn apply_yaml_names_the_document_it_cannot_apply() {
    let tc = TestCluster::start_simulated(kubesim::SimBuilder::new()).await.unwrap();
    let no_kind = "apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\nmetadata: {name: x}\n";
    match tc.apply_yaml(no_kind).await {
        Err(TestkitError::Yaml { index: 1, reason }) => assert!(reason.contains("apiVersion"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let unknown = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n";
    let e = tc.apply_yaml(unknown).await.unwrap_err().to_string();
    assert!(e.contains("discover example.com/v1/Widget"), "{e}");
    let broken = "apiVersion: v1\nkind: [\n";
    assert!(matches!(
        tc.apply_yaml(broken).await,
        Err(TestkitError::Yaml { index: 0, .. })
    ));
}

#[tokio::test]
async fn prepare_janus_installs_the_crd_workloads_and_chart_rbac_through_the_api() {
    let tc = TestCluster::start().await.unwrap();
    tc.prepare_janus().await.unwrap();
    // Twice is fine: the real-cluster suites prepare one cluster again and again.
    tc.prepare_janus().await.unwrap();
    for ns in janus_testkit::WORKLOAD_NAMESPACES {
        let pod = Api::<Pod>::namespaced(tc.client(), ns).get("app").await.unwrap();
        assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Running"));
    }
    // The chart's controller identity: may list requests, may not read workload Secrets.
    let token = tc.sa_token(NS, "k8s-janus-controller").await.unwrap();
    // An hour, not a day: on a real cluster the chart identities' tokens outlive the run.
    let claims = token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        janus_testkit::SA_TOKEN_SECONDS
    );
    assert_eq!(janus_testkit::SA_TOKEN_SECONDS, 3600);
    let ctl = tc.client_for_token(&token).await.unwrap();
    Api::<janus_api::AccessRequest>::all(ctl.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(ctl, "team-a");
    assert_eq!(code(&secrets.get("db-password").await.unwrap_err()), 403);
    let admin_secret = Api::<Secret>::namespaced(tc.client(), "team-a")
        .get("db-password")
        .await
        .unwrap();
    assert_eq!(admin_secret.data.unwrap()["password"].0, b"hunter2");
}

#[tokio::test]
async fn the_kubeconfig_backend_needs_nothing_but_the_kubeconfig_file() {
    let sim = kubesim::SimBuilder::new().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_file(&sim, dir.path(), "sim");
    let tc = TestCluster::from_kubeconfig_file_in_context(&kubeconfig, "sim")
        .await
        .unwrap();
    assert_eq!(tc.backend(), Backend::Kubeconfig);
    assert!(tc.sim().is_none());
    assert_eq!(tc.server_url(), sim.url());
    assert_eq!(tc.ca_pem(), sim.ca_pem());
    assert!(!tc.kubeconfig_yaml().contains("ca.pem"), "files inlined");
    tc.prepare_janus().await.unwrap();
    let token = tc.sa_token(NS, "k8s-janus-web").await.unwrap();
    let web = tc.client_for_token(&token).await.unwrap();
    Api::<janus_api::AccessRequest>::all(web)
        .list(&ListParams::default())
        .await
        .unwrap();
    tc.wait_pod_running("team-b", "app", Duration::from_secs(5))
        .await
        .unwrap();
    let e = tc
        .wait_pod_running("team-b", "ghost", Duration::from_millis(300))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("pod team-b/ghost Running (not found)"), "{e}");
}
