//! Collection lists: selectors, pagination with snapshot `continue` tokens, and the resourceVersion
//! semantics of kube-apiserver.
//!
//! Modelled on the real server's source:
//! - apimachinery `pkg/apis/meta/internalversion/validation/validation.go` (`ValidateListOptions`):
//!   `resourceVersionMatch` needs a `resourceVersion`, is forbidden with `continue`, and `Exact` is
//!   forbidden for `"0"`; endpoints/handlers/get.go answers those with 422 `ListOptions.meta.k8s.io`.
//! - apiserver `storage/cacher/delegator.go` (`shouldDelegateList`): `Exact`, the legacy "limit with a
//!   resourceVersion" and `continue` are read from etcd at a revision (a snapshot); everything else
//!   is served from the watch cache, which waits up to 3 s for a resourceVersion it has not reached
//!   and then answers 504 "Too large resource version" with `retryAfterSeconds: 1`
//!   (`storage/cacher/watch_cache.go`, `waitUntilFreshAndBlock`).
//! - apiserver `storage/etcd3/store.go` and `errors.go`: a page after the first is read at the first
//!   page's revision; once compacted it is 410 with "The provided continue parameter is too old…" and
//!   a fresh token (revision -1: continue at the newest state) in the Status' `metadata.continue`; an
//!   exact list at a compacted revision is 410 "The resourceVersion for the provided list is too
//!   old."; a future revision is 504 Too large resource version.
//! - apiserver `storage/continue.go` (`EncodeContinue`): the token is base64url (no padding) of
//!   `{"v":"meta.k8s.io/v1","rv":N,"start":"<key after the last item>"}`.

use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{Ctx, q};
use crate::errors::{ApiError, ApiResult, Cause};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{ListAt, ns_name};

/// How long a list waits for a resourceVersion the store has not reached (the watch cache's
/// `blockTimeout`).
pub const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

const CONTINUE_VERSION: &str = "meta.k8s.io/v1";

const LIST_TOO_OLD: &str = "The resourceVersion for the provided list is too old.";

const CONTINUE_TOO_OLD: &str = "The provided continue parameter is too old to display a consistent list result. \
You can start a new list without the continue parameter, or use the continue token in this response to retrieve \
the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that \
were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// The decoded form of a `continue` token.
#[derive(Debug, Serialize, Deserialize)]
struct ContinueToken {
    v: String,
    /// The revision of the first page; -1: continue at the newest state.
    rv: i64,
    /// Keys at or after this one are on the next page.
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let token = ContinueToken {
        v: CONTINUE_VERSION.into(),
        rv,
        start: start.into(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_continue(token: &str) -> ApiResult<ContinueToken> {
    let invalid =
        |why: &str| ApiError::bad_request(format!("invalid continue token: continue key is not valid: {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|e| invalid(&e.to_string()))?;
    let t: ContinueToken = serde_json::from_slice(&bytes).map_err(|e| invalid(&e.to_string()))?;
    if t.v != CONTINUE_VERSION {
        return Err(invalid(&format!(
            "server does not recognize this encoded version {:?}",
            t.v
        )));
    }
    if t.rv == 0 || t.rv < -1 {
        return Err(invalid(&format!(
            "incorrect encoded start resourceVersion (version {CONTINUE_VERSION})"
        )));
    }
    Ok(t)
}

/// Which state a list reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadAt {
    /// The newest state (the watch cache, or a quorum read).
    Latest,
    /// The newest state, once the store has reached this resourceVersion (`NotOlderThan`).
    NotOlderThan(u64),
    /// The state exactly at this resourceVersion (an etcd read at a revision).
    Exact(u64),
}

fn parse_rv(s: &str) -> ApiResult<u64> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))
}

/// Validates the list options and decides what state the list reads.
fn read_at(ctx: &Ctx<'_>) -> ApiResult<(ReadAt, Option<ContinueToken>)> {
    let rv = q(ctx.query, "resourceVersion").unwrap_or("");
    let rv_match = q(ctx.query, "resourceVersionMatch").unwrap_or("");
    let cont = q(ctx.query, "continue").filter(|c| !c.is_empty());
    let limit: u64 = q(ctx.query, "limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    if !rv_match.is_empty() {
        let mut causes = Vec::new();
        if rv.is_empty() {
            causes.push(Cause::inferred(
                "resourceVersionMatch",
                "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if cont.is_some() {
            causes.push(Cause::inferred(
                "resourceVersionMatch",
                "Forbidden: resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if rv_match != "Exact" && rv_match != "NotOlderThan" {
            causes.push(Cause::inferred(
                "resourceVersionMatch",
                format!("Unsupported value: \"{rv_match}\": supported values: \"Exact\", \"NotOlderThan\", \"\""),
            ));
        }
        if rv_match == "Exact" && rv == "0" {
            causes.push(Cause::inferred(
                "resourceVersionMatch",
                "Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid_causes("ListOptions", "meta.k8s.io", "", causes));
        }
    }
    if let Some(cont) = cont {
        if !rv.is_empty() && rv != "0" {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let token = decode_continue(cont)?;
        let at = match u64::try_from(token.rv) {
            Ok(r) => ReadAt::Exact(r),
            Err(_) => ReadAt::Latest,
        };
        return Ok((at, Some(token)));
    }
    let at = match (rv, rv_match) {
        ("" | "0", _) => ReadAt::Latest,
        (r, "Exact") => ReadAt::Exact(parse_rv(r)?),
        // The legacy semantics: a limit with a resourceVersion and no match is an exact read.
        (r, "") if limit > 0 => ReadAt::Exact(parse_rv(r)?),
        (r, _) => ReadAt::NotOlderThan(parse_rv(r)?),
    };
    Ok((at, None))
}

/// Waits, as the watch cache does, until the store reaches the resourceVersion a `NotOlderThan` list
/// asks for; 504 Too large resource version after [`FRESHNESS_WAIT`]. Lists that need no wait, or
/// whose options are invalid (the list itself reports those), return at once.
pub async fn wait_until_fresh(ctx: &Ctx<'_>) -> ApiResult<()> {
    let Ok((ReadAt::NotOlderThan(want), _)) = read_at(ctx) else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + FRESHNESS_WAIT;
    loop {
        let current = ctx.cluster.store.current_rv();
        if current >= want {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::too_large_resource_version(want, current, 1));
        }
        // Polling keeps the store free of waiter bookkeeping; writes are rare in a simulator.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lists a collection with selectors, pagination and resourceVersion semantics.
pub fn list(ctx: &Ctx<'_>) -> ApiResult<Value> {
    let rt = &ctx.rr.rt;
    let gr = rt.group_resource();
    let labels = LabelSelector::parse(q(ctx.query, "labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(q(ctx.query, "fieldSelector").unwrap_or(""), &rt.kind)?;
    let keep = |o: &Value| labels.matches(o) && fields.matches(o);
    let (at, token) = read_at(ctx)?;
    let ns = ctx.rr.namespace.as_deref();
    let store = &ctx.cluster.store;
    let (mut items, list_rv) = match at {
        ReadAt::Latest | ReadAt::NotOlderThan(_) => store.list_matching(&gr, ns, keep),
        ReadAt::Exact(rv) => match store.list_at(&gr, ns, rv, keep) {
            Ok(items) => (items, rv),
            Err(ListAt::Future { current }) => {
                return Err(ApiError::too_large_resource_version(rv, current, 0));
            }
            Err(ListAt::Compacted) => {
                tracing::info!(resource = %gr, rv, "list at a compacted resourceVersion: 410 Gone");
                return Err(match &token {
                    Some(t) => {
                        let mut e = ApiError::expired(CONTINUE_TOO_OLD);
                        e.list_continue = Some(encode_continue(-1, &t.start).into());
                        e
                    }
                    None => ApiError::expired(LIST_TOO_OLD),
                });
            }
        },
    };
    let key = |o: &Value| {
        let (ns, n) = ns_name(o);
        format!("{ns}/{n}")
    };
    if let Some(t) = &token {
        items.retain(|o| key(o) >= t.start);
    }
    let limit: usize = q(ctx.query, "limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if limit > 0 && items.len() > limit {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some(last) = items.last() {
            // The next page starts just after the last key, at the same revision (etcd3 store.go).
            let start = format!("{}\u{0}", key(last));
            let snapshot_rv = i64::try_from(list_rv).unwrap_or(i64::MAX);
            meta["continue"] = json!(encode_continue(snapshot_rv, &start));
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    for it in items.iter_mut() {
        if it.get("apiVersion").is_none() {
            it["apiVersion"] = json!(rt.api_version());
            it["kind"] = json!(rt.kind);
        }
    }
    Ok(json!({
        "apiVersion": rt.api_version(),
        "kind": format!("{}List", rt.kind),
        "metadata": meta,
        "items": items,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_bad_ones_are_400() {
        let t = decode_continue(&encode_continue(42, "ns/a\u{0}")).unwrap();
        assert_eq!((t.rv, t.start.as_str()), (42, "ns/a\u{0}"));
        for bad in ["!!", "bm90IGpzb24", &encode_continue(0, "x")] {
            let e = decode_continue(bad).unwrap_err();
            assert_eq!(e.code, 400, "{bad}");
            assert!(
                e.message
                    .starts_with("invalid continue token: continue key is not valid"),
                "{}",
                e.message
            );
        }
    }
}
