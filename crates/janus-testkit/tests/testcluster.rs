#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TestCluster against kubesim: server-side apply of any kind, the chart-like preparation, and the
//! kubeconfig backend driven by nothing but a kubeconfig file.

use std::time::Duration;

use janus_testkit::{Backend, NS, TestCluster, TestkitError};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ListParams};

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
    // The CA as a file and the token in a token file, as kind and cloud kubeconfigs often have them.
    std::fs::write(dir.path().join("ca.pem"), sim.ca_pem()).unwrap();
    std::fs::write(dir.path().join("token"), sim.admin_token()).unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: sim\n\
             clusters: [{{name: sim, cluster: {{server: '{}', certificate-authority: ca.pem}}}}]\n\
             users: [{{name: sim, user: {{token-file: token}}}}]\n\
             contexts: [{{name: sim, context: {{cluster: sim, user: sim}}}}]\n",
            sim.url()
        ),
    )
    .unwrap();
    let tc = TestCluster::from_kubeconfig_file(&kubeconfig).await.unwrap();
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
