#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Exec authorization follows the Kubernetes version kubesim reports, as kube-apiserver's does.
//!
//! The request's verb comes from its HTTP method (`staging/src/k8s.io/apiserver/pkg/endpoints/
//! request/requestinfo.go`): the WebSocket upgrade kube-rs and kubectl 1.30+ send is a GET, so `get`
//! on `pods/exec`; a SPDY upgrade is a POST, so `create`. From 1.35 the pod registry's `Connect`
//! (`pkg/registry/core/pod/rest/subresources.go`) also asks for `create` through
//! `ensureAuthorizedForVerb` (`pkg/registry/core/pod/rest/authorize.go`), behind the feature gate
//! `AuthorizePodWebsocketUpgradeCreatePermission`, beta and on by default from 1.35 (KEP-4006).
//! A role with only `create` on `pods/exec` therefore cannot open a WebSocket exec on any version.

mod common;

use common::{Env, kubectl_with};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, AttachParams, PostParams};
use kubesim::SimBuilder;
use serde_json::json;

const BEFORE: &str = "v1.33.1";
const SINCE: &str = "v1.35.0";
const ROBOT: &str = "system:serviceaccount:default:robot";

/// A cluster of `version` with pod `web` and ServiceAccount `robot` bound to a Role granting `verbs`
/// on `pods/exec` (and `get` on pods, which kubectl reads first); returns the robot's token.
async fn cluster(version: &str, verbs: &[&str]) -> (Env, String) {
    let env = Env::with(SimBuilder::new().version(version)).await;
    env.seed(&format!(
        r#"
- {{apiVersion: v1, kind: Pod, metadata: {{name: web, namespace: default}}, spec: {{containers: [{{name: app, image: x}}]}}}}
- {{apiVersion: v1, kind: ServiceAccount, metadata: {{name: robot, namespace: default}}}}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata: {{name: exec, namespace: default}}
  rules:
  - {{apiGroups: [""], resources: [pods], verbs: [get]}}
  - {{apiGroups: [""], resources: [pods/exec], verbs: {verbs:?}}}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: RoleBinding
  metadata: {{name: exec, namespace: default}}
  roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: exec}}
  subjects: [{{kind: ServiceAccount, name: robot, namespace: default}}]
"#
    ));
    let sas: Api<ServiceAccount> = Api::namespaced(env.sim.client().await.expect("admin"), "default");
    let tr: TokenRequest = serde_json::from_value(json!({"spec": {"expirationSeconds": 3600}})).expect("tr");
    let token = sas
        .create_token_request("robot", &PostParams::default(), &tr)
        .await
        .expect("token")
        .status
        .expect("status")
        .token;
    (env, token)
}

/// kube-rs (WebSocket only, as janus execs): `Ok(stdout)` or the API error's code, message and details.
async fn kube_rs_exec(env: &Env, token: &str) -> Result<String, (u16, String, Option<serde_json::Value>)> {
    let client = env.sim.client_for_token(token).await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    match pods
        .exec("web", vec!["echo", "hi"], &AttachParams::default().stderr(false))
        .await
    {
        Ok(mut p) => {
            let mut out = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut p.stdout().expect("stdout"), &mut out)
                .await
                .expect("read");
            Ok(out)
        }
        Err(kube::Error::Api(s)) => Err((
            s.code,
            s.message.clone(),
            s.details.map(|d| serde_json::to_value(d).expect("details")),
        )),
        Err(other) => panic!("exec failed without an API error: {other:?}"),
    }
}

/// The real kubectl (the image's dispatcher picks one for the server version; 1.30+ exec over a
/// WebSocket first and fall back to SPDY when the upgrade is refused).
async fn kubectl_exec(env: &Env, token: &str) -> (bool, String, String) {
    let kc = env.kubeconfig_for("robot", token);
    let out = kubectl_with(&kc, &["exec", "web", "--", "echo", "hi"], None).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The authorization filter's refusal of the WebSocket GET (`responsewriters.ForbiddenStatusError`).
fn cannot_get() -> String {
    format!(
        r#"pods "web" is forbidden: User "{ROBOT}" cannot get resource "pods/exec" in API group "" in the namespace "default""#
    )
}

#[tokio::test]
async fn create_only_cannot_open_a_websocket_exec_on_any_version() {
    for version in [BEFORE, SINCE] {
        let (env, token) = cluster(version, &["create"]).await;
        let (code, message, _) = kube_rs_exec(&env, &token).await.expect_err(version);
        assert_eq!((code, message.as_str()), (403, cannot_get().as_str()), "{version}");

        // kubectl's WebSocket upgrade is refused the same way, so it falls back to SPDY; a real
        // server would run the command there (create suffices for a POST); kubesim serves no SPDY,
        // which is how this shows that the WebSocket attempt was refused.
        let (ok, _, stderr) = kubectl_exec(&env, &token).await;
        assert!(!ok, "{version}: {stderr}");
        assert!(
            stderr.contains("kubesim serves exec over WebSocket only"),
            "{version}: kubectl did not fall back to SPDY: {stderr}"
        );
    }
}

#[tokio::test]
async fn get_only_opens_a_websocket_exec_before_1_35_only() {
    let (env, token) = cluster(BEFORE, &["get"]).await;
    assert_eq!(kube_rs_exec(&env, &token).await, Ok("hi\n".to_string()), "{BEFORE}");
    let (ok, stdout, stderr) = kubectl_exec(&env, &token).await;
    assert!(ok && stdout == "hi\n", "{BEFORE}: {stdout} {stderr}");

    let (env, token) = cluster(SINCE, &["get"]).await;
    let (code, message, details) = kube_rs_exec(&env, &token).await.expect_err(SINCE);
    // apierrors.NewForbidden(pods, name, errors.New(reason)); RBAC's reason for a plain refusal is empty.
    assert_eq!(
        (code, message.as_str()),
        (403, r#"pods "web" is forbidden: "#),
        "{SINCE}"
    );
    let details = details.expect("details");
    assert_eq!((&details["kind"], &details["name"]), (&json!("pods"), &json!("web")));
    // kubectl falls back to SPDY, a POST: `create`, refused by the authorization filter.
    let (ok, _, stderr) = kubectl_exec(&env, &token).await;
    assert!(!ok, "{SINCE}: {stderr}");
    assert!(
        stderr.contains(&format!(r#"User "{ROBOT}" cannot create resource "pods/exec""#)),
        "{SINCE}: {stderr}"
    );
}

#[tokio::test]
async fn get_and_create_open_a_websocket_exec_on_every_version() {
    for version in [BEFORE, "v1.34.3", SINCE, "v1.36.0-rc.1"] {
        let (env, token) = cluster(version, &["get", "create"]).await;
        assert_eq!(kube_rs_exec(&env, &token).await, Ok("hi\n".to_string()), "{version}");
        let (ok, stdout, stderr) = kubectl_exec(&env, &token).await;
        assert!(ok && stdout == "hi\n", "{version}: {stdout} {stderr}");
    }
}

/// A SPDY upgrade is a POST: `create` on every version, `get` is not enough.
#[tokio::test]
async fn a_post_needs_create() {
    for version in [BEFORE, SINCE] {
        let (env, token) = cluster(version, &["get"]).await;
        let client = env.sim.client_for_token(&token).await.expect("client");
        let req = http::Request::post("/api/v1/namespaces/default/pods/web/exec?command=true&stdout=true")
            .body(Vec::new())
            .expect("request");
        match client.request_text(req).await {
            Err(kube::Error::Api(s)) => assert_eq!(
                (s.code, s.message.as_str()),
                (
                    403,
                    format!(
                        r#"pods "web" is forbidden: User "{ROBOT}" cannot create resource "pods/exec" in API group "" in the namespace "default""#
                    )
                    .as_str()
                ),
                "{version}"
            ),
            other => panic!("{version}: {other:?}"),
        }
    }
}

/// `/version` reports what the rules follow, and a version they cannot read is refused at start.
#[tokio::test]
async fn the_reported_version_is_the_followed_one() {
    let env = Env::with(SimBuilder::new().version(SINCE)).await;
    let v = env
        .sim
        .client()
        .await
        .expect("admin")
        .apiserver_version()
        .await
        .expect("version");
    assert_eq!(
        (v.git_version.as_str(), v.major.as_str(), v.minor.as_str()),
        (SINCE, "1", "35")
    );

    let dir = tempfile::tempdir().expect("tmp");
    let err = SimBuilder::new()
        .version("one-point-thirty-five")
        .workdir(dir.path())
        .start()
        .await
        .expect_err("an unreadable version");
    assert!(
        err.to_string()
            .starts_with(r#"Kubernetes version "one-point-thirty-five" is not a version like v1.35.0"#),
        "{err}"
    );
}
