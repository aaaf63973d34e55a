//! The controller's API calls, recorded by a layer on its own client: which calls a grant or a
//! revocation makes, in which order, and how many (tests/grant_path.rs asserts the order, the lifecycle
//! bench counts them). Needs `mod common;` beside it (the chart's controller identity).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt as _;
use janus_api::AccessRequest;
use kube::api::Api;
use kube::runtime::watcher;

use crate::common::{Controller, NS, approve, config, create, phase, request, sa_token, wait_phase};

/// One call: "verb resource[/subresource]" (the verb as RBAC names it), the request path, and when
/// it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// When the client sent it.
    pub at: Instant,
    /// "delete rolebindings", "patch accessrequests/status", "create serviceaccounts/token", …
    pub kind: String,
    /// The request's path, without the query.
    pub path: String,
}

/// Every request the controller sent, in order, background Events and watches included.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    /// How many calls so far (a mark for [`Calls::since`]).
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The calls made after `mark`, in order.
    pub fn since(&self, mark: usize) -> Vec<Call> {
        self.0.lock().unwrap().get(mark..).unwrap_or_default().to_vec()
    }

    /// The calls made after `mark`, counted by kind.
    pub fn counted_since(&self, mark: usize) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for c in self.since(mark) {
            *out.entry(c.kind).or_default() += 1;
        }
        out
    }

    /// The calls made after `mark` and sent before `until`, counted by kind.
    pub fn counted_before(&self, mark: usize, until: Instant) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for c in self.since(mark).into_iter().filter(|c| c.at < until) {
            *out.entry(c.kind).or_default() += 1;
        }
        out
    }

    fn record(&self, req: &http::Request<kube::client::Body>) {
        let call = Call {
            at: Instant::now(),
            kind: call_kind(req.method(), req.uri()),
            path: req.uri().path().to_string(),
        };
        self.0.lock().unwrap().push(call);
    }
}

/// "verb resource[/subresource]" of one API request, the verb as RBAC names it.
pub fn call_kind(method: &http::Method, uri: &http::Uri) -> String {
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    // /api/v1/… or /apis/<group>/<version>/…, then namespaces/<ns>/… for namespaced objects.
    let mut rest: &[&str] = match segs.first() {
        Some(&"api") => segs.get(2..).unwrap_or_default(),
        Some(&"apis") => segs.get(3..).unwrap_or_default(),
        _ => &segs,
    };
    if rest.len() > 2 && rest[0] == "namespaces" {
        rest = &rest[2..];
    }
    let resource = rest.first().copied().unwrap_or("?");
    let named = rest.len() > 1;
    let sub = rest.get(2).map(|s| format!("/{s}")).unwrap_or_default();
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match *method {
        http::Method::GET if watch => "watch",
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PATCH => "patch",
        http::Method::PUT => "update",
        http::Method::DELETE if named => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "other",
    };
    format!("{verb} {resource}{sub}")
}

/// The per-kind average over `runs` and its total, as (total, "2.00 create serviceaccounts, …").
pub fn per_run(runs: &[BTreeMap<String, u64>]) -> (f64, String) {
    let mut sum: BTreeMap<&str, u64> = BTreeMap::new();
    for r in runs {
        for (k, v) in r {
            *sum.entry(k).or_default() += v;
        }
    }
    let n = runs.len().max(1) as f64;
    let total = sum.values().sum::<u64>() as f64 / n;
    let text = sum
        .iter()
        .map(|(k, v)| format!("{:.2} {k}", *v as f64 / n))
        .collect::<Vec<_>>()
        .join(", ");
    (total, text)
}

/// A controller running in this process with the chart's controller identity, on a client whose
/// requests are recorded into `calls`.
pub struct Ctl(Controller);

impl Ctl {
    /// Starts it; `/metrics` on `metrics` when given.
    pub async fn start(
        sim: &kubesim::RunningSim,
        cfg: janus_api::config::Config,
        metrics: Option<&str>,
        calls: &Calls,
    ) -> Self {
        let token = sa_token(sim, NS, "k8s-janus-controller").await;
        let kc: kube::config::Kubeconfig = yaml_serde::from_str(&sim.kubeconfig_for_token(&token)).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        let recorder = calls.clone();
        let client = kube::client::ClientBuilder::try_from(config)
            .expect("client")
            .with_layer(&tower::util::MapRequestLayer::new(
                move |req: http::Request<kube::client::Body>| {
                    recorder.record(&req);
                    req
                },
            ))
            .build();
        let opts = janus_controller::Options {
            metrics_listen: metrics.map(|m| m.parse().expect("addr")),
            identity: "recorded".into(),
            leader_election: false,
        };
        Self(Controller::spawn(
            cfg,
            client,
            sim.url(),
            sim.ca_pem().to_string(),
            opts,
        ))
    }

    /// Stops it gracefully (in-flight reconciles finish), at most 10 s.
    pub async fn stop(self) {
        self.0.stop().await;
    }
}

/// Phases of one request as a watch sees them, recorded until the task is aborted.
pub type Phases = (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>);

/// The race both tests/grant_path.rs and tests/status_race.rs set up: a recorded controller, the
/// request `name` created and approved while ServiceAccount calls (and their tokens) answer only after
/// 1.5 s, so the grant is still issuing credentials when the test acts; every phase the request shows
/// from its approval on is recorded. Returns once it is Approved, the faults still set.
pub async fn approved_with_slow_grant(sim: &kubesim::RunningSim, name: &str, calls: &Calls) -> (Ctl, Phases) {
    let ctl = Ctl::start(sim, config(""), None, calls).await;
    create(sim, &request(name, "central", &["team-a", "team-b", "team-c"], 600)).await;
    wait_phase(sim, name, "Pending", 10).await;
    let api: Api<AccessRequest> = Api::all(sim.client().await.expect("client"));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let recorder = {
        let seen = seen.clone();
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        tokio::spawn(async move {
            let mut events = watcher::watcher(api, cfg).boxed();
            while let Some(ev) = events.next().await {
                if let Ok(watcher::Event::Apply(ar) | watcher::Event::InitApply(ar)) = ev {
                    seen.lock().unwrap().push(phase(&ar));
                }
            }
        })
    };
    sim.cluster.faults.set(kubesim::faults::FaultConfig {
        latency_ms: 1500,
        path_contains: "/serviceaccounts".into(),
        ..Default::default()
    });
    approve(sim, name).await;
    wait_phase(sim, name, "Approved", 10).await;
    (ctl, (seen, recorder))
}
