#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Token lifetime and revocation timing against a kubesim that behaves as a real API server does: a
//! successful authentication is remembered for about 10 s (even after the ServiceAccount is deleted),
//! `exp` is checked with a leeway, and `--service-account-max-token-expiration` shortens TokenRequests.
//!
//! Sources of the behaviour modelled: staging/src/k8s.io/apiserver/pkg/authentication/token/cache/
//! cached_token_authenticator.go (success cache), pkg/serviceaccount/claims.go (leeway, bound objects),
//! pkg/registry/core/serviceaccount/storage/token.go (expiration shortened to the maximum, with a
//! warning), plugin/pkg/auth/authorizer/rbac/rbac.go (authorization read from RoleBinding listers on
//! every request).

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt as _;
use janus_controller::clusters::ClusterHandle;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, AttachParams, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use kubesim::faults::FaultConfig;
use kubesim::{RunningSim, SimBuilder};
use serde_json::json;

/// Lists pods in `ns` with `token`: `Ok` or the refusal's HTTP code.
async fn pods_with(sim: &RunningSim, ns: &str, token: &str) -> Result<(), u16> {
    let pods: Api<Pod> = Api::namespaced(sim.client_for_token(token).await.expect("client"), ns);
    match pods.list(&ListParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err(s.code),
        Err(e) => panic!("expected an answer from the API server, got {e:?}"),
    }
}

/// The token is refused now: 403 while the server still remembers its authentication but no
/// RoleBinding grants anything, 401 once it no longer authenticates. Exec is refused as well.
async fn assert_refused_now(sim: &RunningSim, ns: &str, token: &str, when: &str) {
    match pods_with(sim, ns, token).await {
        Err(401 | 403) => {}
        other => panic!("{when}: the token should be refused at once, pods list answered {other:?}"),
    }
    let pods: Api<Pod> = Api::namespaced(sim.client_for_token(token).await.expect("client"), ns);
    assert!(
        pods.exec("app", vec!["true"], &AttachParams::default()).await.is_err(),
        "{when}: exec with the token should be refused at once"
    );
}

/// Makes every request whose path names ServiceAccounts fail with a 500 (list, delete, token), as an
/// API server that cannot delete them for a while would.
fn service_accounts_fail(sim: &RunningSim) {
    sim.cluster.faults.set(FaultConfig {
        error_rate: 1.0,
        path_contains: "serviceaccounts".into(),
        ..Default::default()
    });
}

fn removal_condition(ar: &janus_api::AccessRequest) -> Option<String> {
    ar.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "CredentialsRemoved")
            .map(|c| c.status.clone())
    })
}

async fn granted_token(sim: &RunningSim, name: &str, ttl: i64) -> String {
    create(sim, &request(name, "central", &["team-a"], ttl)).await;
    approve(sim, name).await;
    wait_phase(sim, name, "Active", 10).await;
    let toks = tokens(sim, name).await;
    assert_eq!(toks.len(), 1);
    assert_eq!(pods_with(sim, "team-a", &toks[0].1).await, Ok(()), "the grant works");
    toks[0].1.clone()
}

async fn role_bindings_of(sim: &RunningSim, request: &str) -> usize {
    let lp = ListParams::default().labels(&format!("{}={request}", janus_api::REQUEST_LABEL));
    Api::<RoleBinding>::all(sim.client().await.expect("client"))
        .list(&lp)
        .await
        .expect("list")
        .items
        .len()
}

/// Every ending removes the RoleBinding before the ServiceAccount, so access ends at once even when
/// the ServiceAccount cannot be deleted yet (or, on a real cluster, while a deleted one's token is
/// still remembered by the authentication cache). Before, the ServiceAccount went first and an error
/// there left both in place: the request said Revoked while its token still worked.
///
/// Failure is a spec changed after approval by a privileged client; the CRD is installed without its
/// CEL rules so the API server lets that change through (as on a cluster whose CRD was not upgraded).
#[tokio::test]
async fn every_ending_cuts_access_at_once_even_while_service_accounts_cannot_be_deleted() {
    let sim = central_without_cel().await;
    let _ctl = Controller::start(&sim, config("")).await;
    for ending in ["revocation", "withdrawal", "expiry", "deletion", "failure"] {
        let name = format!("end-{ending}");
        let ttl = if ending == "expiry" { 4 } else { 600 };
        let token = granted_token(&sim, &name, ttl).await;
        service_accounts_fail(&sim);
        match ending {
            "revocation" => {
                decide(
                    &sim,
                    &name,
                    "revocation",
                    json!({"by": "admin@example.com", "at": now(), "reason": "done"}),
                )
                .await;
                wait_phase(&sim, &name, "Revoked", 10).await;
            }
            "withdrawal" => {
                decide(
                    &sim,
                    &name,
                    "withdrawal",
                    json!({"by": "Jane.Doe+ops@example.com", "at": now()}),
                )
                .await;
                wait_phase(&sim, &name, "Cancelled", 10).await;
            }
            "expiry" => {
                wait_phase(&sim, &name, "Expired", 15).await;
            }
            "failure" => {
                let api: Api<janus_api::AccessRequest> = Api::all(sim.client().await.expect("client"));
                api.patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"namespaces": ["team-b"]}})),
                )
                .await
                .expect("the privileged patch is accepted (no CEL rules installed)");
                wait_phase(&sim, &name, "Failed", 10).await;
            }
            "deletion" => {
                let api: Api<janus_api::AccessRequest> = Api::all(sim.client().await.expect("client"));
                api.delete(&name, &DeleteParams::default()).await.expect("delete");
                // Nothing in status to wait for: the finalizer holds the request while its cleanup
                // is retried. The promise is that access ends within moments of the deletion.
                let deadline = Instant::now() + Duration::from_secs(3);
                while pods_with(&sim, "team-a", &token).await.is_ok() {
                    assert!(Instant::now() < deadline, "deletion: the token still works after 3 s");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            _ => unreachable!(),
        }
        assert_refused_now(&sim, "team-a", &token, ending).await;
        assert_eq!(
            role_bindings_of(&sim, &name).await,
            0,
            "{ending}: the RoleBinding is gone"
        );
        if ending != "deletion" {
            let ar = get(&sim, &name).await.expect("request");
            assert_eq!(
                removal_condition(&ar).as_deref(),
                Some("False"),
                "{ending}: cleanup is still pending while ServiceAccounts cannot be deleted"
            );
        }
        sim.cluster.faults.clear();
        // Once the API server deletes ServiceAccounts again, the retries finish the cleanup.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let done = match get(&sim, &name).await {
                None => true,
                Some(ar) => ending != "deletion" && removal_condition(&ar).as_deref() == Some("True"),
            };
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "{ending}: cleanup never finished");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(leftovers(&sim, &sim, &name).await.is_empty(), "{ending}");
    }
}

/// The overdue pass at a controller's start (`revoke_tokens_of`) also takes authorization away first:
/// called while the API server refuses to delete ServiceAccounts, it fails, but the token no longer
/// grants anything.
#[tokio::test]
async fn the_overdue_sweep_removes_role_bindings_before_service_accounts() {
    let sim = central().await;
    let ctl = Controller::start(&sim, config("")).await;
    let token = granted_token(&sim, "sweep", 600).await;
    ctl.stop().await;
    let identity = sa_token(&sim, NS, "k8s-janus-controller").await;
    let target = ClusterHandle {
        name: "central".into(),
        client: sim.client_for_token(&identity).await.expect("client"),
        server: sim.url(),
        ca_pem: sim.ca_pem().to_string(),
    };
    service_accounts_fail(&sim);
    let requests = std::collections::HashSet::from(["sweep".to_string()]);
    let swept = janus_controller::grant::revoke_tokens_of(&target, &requests).await;
    assert!(swept.is_err(), "ServiceAccounts cannot be listed: {swept:?}");
    assert_refused_now(&sim, "team-a", &token, "after the sweep").await;
    assert_eq!(role_bindings_of(&sim, "sweep").await, 0);
    sim.cluster.faults.clear();
    assert_eq!(
        janus_controller::grant::revoke_tokens_of(&target, &requests)
            .await
            .unwrap(),
        1
    );
}

/// The kinds of the request's RoleBindings and ServiceAccounts deleted after resourceVersion `since`,
/// in the order the API server deleted them. Read from kubesim's change history, which is ordered by
/// one resourceVersion counter across all kinds, as etcd's revision is on a real cluster.
fn deletions_since(sim: &RunningSim, since: u64, request: &str) -> Vec<(u64, String)> {
    let Ok((changes, _)) = sim.cluster.store.watch_from(since) else {
        panic!("the change history no longer reaches back to {since}");
    };
    changes
        .iter()
        .filter(|c| c.kind == kubesim::store::ChangeKind::Deleted)
        .filter(|c| matches!(c.gr.resource.as_str(), "rolebindings" | "serviceaccounts"))
        .filter(|c| c.object["metadata"]["labels"][janus_api::REQUEST_LABEL] == request)
        .map(|c| (c.rv, c.gr.resource.clone()))
        .collect()
}

async fn wait_credentials_removed(sim: &RunningSim, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(sim, name).await.and_then(|a| removal_condition(&a)).as_deref() != Some("True") {
        assert!(Instant::now() < deadline, "{name}: cleanup never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// On a server with the default authentication cache (10 s) and leeway (60 s), revocation and expiry
/// cut access the moment the request says so: a deleted ServiceAccount's token is remembered, but
/// nothing grants it any more, because the RoleBinding is deleted before the ServiceAccount. The order
/// is checked directly on the API server's change history: by the time the phase is written every
/// credential is gone whatever the order, so only the order shows the window in which a remembered
/// token would still be granted (ServiceAccount first: authenticated from the cache, authorized by
/// the RoleBinding still there).
#[tokio::test]
async fn revocation_and_expiry_cut_access_at_once_despite_the_authentication_cache() {
    let sim = central().await;
    let _ctl = Controller::start(&sim, config("")).await;
    let revoked = granted_token(&sim, "cache-rev", 600).await;
    let expiring = granted_token(&sim, "cache-exp", 4).await;
    let since = sim.cluster.store.current_rv();
    // Used just now, so both are in the server's authentication cache.
    decide(
        &sim,
        "cache-rev",
        "revocation",
        json!({"by": "admin@example.com", "at": now(), "reason": "done"}),
    )
    .await;
    wait_phase(&sim, "cache-rev", "Revoked", 10).await;
    assert_refused_now(&sim, "team-a", &revoked, "revoked").await;
    // Keep the expiring token in the cache until the very end.
    while get(&sim, "cache-exp").await.map(|a| phase(&a)).as_deref() == Some("Active") {
        let _ = pods_with(&sim, "team-a", &expiring).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_phase(&sim, "cache-exp", "Expired", 1).await;
    assert_refused_now(&sim, "team-a", &expiring, "expired").await;
    for name in ["cache-rev", "cache-exp"] {
        wait_credentials_removed(&sim, name).await;
        let deleted = deletions_since(&sim, since, name);
        let kinds: Vec<&str> = deleted.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(
            kinds,
            ["rolebindings", "serviceaccounts"],
            "{name}: the RoleBinding must be deleted before the ServiceAccount ({deleted:?})"
        );
    }
    assert_token_dead(&sim, "team-a", &revoked).await;
    assert_token_dead(&sim, "team-a", &expiring).await;
}

/// A cluster started with `--service-account-max-token-expiration` shortens every TokenRequest. The
/// controller renews such a token ahead of its own expiry, once per period (never on every reconcile),
/// in the same Secret, so new calls with the Secret's token never see a 401 while access is valid.
/// Before, the token stopped working after the cap while the request was still Active.
#[tokio::test]
async fn a_capped_token_is_renewed_before_it_expires_once_per_period() {
    const CAP: i64 = 8;
    const TTL: i64 = 30;
    // No exp leeway and no authentication cache here: a token must be replaced before its own expiry,
    // not within the 60 s a real server would still accept it, nor hidden for up to 10 s (longer than
    // CAP) by a cached success of the token the Secret held before.
    let sim = central_from(
        SimBuilder::new()
            .min_token_expiration_seconds(1)
            .max_token_expiration_seconds(CAP)
            .token_leeway_seconds(0)
            .auth_cache_ttl(Duration::ZERO),
    )
    .await;
    // The controller's own identity is a token the kubelet keeps fresh on a real cluster; here it is
    // minted directly, past the cap, so only the grant's token is capped.
    let sas: Api<ServiceAccount> = Api::namespaced(sim.client().await.expect("client"), NS);
    let uid = sas
        .get("k8s-janus-controller")
        .await
        .expect("sa")
        .metadata
        .uid
        .expect("uid");
    let (identity, _) = sim.cluster.tokens.issue(
        NS,
        "k8s-janus-controller",
        &uid,
        &[kubesim::auth::tokens::ISSUER.to_string()],
        3600,
        None,
    );
    let _ctl = Controller::start_as(&sim, config(""), None, &identity).await;
    create(&sim, &request("capped", "central", &["team-a"], TTL)).await;
    let secrets: Api<Secret> = Api::namespaced(sim.client().await.expect("client"), NS);
    // Every write of the token Secret, as the controller makes one per TokenRequest.
    // (issued-at annotation, token, expires-at annotation) of every distinct token written.
    let writes = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String, String)>::new()));
    let recorder = {
        let writes = writes.clone();
        let secrets = secrets.clone();
        tokio::spawn(async move {
            let cfg = watcher::Config::default().labels(&format!("{}=capped", janus_api::REQUEST_LABEL));
            let mut events = watcher::watcher(secrets, cfg).boxed();
            while let Some(ev) = events.next().await {
                // A watch that ends (the server's watch window) is resumed by the watcher.
                let Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = ev else {
                    continue;
                };
                let token = s
                    .data
                    .as_ref()
                    .and_then(|d| d.get("token"))
                    .map(|t| String::from_utf8_lossy(&t.0).into_owned())
                    .unwrap_or_default();
                let annotation = |key: &str| {
                    s.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(key).cloned())
                        .unwrap_or_default()
                };
                let issued = annotation(janus_controller::grant::TOKEN_ISSUED_ANNOTATION);
                let expires = annotation(janus_controller::grant::TOKEN_EXPIRES_ANNOTATION);
                let mut w = writes.lock().unwrap();
                if w.last().is_none_or(|(_, t, _)| *t != token) {
                    w.push((issued, token, expires));
                }
            }
        })
    };
    approve(&sim, "capped").await;
    wait_phase(&sim, "capped", "Active", 10).await;
    // Use the Secret's current token, as the web does for each new terminal or log stream.
    let mut uses = 0;
    loop {
        let ar = get(&sim, "capped").await.expect("request");
        if phase(&ar) != "Active" {
            break;
        }
        let Some(s) = secrets
            .get_opt(&ar.status.expect("status").grants[0].token_secret)
            .await
            .expect("get")
        else {
            break;
        };
        let token = String::from_utf8_lossy(&s.data.expect("data")["token"].0).into_owned();
        let pods: Api<Pod> = Api::namespaced(sim.client_for_token(&token).await.expect("client"), "team-a");
        let answer = pods.list(&ListParams::default()).await.map(|_| ());
        let answered = chrono::Utc::now();
        // The request may have ended between the two reads; only a refusal answered before its expiry,
        // while it is still Active, counts. At the expiry the access is cut before the phase is
        // written, so a refusal then, with the phase still Active, is the controller doing its job.
        let ended_by_then = |a: &janus_api::AccessRequest| {
            phase(a) != "Active"
                || a.status
                    .as_ref()
                    .and_then(|s| s.expires_at.as_deref())
                    .and_then(janus_api::rules::time::parse_time)
                    .is_some_and(|expires| answered >= expires)
        };
        if answer.is_err() && get(&sim, "capped").await.is_some_and(|a| !ended_by_then(&a)) {
            // Why the server refused it, and the token's claims (not the token: its signature is what
            // would make it a credential).
            let claims = token
                .split('.')
                .nth(1)
                .and_then(|p| base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            let sa = Api::<ServiceAccount>::namespaced(sim.client().await.expect("client"), "team-a")
                .list(&ListParams::default())
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .map(|sa| (sa.metadata.name.clone(), sa.metadata.uid.clone()))
                        .collect::<Vec<_>>()
                });
            let w = writes.lock().unwrap();
            panic!(
                "the Secret's token was refused ({answer:?}) while access is valid (now {}), after {} token writes: {:?}; \
                 its claims {claims:?}; the ServiceAccounts now {sa:?}; the Secret's resourceVersion {:?}",
                chrono::Utc::now().to_rfc3339(),
                w.len(),
                w.iter().map(|(at, _, exp)| (at, exp)).collect::<Vec<_>>(),
                s.metadata.resource_version,
            );
        }
        uses += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_phase(&sim, "capped", "Expired", 5).await;
    recorder.abort();
    assert!(uses > 50, "the token was used throughout ({uses} times)");
    let writes = writes.lock().unwrap().clone();
    // One token per period: issued, renewed at 80% of CAP, ... until one covers expiresAt. With a 30 s
    // TTL that is 1 + ceil((30 - 8) / 6.4) = 5 (the last one covers the end).
    assert!(
        (4..=6).contains(&writes.len()),
        "{} tokens issued for a {TTL}s access with a {CAP}s cap: {:?}",
        writes.len(),
        writes.iter().map(|w| (&w.0, &w.2)).collect::<Vec<_>>()
    );
    // Issue times are recorded in whole seconds: a renewal 6.4 s after the previous issue reads as 6 or
    // 7 s; a re-issue on every reconcile would read as 0 or 1 s, a renewal at the token's expiry (CAP
    // seconds after its issue) or later as CAP or more.
    let issued: Vec<chrono::DateTime<chrono::Utc>> = writes
        .iter()
        .map(|w| janus_controller::lifecycle::parse_time(&w.0).expect("token-issued-at"))
        .collect();
    for pair in issued.windows(2) {
        let gap = (pair[1] - pair[0]).num_seconds();
        assert!(
            (5..CAP).contains(&gap),
            "renewed {gap}s after the previous token: not once per {CAP}s period at 80% ({issued:?})"
        );
    }
}
