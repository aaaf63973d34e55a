//! Watch streams: initial state or history replay, live changes, bookmarks, timeouts and 410 Gone.
//!
//! As kube-apiserver: a watch from a resourceVersion older than the history window is answered with
//! HTTP 200 and one `ERROR` event carrying a 410 `Expired` Status (cacher.go returns an error watcher
//! "to match the uncached watch implementation"; watch_cache.go words it "too old resource version:
//! RV (OLDEST)"), and a watch without `timeoutSeconds` is ended by the server after
//! `--min-request-timeout` times a random factor in [1, 2) (endpoints/handlers/get.go), so clients
//! re-watch and, once their resourceVersion has left the window, relist.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::api::{Ctx, q};
use crate::errors::{ApiError, ApiResult};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::ChangeKind;

/// How often bookmarks are sent when the client allows them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(2);

fn line(kind: &str, obj: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// Serves `?watch=true` for a collection: the objects themselves, as a Table (`table`), or only their
/// metadata as PartialObjectMetadata (`metadata_only`).
pub fn serve(ctx: &Ctx<'_>, table: bool, metadata_only: bool) -> ApiResult<Response> {
    let rt = ctx.rr.rt.clone();
    let gr = rt.group_resource();
    let ns = ctx.rr.namespace.clone();
    let labels = LabelSelector::parse(q(ctx.query, "labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(q(ctx.query, "fieldSelector").unwrap_or(""), &rt.kind)?;
    let bookmarks = matches!(q(ctx.query, "allowWatchBookmarks"), Some("true") | Some("1"));
    let initial_events = matches!(q(ctx.query, "sendInitialEvents"), Some("true") | Some("1"));
    let mut timeout = q(ctx.query, "timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs);
    if timeout.is_none() {
        // get.go: `timeout = minRequestTimeout * (rand.Float64() + 1.0)` when the client sets none.
        let factor: f64 = rand::random_range(1.0..2.0);
        timeout = Some(ctx.cluster.config.min_request_timeout.mul_f64(factor));
    }
    if let Some(ms) = ctx.cluster.faults.get().watch_timeout_ms {
        let f = Duration::from_millis(ms);
        timeout = Some(timeout.map_or(f, |t| t.min(f)));
    }
    let rv_param = q(ctx.query, "resourceVersion").unwrap_or("").to_string();
    let start_rv: Option<u64> = match rv_param.as_str() {
        "" | "0" => None,
        s => Some(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?,
        ),
    };
    // Bookmarks go through the same transformation as the objects: a metadata-only watch's are
    // PartialObjectMetadata.
    let (api_version, kind) = if metadata_only {
        ("meta.k8s.io/v1".to_string(), "PartialObjectMetadata".to_string())
    } else {
        (rt.api_version(), rt.kind.clone())
    };
    let cluster = ctx.cluster.clone();
    let matches = move |o: &Value| -> bool {
        let (ons, _) = crate::store::ns_name(o);
        ns.as_deref().is_none_or(|n| n == ons) && labels.matches(o) && fields.matches(o)
    };
    let wrap = {
        let rt = rt.clone();
        let query = ctx.query.clone();
        move |o: &Value| -> Value {
            let mut o = o.clone();
            if o.get("apiVersion").is_none() {
                o["apiVersion"] = json!(rt.api_version());
                o["kind"] = json!(rt.kind);
            }
            if table {
                crate::discovery::to_table(&rt, &json!({"items": [o]}), &query)
            } else if metadata_only {
                crate::api::partial_metadata(&o)
            } else {
                o
            }
        }
    };

    let (tx, rx) = mpsc::channel::<Bytes>(256);
    // Subscribe before reading state so nothing falls between the snapshot and the live stream.
    let (past, mut live, mut last_rv) = match start_rv {
        Some(rv) => match cluster.store.watch_from(rv) {
            Ok((past, live)) => (past.into_iter().map(Some).collect::<Vec<_>>(), live, rv),
            Err(compacted) => {
                tracing::info!(resource = %gr, rv = %rv_param, "watch from a compacted resourceVersion: 410 Gone");
                cluster
                    .expired_watches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let status = ApiError::expired(format!("too old resource version: {rv} ({compacted})")).status();
                let body = line("ERROR", &status);
                return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response());
            }
        },
        None => {
            let now = cluster.store.current_rv();
            let (_, live) = cluster
                .store
                .watch_from(now)
                .map_err(|_| ApiError::internal("watch history unavailable"))?;
            (Vec::new(), live, now)
        }
    };
    let initial: Vec<Value> = if start_rv.is_none() || initial_events {
        let (items, list_rv) = cluster.store.list_matching(&gr, None, &matches);
        // Live changes up to the snapshot are already in it.
        last_rv = list_rv;
        items
    } else {
        Vec::new()
    };
    let gr2 = gr.clone();
    tracing::info!(resource = %gr, rv = %rv_param, initial = initial.len(), "watch started");
    tokio::spawn(async move {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        for o in &initial {
            if tx.send(line("ADDED", &wrap(o))).await.is_err() {
                return;
            }
        }
        if initial_events && bookmarks {
            let bm = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last_rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(line("BOOKMARK", &bm)).await.is_err() {
                return;
            }
        }
        let emit = |c: &crate::store::Change| -> Option<Bytes> {
            // Changes of another collection are skipped; a second view of one (Events) is converted.
            let c = crate::events::change_for(&gr2, c)?;
            let now_m = matches(&c.object);
            let was_m = c.previous.as_ref().map(&matches);
            match (c.kind, was_m, now_m) {
                (ChangeKind::Added, _, true) => Some(line("ADDED", &wrap(&c.object))),
                (ChangeKind::Deleted, _, true) => Some(line("DELETED", &wrap(&c.object))),
                (ChangeKind::Modified, Some(true), true) => Some(line("MODIFIED", &wrap(&c.object))),
                (ChangeKind::Modified, Some(false), true) => Some(line("ADDED", &wrap(&c.object))),
                // cache_watcher.go convertToWatchEvent: an object that stops matching is DELETED
                // with its previous content (what the watcher last matched) at the new resourceVersion.
                (ChangeKind::Modified, Some(true), false) => {
                    let mut prev = c.previous.clone().unwrap_or_else(|| c.object.clone());
                    prev["metadata"]["resourceVersion"] = c.object["metadata"]["resourceVersion"].clone();
                    Some(line("DELETED", &wrap(&prev)))
                }
                (ChangeKind::Modified, None, true) => Some(line("MODIFIED", &wrap(&c.object))),
                _ => None,
            }
        };
        for c in past.into_iter().flatten() {
            if c.rv <= last_rv {
                continue;
            }
            last_rv = c.rv;
            if let Some(b) = emit(&c)
                && tx.send(b).await.is_err()
            {
                return;
            }
        }
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.tick().await;
        loop {
            let sleep_until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86400));
            tokio::select! {
                _ = tokio::time::sleep_until(sleep_until) => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let bm = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last_rv.max(cluster.store.current_rv()).to_string()}});
                    if tx.send(line("BOOKMARK", &bm)).await.is_err() { return; }
                }
                msg = live.recv() => match msg {
                    Ok(c) => {
                        if c.rv <= last_rv { continue; }
                        last_rv = c.rv;
                        if let Some(b) = emit(&c)
                            && tx.send(b).await.is_err() { return; }
                    }
                    // A watcher that fell behind is closed; the client re-watches from its last version.
                    Err(e) => {
                        tracing::info!(resource = %gr2, error = %e, "watcher fell behind; closing it");
                        return;
                    }
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<Bytes, std::io::Error>);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}
