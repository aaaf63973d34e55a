//! `janus request`, `requests`, `show` and the decisions (`approve`, `deny`, `revoke`, `extend`, `withdraw`).

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::cli::{ListArgs, RequestArgs};
use crate::http::Api;
use crate::output::{self, Format, s, short};
use crate::{CliError, ExitCode, Target};

/// Largest page the API serves; `requests` lists one page.
const LIST_LIMIT: &str = "500";

/// Phases after which a request never becomes Active.
const ENDED: [&str; 5] = ["Expired", "Denied", "Revoked", "Cancelled", "Failed"];

/// `janus request`.
pub async fn create(t: &Target, a: RequestArgs) -> Result<i32, CliError> {
    let mut body = json!({
        "cluster": a.cluster,
        "namespaces": a.namespaces.iter().map(|n| n.trim()).filter(|n| !n.is_empty()).collect::<Vec<_>>(),
        "reason": a.reason,
    });
    let m = body
        .as_object_mut()
        .ok_or_else(|| CliError::new(ExitCode::Usage, "internal: body"))?;
    if let Some(d) = a.duration {
        m.insert("ttlSeconds".into(), d.into());
    }
    if let Some(r) = a.role {
        m.insert("role".into(), r.into());
    }
    if let Some(st) = &a.start {
        m.insert("startAt".into(), start_time(st, chrono::Utc::now())?.into());
    }
    if let Some(sel) = a.selector {
        m.insert("podSelector".into(), sel.into());
    }
    if let Some(w) = &a.workload {
        let (kind, name) = workload(w)?;
        m.insert("podScope".into(), json!({"workload": {"kind": kind, "name": name}}));
    }
    if a.break_glass {
        m.insert("breakGlass".into(), true.into());
    }
    let api = Api::new(t)?;
    let created = api.post(&["api", "v1", "requests"], &body).await?;
    let name = s(&created, "name").to_string();
    if !a.wait {
        if !output::machine(a.out.format, &created)? {
            output::out(&format!("Request {name} created ({}).\n", s(&created, "phase")));
            hint_next(&created);
        }
        return Ok(0);
    }
    if a.out.format == Format::Table {
        eprintln!("Request {name} created; waiting until access is active…");
    }
    let (view, code) = wait_active(&api, &name, Duration::from_secs(a.wait_timeout), a.out.format).await?;
    if !output::machine(a.out.format, &view)? {
        if code == 0 {
            output::out(&format!(
                "Request {name} is Active until {}.\n",
                or_dash(s(&view, "expiresAt"))
            ));
            output::out(&format!("Open a shell: janus shell {name}\n"));
        } else {
            output::out(&format!(
                "Request {name} ended {}: {}\n",
                s(&view, "phase"),
                or_dash(s(&view, "message"))
            ));
        }
    }
    if code != 0 && a.out.format != Format::Table {
        eprintln!(
            "janus: request {name} is {} and will not become Active",
            output::clean(s(&view, "phase"))
        );
    }
    Ok(code)
}

/// Polls the request until it is Active (0) or ended (9), with a backoff from 1 s up to 5 s; exit 9 after
/// `timeout`. Polling rather than the event stream: one GET is the whole contract and survives proxies that
/// cut long-lived responses.
async fn wait_active(api: &Api, name: &str, timeout: Duration, format: Format) -> Result<(Value, i32), CliError> {
    // The flag parser bounds --wait-timeout; checked all the same, an overflowing Instant panics.
    let deadline = Instant::now().checked_add(timeout).ok_or_else(|| {
        CliError::new(
            ExitCode::Usage,
            format!("--wait-timeout {}s is too long", timeout.as_secs()),
        )
    })?;
    let mut delay = Duration::from_secs(1);
    let mut last_phase = String::new();
    loop {
        let view = api.get(&["api", "v1", "requests", name], &[]).await?;
        let phase = s(&view, "phase").to_string();
        if phase == "Active" {
            return Ok((view, 0));
        }
        if ENDED.contains(&phase.as_str()) {
            return Ok((view, ExitCode::WaitFailed as i32));
        }
        if phase != last_phase && format == Format::Table {
            eprintln!(
                "{name}: {}{}",
                output::clean(&phase),
                output::clean(&message_suffix(&view))
            );
        }
        last_phase = phase;
        if Instant::now() + delay > deadline {
            return Err(CliError::new(
                ExitCode::WaitFailed,
                format!("gave up waiting: request {name} is still {last_phase}; see it with: janus show {name}"),
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(5));
    }
}

fn message_suffix(view: &Value) -> String {
    let m = s(view, "message");
    if m.is_empty() { String::new() } else { format!(" ({m})") }
}

/// After creating: what happens next.
fn hint_next(view: &Value) {
    let name = s(view, "name");
    match s(view, "phase") {
        "Pending" => output::out(&format!(
            "It waits for approval; follow it with: janus show {name} (or create it with --wait)\n"
        )),
        "Active" | "Approved" => output::out(&format!("Open a shell: janus shell {name}\n")),
        _ => {}
    }
}

/// `--start`: RFC 3339 as is, or `+DURATION` from `now`.
fn start_time(raw: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, CliError> {
    let bad = |why: String| CliError::new(ExitCode::Usage, format!("--start {raw:?}: {why}"));
    if let Some(rel) = raw.strip_prefix('+') {
        let secs = crate::cli::parse_duration(rel).map_err(bad)?;
        let secs = i64::try_from(secs).map_err(|_| bad("too far ahead".into()))?;
        // try_seconds: TimeDelta::seconds panics beyond ±i64::MAX milliseconds (+300000000y).
        let at = chrono::TimeDelta::try_seconds(secs)
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| bad("too far ahead".into()))?;
        return Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .map_err(|e| bad(format!("{e}; write it like 2030-01-02T09:00:00Z or +1h")))
}

/// `--workload KIND/NAME`, the kind in the API's spelling (`deployment` → `Deployment`).
fn workload(raw: &str) -> Result<(String, String), CliError> {
    let bad = || {
        CliError::new(
            ExitCode::Usage,
            format!("--workload {raw:?}: write it as KIND/NAME, e.g. deployment/checkout"),
        )
    };
    let (kind, name) = raw.split_once('/').ok_or_else(bad)?;
    if name.is_empty() || name.contains('/') {
        return Err(bad());
    }
    let kind = match kind.to_ascii_lowercase().as_str() {
        "deployment" | "deploy" | "deployments" => "Deployment",
        "statefulset" | "sts" | "statefulsets" => "StatefulSet",
        "daemonset" | "ds" | "daemonsets" => "DaemonSet",
        "replicaset" | "rs" | "replicasets" => "ReplicaSet",
        "job" | "jobs" => "Job",
        "cronjob" | "cj" | "cronjobs" => "CronJob",
        // Anything else goes to the server as written; it names the kinds it knows.
        _ => kind,
    };
    Ok((kind.to_string(), name.to_string()))
}

/// `janus requests`.
pub async fn list(t: &Target, a: &ListArgs) -> Result<i32, CliError> {
    let mut q = vec![("scope", if a.all { "all" } else { "mine" }), ("limit", LIST_LIMIT)];
    if let Some(c) = &a.cluster {
        q.push(("cluster", c));
    }
    if let Some(p) = &a.phase {
        q.push(("phase", p));
    }
    let page = Api::new(t)?.get(&["api", "v1", "requests"], &q).await?;
    let items = page.get("items").cloned().unwrap_or(Value::Array(Vec::new()));
    if output::machine(a.out.format, &items)? {
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = items
        .as_array()
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let mut row = vec![
                s(r, "name").to_string(),
                s(r, "phase").to_string(),
                s(r, "cluster").to_string(),
                join(r.get("namespaces")),
                or_dash(r.get("role").map(|x| s(x, "name")).unwrap_or("")),
            ];
            if a.all {
                row.push(s(r, "requester").to_string());
            }
            row.push(or_dash(s(r, "expiresAt")));
            row.push(short(s(r, "reason"), 40));
            row
        })
        .collect();
    if rows.is_empty() {
        output::out(if a.all {
            "No requests.\n"
        } else {
            "You have no requests; ask for access with: janus request --cluster C -n NS --for 1h --reason …\n"
        });
        return Ok(0);
    }
    let mut header = vec!["NAME", "PHASE", "CLUSTER", "NAMESPACES", "ROLE"];
    if a.all {
        header.push("REQUESTER");
    }
    header.extend(["EXPIRES", "REASON"]);
    output::out(&output::table(&header, &rows));
    let total = page.get("total").and_then(Value::as_u64).unwrap_or(0);
    if total > rows.len() as u64 {
        eprintln!("({} of {total} shown; narrow it with --cluster or --phase)", rows.len());
    }
    Ok(0)
}

/// A request name must be a Kubernetes object name (RFC 1123 subdomain); anything else names no request,
/// and is refused here so that the person reads "no such request" rather than whatever the server makes of
/// a name Kubernetes could never hold.
pub fn check_name(name: &str) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name
            .split('.')
            .all(|p| !p.is_empty() && !p.starts_with('-') && !p.ends_with('-'));
    if ok {
        Ok(())
    } else {
        Err(CliError::new(
            ExitCode::NotFound,
            format!(
                "no request is named {name:?}: names are lowercase letters, digits, '-' and '.'; list yours with: \
                 janus requests"
            ),
        ))
    }
}

/// `janus show`.
pub async fn show(t: &Target, name: &str, format: Format) -> Result<i32, CliError> {
    check_name(name)?;
    let view = Api::new(t)?.get(&["api", "v1", "requests", name], &[]).await?;
    if !output::machine(format, &view)? {
        output::out(&describe(&view));
    }
    Ok(0)
}

/// A decision: `POST /api/v1/requests/{name}/{action}`.
pub async fn decide(
    t: &Target,
    name: &str,
    action: &str,
    body: Map<String, Value>,
    format: Format,
) -> Result<i32, CliError> {
    check_name(name)?;
    let view = Api::new(t)?
        .post(&["api", "v1", "requests", name, action], &Value::Object(body))
        .await?;
    if !output::machine(format, &view)? {
        let done = match action {
            "approve" => "Approved",
            "deny" => "Denied",
            "revoke" => "Revoked",
            "extend" => "Extended",
            "withdraw" => "Withdrew",
            other => other,
        };
        output::out(&format!("{done} {name}; it is now {}.\n", s(&view, "phase")));
    }
    Ok(0)
}

/// One request as "key: value" lines.
fn describe(v: &Value) -> String {
    let approvals = v
        .get("approvals")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| {
                    let who = x
                        .get("approver")
                        .and_then(Value::as_str)
                        .or_else(|| x.get("by").and_then(Value::as_str))
                        .unwrap_or("?");
                    who.to_string()
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    output::pairs(&[
        ("Name", s(v, "name").to_string()),
        ("Phase", s(v, "phase").to_string()),
        ("Message", s(v, "message").to_string()),
        ("Requester", s(v, "requester").to_string()),
        ("Cluster", s(v, "cluster").to_string()),
        ("Namespaces", join(v.get("namespaces"))),
        (
            "Role",
            v.get("role").map(|x| s(x, "name").to_string()).unwrap_or_default(),
        ),
        ("Scope", s(v, "scope").to_string()),
        ("Reason", s(v, "reason").to_string()),
        (
            "Duration",
            humanise(v.get("effectiveTtlSeconds").and_then(Value::as_i64)),
        ),
        ("Created", s(v, "createdAt").to_string()),
        ("Starts", s(v, "startAt").to_string()),
        ("Approved by", approvals),
        ("Active since", s(v, "activeAt").to_string()),
        ("Expires", s(v, "expiresAt").to_string()),
        ("Ended", s(v, "endedAt").to_string()),
    ])
}

fn humanise(secs: Option<i64>) -> String {
    match secs {
        Some(s) if s > 0 => humantime::format_duration(Duration::from_secs(s.unsigned_abs())).to_string(),
        _ => String::new(),
    }
}

fn join(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_are_rfc3339_or_relative() {
        let now = chrono::DateTime::parse_from_rfc3339("2030-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(start_time("+1h", now).unwrap(), "2030-01-01T11:00:00Z");
        assert_eq!(
            start_time("2030-01-02T09:00:00+01:00", now).unwrap(),
            "2030-01-02T08:00:00Z"
        );
        for bad in [
            "tomorrow",
            "+soon",
            "2030-01-02",
            "+300000000y",
            "+18446744073709551615s",
        ] {
            assert_eq!(start_time(bad, now).unwrap_err().code, ExitCode::Usage, "{bad}");
        }
    }

    #[test]
    fn request_names_are_kubernetes_names() {
        for good in ["req-1", "a", "x.y-z", "0abc"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Req", "a b", "../x", "-a", "a-", "a..b", "a/b", &"x".repeat(254)] {
            assert_eq!(check_name(bad).unwrap_err().code, ExitCode::NotFound, "{bad}");
        }
    }

    #[test]
    fn workloads_are_kind_slash_name() {
        assert_eq!(
            workload("deploy/checkout").unwrap(),
            ("Deployment".to_string(), "checkout".to_string())
        );
        assert_eq!(workload("sts/db").unwrap().0, "StatefulSet");
        for bad in ["checkout", "deployment/", "a/b/c"] {
            assert!(workload(bad).is_err(), "{bad}");
        }
    }
}
