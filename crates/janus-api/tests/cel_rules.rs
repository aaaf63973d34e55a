#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The CRD's CEL rules (`x-kubernetes-validations`), taken from the CRD `janus crd` prints and
//! evaluated with the `cel` crate the way an API server applies them: each rule at its place in the
//! schema, `self` bound to the value there and `oldSelf` to the previous one, transition rules only
//! where an old value exists.
//!
//! Every legitimate change the web makes (approve, deny, revoke, withdraw, extend) must pass; every
//! change that would alter what was approved, or rewrite a decision, must be refused.

use janus_api::access_request::MAX_TTL_SECONDS;
use serde_json::{Value, json};

/// One rule, where it sits (`spec.namespaces`), and its message.
#[derive(Debug, Clone)]
struct Rule {
    path: Vec<String>,
    rule: String,
    message: String,
}

fn schema() -> Value {
    let yaml = janus_api::crd_yaml().expect("the CRD serializes");
    let crd: Value = yaml_serde::from_str(&yaml).expect("the CRD parses");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn collect(schema: &Value, path: &mut Vec<String>, out: &mut Vec<Rule>) {
    if let Some(rules) = schema.get("x-kubernetes-validations").and_then(Value::as_array) {
        for r in rules {
            out.push(Rule {
                path: path.clone(),
                rule: r["rule"].as_str().expect("rule text").to_string(),
                message: r["message"].as_str().unwrap_or("").to_string(),
            });
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            path.push(name.clone());
            collect(sub, path, out);
            path.pop();
        }
    }
    if let Some(items) = schema.get("items") {
        path.push("[*]".into());
        collect(items, path, out);
        path.pop();
    }
}

fn rules() -> Vec<Rule> {
    let mut out = Vec::new();
    collect(&schema(), &mut Vec::new(), &mut out);
    out
}

/// JSON as CEL sees a Kubernetes object: integers are `int`.
fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => s.clone().into(),
        Value::Array(a) => a.iter().map(to_cel).collect::<Vec<_>>().into(),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| (k.clone(), to_cel(v)))
            .collect::<std::collections::HashMap<String, cel::Value>>()
            .into(),
    }
}

/// The values a path reaches (several below a list).
fn at<'a>(v: &'a Value, path: &[String]) -> Vec<&'a Value> {
    match path.split_first() {
        None => vec![v],
        Some((seg, rest)) if seg == "[*]" => v
            .as_array()
            .map(|a| a.iter().flat_map(|i| at(i, rest)).collect())
            .unwrap_or_default(),
        Some((seg, rest)) => v.get(seg).map(|c| at(c, rest)).unwrap_or_default(),
    }
}

fn eval(rule: &Rule, new: &Value, old: Option<&Value>) -> Result<bool, String> {
    let program = cel::Program::compile(&rule.rule).map_err(|e| format!("{}: {e}", rule.rule))?;
    let mut ctx = cel::Context::default();
    ctx.add_variable_from_value("self", to_cel(new));
    if let Some(o) = old {
        ctx.add_variable_from_value("oldSelf", to_cel(o));
    }
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("{} gave {other:?}", rule.rule)),
        Err(e) => Err(format!("{} failed: {e}", rule.rule)),
    }
}

/// The messages of the rules an API server would refuse `new` with (`old` for updates).
fn refusals(old: Option<&Value>, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for rule in rules() {
        let transition = rule.rule.contains("oldSelf");
        let news = at(new, &rule.path);
        // Items of lists are correlated only for map-type lists; none of ours are, so list items see
        // no oldSelf (as on a real API server). Everything else here is a single value.
        let below_list = rule.path.iter().any(|s| s == "[*]");
        for n in news {
            let o = match old {
                Some(old) if !below_list => at(old, &rule.path).into_iter().next(),
                _ => None,
            };
            if transition && o.is_none() {
                continue;
            }
            match eval(&rule, n, o) {
                Ok(true) => {}
                Ok(false) => out.push(format!("{}: {}", rule.path.join("."), rule.message)),
                Err(e) => panic!("rule at {} does not evaluate: {e}", rule.path.join(".")),
            }
        }
    }
    out
}

fn base() -> Value {
    json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "r1"},
        "spec": {"requester": "jane@example.com", "cluster": "central", "namespaces": ["team-a"],
                 "reason": "debugging", "ttlSeconds": 3600}
    })
}

fn with(mut v: Value, f: impl FnOnce(&mut Value)) -> Value {
    f(&mut v["spec"]);
    v
}

fn approval() -> Value {
    json!({"by": "admin@example.com", "at": "2026-01-01T00:00:00.000Z", "ttlSeconds": 1800})
}

fn approved() -> Value {
    with(base(), |s| s["approval"] = approval())
}

fn ext(by: &str, at: &str, seconds: i64) -> Value {
    json!({"by": by, "at": at, "seconds": seconds})
}

fn extended() -> Value {
    with(approved(), |s| {
        s["extensions"] = json!([
            ext("admin@example.com", "2026-01-01T00:10:00.000Z", 600),
            ext("other@example.com", "2026-01-01T00:20:00.000Z", 300)
        ])
    })
}

#[track_caller]
fn allowed(old: Option<&Value>, new: &Value) {
    let r = refusals(old, new);
    assert!(r.is_empty(), "refused: {r:?}\nold: {old:?}\nnew: {new}");
}

#[track_caller]
fn refused(old: Option<&Value>, new: &Value, want: &str) {
    let r = refusals(old, new);
    assert!(
        r.iter().any(|m| m.contains(want)),
        "wanted a refusal containing {want:?}, got {r:?}\nnew: {new}"
    );
}

/// `fieldPath`, `reason` and `messageExpression` are unknown to API servers before 1.27/1.28, which the
/// chart supports: with strict field validation they would refuse the whole CRD.
#[test]
fn rules_use_only_fields_every_supported_api_server_knows() {
    fn walk(v: &Value, found: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(rules) = o.get("x-kubernetes-validations").and_then(Value::as_array) {
                    for r in rules {
                        for k in r
                            .as_object()
                            .map(|o| o.keys().cloned().collect::<Vec<_>>())
                            .unwrap_or_default()
                        {
                            if k != "rule" && k != "message" {
                                found.push(format!("{k} in {r}"));
                            }
                        }
                    }
                }
                o.values().for_each(|c| walk(c, found));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(&schema(), &mut found);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn every_invariant_is_a_rule_in_the_generated_crd() {
    let rules = rules();
    let has = |path: &str, text: &str| rules.iter().any(|r| r.path.join(".") == path && r.rule.contains(text));
    for field in ["requester", "cluster", "namespaces", "ttlSeconds", "reason"] {
        assert!(
            has(&format!("spec.{field}"), "self == oldSelf"),
            "spec.{field} is not immutable"
        );
    }
    for decision in ["approval", "denial", "revocation", "withdrawal", "extensions"] {
        assert!(
            has("spec", &format!("oldSelf.{decision}")),
            "no rule keeps spec.{decision}"
        );
    }
    assert!(has("spec", "!(has(self.approval) && has(self.denial))"));
    for decision in ["approval", "denial", "revocation", "withdrawal"] {
        assert!(
            has(&format!("spec.{decision}"), "self == oldSelf"),
            "spec.{decision} can be changed"
        );
    }
    assert!(has("spec.extensions", "oldSelf"), "spec.extensions can be rewritten");
    for r in &rules {
        assert!(!r.message.is_empty(), "rule {} at {:?} has no message", r.rule, r.path);
    }
}

#[test]
fn bounds_are_in_the_schema() {
    let s = schema();
    let spec = &s["properties"]["spec"]["properties"];
    // schemars writes bounds as floats (1.0); compare numerically.
    let num = |v: &Value| v.as_f64().expect("a numeric bound");
    let max = MAX_TTL_SECONDS as f64;
    assert_eq!(num(&spec["ttlSeconds"]["minimum"]), 1.0);
    assert_eq!(num(&spec["ttlSeconds"]["maximum"]), max);
    assert_eq!(num(&spec["approval"]["properties"]["ttlSeconds"]["maximum"]), max);
    assert_eq!(num(&spec["approval"]["properties"]["ttlSeconds"]["minimum"]), 1.0);
    assert_eq!(num(&spec["namespaces"]["minItems"]), 1.0);
    assert_eq!(
        num(&spec["extensions"]["items"]["properties"]["seconds"]["minimum"]),
        1.0
    );
    // Bounded sizes let an API server estimate the cost of the rules that compare lists.
    assert!(spec["extensions"]["maxItems"].is_number());
    assert!(spec["extensions"]["items"]["properties"]["at"]["maxLength"].is_number());
}

#[test]
fn the_webs_own_changes_pass() {
    allowed(None, &base());
    allowed(None, &approved());
    // approve (with and without a TTL override)
    allowed(Some(&base()), &approved());
    allowed(
        Some(&base()),
        &with(base(), |s| {
            s["approval"] = json!({"by": "admin@example.com", "at": "2026-01-01T00:00:00.000Z"})
        }),
    );
    // deny
    let denied =
        with(
            base(),
            |s| s["denial"] = json!({"by": "admin@example.com", "at": "2026-01-01T00:00:00.000Z", "reason": "no"}),
        );
    allowed(Some(&base()), &denied);
    // withdraw while pending, after a denial not yet acted on, and after approval
    let withdraw = json!({"by": "jane@example.com", "at": "2026-01-01T00:05:00.000Z"});
    allowed(Some(&base()), &with(base(), |s| s["withdrawal"] = withdraw.clone()));
    allowed(
        Some(&denied),
        &with(denied.clone(), |s| s["withdrawal"] = withdraw.clone()),
    );
    allowed(
        Some(&approved()),
        &with(approved(), |s| s["withdrawal"] = withdraw.clone()),
    );
    // revoke
    let revoked =
        with(
            approved(),
            |s| {
                s["revocation"] = json!({"by": "admin@example.com", "at": "2026-01-01T00:30:00.000Z", "reason": "done"})
            },
        );
    allowed(Some(&approved()), &revoked);
    allowed(
        Some(&extended()),
        &with(extended(), |s| s["revocation"] = revoked["spec"]["revocation"].clone()),
    );
    // extend: the web sends the whole list with one entry appended
    let one = with(approved(), |s| {
        s["extensions"] = json!([ext("admin@example.com", "2026-01-01T00:10:00.000Z", 600)])
    });
    allowed(Some(&approved()), &one);
    allowed(Some(&one), &extended());
    // an identical extension amount by the same admin a moment later
    let again = with(extended(), |s| {
        s["extensions"]
            .as_array_mut()
            .unwrap()
            .push(ext("other@example.com", "2026-01-01T00:20:00.001Z", 300))
    });
    allowed(Some(&extended()), &again);
    // metadata-only updates (the controller's finalizer) pass untouched
    allowed(Some(&extended()), &extended());
}

#[test]
fn what_was_asked_is_immutable() {
    let old = approved();
    refused(
        Some(&old),
        &with(old.clone(), |s| s["namespaces"] = json!(["team-a", "k8s-janus"])),
        "namespaces are immutable",
    );
    refused(
        Some(&old),
        &with(old.clone(), |s| s["namespaces"] = json!(["kube-system"])),
        "namespaces are immutable",
    );
    refused(
        Some(&old),
        &with(old.clone(), |s| s["requester"] = json!("mallory@example.com")),
        "requester is immutable",
    );
    refused(
        Some(&old),
        &with(old.clone(), |s| s["cluster"] = json!("prod")),
        "cluster is immutable",
    );
    refused(
        Some(&old),
        &with(old.clone(), |s| s["ttlSeconds"] = json!(604800)),
        "ttlSeconds is immutable",
    );
    refused(
        Some(&old),
        &with(old.clone(), |s| s["reason"] = json!("something else")),
        "reason is immutable",
    );
    // Also before approval: an approver decides on what they see.
    refused(
        Some(&base()),
        &with(base(), |s| s["namespaces"] = json!(["team-b"])),
        "namespaces are immutable",
    );
}

#[test]
fn decisions_are_set_once() {
    let old = approved();
    refused(
        Some(&old),
        &with(old.clone(), |s| s["approval"]["ttlSeconds"] = json!(604800)),
        "approval can be set once",
    );
    refused(
        Some(&old),
        &with(old.clone(), |s| s["approval"]["by"] = json!("someone@example.com")),
        "approval can be set once",
    );
    refused(
        Some(&old),
        &with(old.clone(), |s| {
            s.as_object_mut().unwrap().remove("approval");
        }),
        "never removed once made",
    );
    for (field, value) in [
        (
            "denial",
            json!({"by": "a@x.io", "at": "2026-01-01T00:00:00Z", "reason": "no"}),
        ),
        (
            "revocation",
            json!({"by": "a@x.io", "at": "2026-01-01T00:00:00Z", "reason": "r"}),
        ),
        ("withdrawal", json!({"by": "a@x.io", "at": "2026-01-01T00:00:00Z"})),
    ] {
        let start = if field == "denial" { base() } else { approved() };
        let set = with(start.clone(), |s| s[field] = value.clone());
        let changed = with(set.clone(), |s| s[field]["by"] = json!("b@x.io"));
        let removed = with(set.clone(), |s| {
            s.as_object_mut().unwrap().remove(field);
        });
        let want = format!("{field} can be set once");
        refused(Some(&set), &changed, &want);
        // Removal is seen only from the parent (a rule on the field is not evaluated once it is gone).
        refused(Some(&set), &removed, "never removed once made");
    }
}

#[test]
fn extensions_are_append_only() {
    let old = extended();
    let list = |v: &Value| v["spec"]["extensions"].as_array().unwrap().clone();
    let want = "extensions are append-only";
    let mut changed = list(&old);
    changed[0]["seconds"] = json!(604800);
    refused(
        Some(&old),
        &with(old.clone(), |s| s["extensions"] = json!(changed)),
        want,
    );
    let mut reordered = list(&old);
    reordered.swap(0, 1);
    refused(
        Some(&old),
        &with(old.clone(), |s| s["extensions"] = json!(reordered)),
        want,
    );
    let mut inserted = list(&old);
    inserted.insert(1, ext("mallory@example.com", "2026-01-01T00:15:00.000Z", 9000));
    refused(
        Some(&old),
        &with(old.clone(), |s| s["extensions"] = json!(inserted)),
        want,
    );
    let mut shortened = list(&old);
    shortened.pop();
    refused(
        Some(&old),
        &with(old.clone(), |s| s["extensions"] = json!(shortened)),
        want,
    );
    refused(
        Some(&old),
        &with(old.clone(), |s| {
            s.as_object_mut().unwrap().remove("extensions");
        }),
        want,
    );
}

#[test]
fn approval_and_denial_exclude_each_other() {
    let both = with(approved(), |s| {
        s["denial"] = json!({"by": "b@x.io", "at": "2026-01-01T00:00:00Z", "reason": "no"})
    });
    let want = "either approved or denied";
    refused(None, &both, want);
    refused(Some(&approved()), &both, want);
    let denied = with(base(), |s| {
        s["denial"] = json!({"by": "b@x.io", "at": "2026-01-01T00:00:00Z", "reason": "no"})
    });
    refused(
        Some(&denied),
        &with(denied.clone(), |s| s["approval"] = approval()),
        want,
    );
}
