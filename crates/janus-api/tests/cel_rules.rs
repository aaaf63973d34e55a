#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The CRD's CEL rules (`x-kubernetes-validations`), taken from the CRD `janus crd` prints and
//! evaluated by kubesim's CRD validator the way an API server applies them: each rule at its place in
//! the schema, `self` bound to the value there and `oldSelf` to the previous one, transition rules only
//! where an old value exists.
//!
//! Every legitimate change the web makes (approve, deny, revoke, withdraw, extend, append an approval,
//! acknowledge a break-glass activation) must pass; every change that would alter what was approved, or
//! rewrite a decision, must be refused.

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

/// The CRD's rules compiled by kubesim's validator (crates/kubesim/src/cel.rs), which models
/// kube-apiserver's `staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/validation.go`:
/// field references are checked against the schema when the CRD is registered; on a write every rule
/// runs at its place with `self` (and `oldSelf` where an old value correlates: never for items of our
/// atomic lists), transition rules only on update, unchanged values ratcheted.
fn validator() -> kubesim::cel::Validator {
    kubesim::cel::Validator::compile(&schema(), "spec.versions[0].schema.openAPIV3Schema")
        .unwrap_or_else(|e| panic!("the generated CRD's rules do not compile: {e:?}"))
        .expect("the CRD has rules")
}

/// The causes an API server would refuse `new` with (`old` for updates), as `field: message`.
fn refusals(old: Option<&Value>, new: &Value) -> Vec<String> {
    let causes = validator().validate(new, old);
    for c in &causes {
        // A rule that fails to evaluate also refuses the write, but it is a bug in the rule, not the
        // refusal a test wants to see.
        assert!(
            !c.message.contains("evaluating rule") && !c.message.contains("did not match a supported"),
            "a rule does not evaluate at {}: {}",
            c.field,
            c.message
        );
    }
    causes
        .into_iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
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
    // Issue 15: the fields of approval policies.
    for field in ["requesterGroups", "breakGlass", "breakGlassReview"] {
        assert!(
            has(&format!("spec.{field}"), "self == oldSelf"),
            "spec.{field} can be changed"
        );
    }
    assert!(has("spec.approvals", "oldSelf"), "spec.approvals can be rewritten");
    for field in [
        "requesterGroups",
        "approvals",
        "startAt",
        "breakGlass",
        "breakGlassReview",
    ] {
        assert!(
            has("spec", &format!("oldSelf.{field}")),
            "no rule at spec keeps spec.{field} from being added or removed"
        );
    }
    assert!(has("spec", "!has(self.breakGlassReview) || has(self.breakGlass)"));
    // A request with some approvals can still be denied: no rule may tie the two together.
    assert!(
        !rules
            .iter()
            .any(|r| r.rule.contains("approvals") && r.rule.contains("denial")),
        "a rule ties approvals to denial"
    );
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

// ---------------------------------------------------------------- issue 15: approval policies

fn entry(by: &str, at: &str) -> Value {
    json!({"by": by, "at": at, "groups": ["payments-leads"], "comment": "ok"})
}

/// A request of a requester in two groups, with one approval of a 2-approval policy.
fn one_of_two() -> Value {
    with(base(), |s| {
        s["requesterGroups"] = json!(["payments", "oncall"]);
        s["approvals"] = json!([entry("lead@example.com", "2026-01-01T00:00:00.000Z")]);
    })
}

fn two_of_two() -> Value {
    with(one_of_two(), |s| {
        s["approvals"]
            .as_array_mut()
            .unwrap()
            .push(json!({"by": "cto@example.com", "at": "2026-01-01T00:05:00.000Z", "ttlSeconds": 1800}))
    })
}

fn remove(v: &Value, field: &str) -> Value {
    with(v.clone(), |s| {
        s.as_object_mut().unwrap().remove(field);
    })
}

#[test]
fn requester_groups_are_recorded_once_at_creation() {
    let created = with(base(), |s| s["requesterGroups"] = json!(["payments", "oncall"]));
    allowed(None, &created);
    // decisions leave them alone
    allowed(Some(&created), &with(created.clone(), |s| s["approval"] = approval()));
    allowed(Some(&created), &one_of_two());
    allowed(Some(&base()), &with(base(), |s| s["approval"] = approval()));
    // a group added, dropped or renamed after creation
    for groups in [
        json!(["payments", "oncall", "k8s-janus:admins"]),
        json!(["payments"]),
        json!(["oncall", "payments"]),
    ] {
        refused(
            Some(&created),
            &with(created.clone(), |s| s["requesterGroups"] = groups.clone()),
            "requesterGroups is immutable",
        );
    }
    // the whole list added later or removed (a rule on the field is not evaluated once it is gone)
    refused(
        Some(&base()),
        &with(base(), |s| s["requesterGroups"] = json!(["platform-admins"])),
        "requesterGroups is recorded at creation: never added or removed later",
    );
    refused(
        Some(&created),
        &remove(&created, "requesterGroups"),
        "requesterGroups is recorded at creation: never added or removed later",
    );
}

#[test]
fn approvals_are_append_only_with_immutable_entries() {
    let want = "approvals are append-only";
    // the web appends one entry per approval, with comment, TTL and groups
    allowed(None, &one_of_two());
    allowed(
        Some(&with(base(), |s| s["requesterGroups"] = json!(["payments", "oncall"]))),
        &one_of_two(),
    );
    allowed(Some(&one_of_two()), &two_of_two());
    // an older client's single approval next to the list
    allowed(Some(&two_of_two()), &with(two_of_two(), |s| s["approval"] = approval()));
    allowed(Some(&two_of_two()), &two_of_two());
    let list = |v: &Value| v["spec"]["approvals"].as_array().unwrap().clone();
    let old = two_of_two();
    let mut changed = list(&old);
    changed[1]["ttlSeconds"] = json!(604800);
    let mut regrouped = list(&old);
    regrouped[0]["groups"] = json!(["k8s-janus:admins"]);
    let mut reworded = list(&old);
    reworded[0]["comment"] = json!("");
    let mut renamed = list(&old);
    renamed[0]["by"] = json!("mallory@example.com");
    let mut reordered = list(&old);
    reordered.swap(0, 1);
    let mut inserted = list(&old);
    inserted.insert(1, entry("mallory@example.com", "2026-01-01T00:01:00.000Z"));
    let mut shortened = list(&old);
    shortened.pop();
    for l in [changed, regrouped, reworded, renamed, reordered, inserted, shortened] {
        refused(Some(&old), &with(old.clone(), |s| s["approvals"] = json!(l)), want);
    }
    refused(
        Some(&old),
        &remove(&old, "approvals"),
        "approvals are append-only: they are never removed",
    );
}

#[test]
fn a_partly_approved_request_can_still_be_denied() {
    let denial = json!({"by": "cto@example.com", "at": "2026-01-01T00:06:00.000Z", "reason": "not now"});
    let denied = with(one_of_two(), |s| s["denial"] = denial.clone());
    allowed(Some(&one_of_two()), &denied);
    allowed(None, &denied);
    // the denial itself stays set-once
    refused(
        Some(&denied),
        &with(denied.clone(), |s| s["denial"]["reason"] = json!("changed")),
        "denial can be set once",
    );
}

#[test]
fn start_at_is_fixed_by_the_first_approval() {
    let want = "startAt cannot be set, changed or removed once the request has an approval";
    let scheduled = with(base(), |s| s["startAt"] = json!("2026-01-02T08:00:00Z"));
    allowed(None, &scheduled);
    // before any approval the requester's start may still move, appear or go
    let moved = with(scheduled.clone(), |s| s["startAt"] = json!("2026-01-02T09:00:00Z"));
    allowed(Some(&scheduled), &moved);
    allowed(Some(&base()), &scheduled);
    allowed(Some(&scheduled), &base());
    // approving (by the list or the single field) keeps it
    let approved_ahead = with(scheduled.clone(), |s| {
        s["approvals"] = json!([entry("lead@example.com", "2026-01-01T00:00:00.000Z")])
    });
    allowed(Some(&scheduled), &approved_ahead);
    let second = with(approved_ahead.clone(), |s| {
        s["approvals"]
            .as_array_mut()
            .unwrap()
            .push(entry("cto@example.com", "2026-01-01T00:05:00.000Z"))
    });
    allowed(Some(&approved_ahead), &second);
    let legacy = with(scheduled.clone(), |s| s["approval"] = approval());
    allowed(Some(&scheduled), &legacy);
    allowed(
        Some(&legacy),
        &with(legacy.clone(), |s| {
            s["revocation"] = json!({"by": "a@x.io", "at": "2026-01-02T08:30:00Z", "reason": "done"})
        }),
    );
    // once approved: moved, removed or added
    for old in [&approved_ahead, &legacy] {
        refused(
            Some(old),
            &with(old.clone(), |s| s["startAt"] = json!("2026-01-01T00:10:00Z")),
            want,
        );
        refused(Some(old), &remove(old, "startAt"), want);
    }
    refused(
        Some(&one_of_two()),
        &with(one_of_two(), |s| s["startAt"] = json!("2026-01-05T00:00:00Z")),
        want,
    );
    refused(
        Some(&approved()),
        &with(approved(), |s| s["startAt"] = json!("2026-01-05T00:00:00Z")),
        want,
    );
    // and together with the next approval
    refused(
        Some(&approved_ahead),
        &with(second.clone(), |s| s["startAt"] = json!("2026-01-01T00:10:00Z")),
        want,
    );
}

#[test]
fn break_glass_is_set_only_at_creation() {
    let glass = with(base(), |s| s["breakGlass"] = json!({"at": "2026-01-01T03:00:00.000Z"}));
    allowed(None, &glass);
    let revoked = with(glass.clone(), |s| {
        s["revocation"] = json!({"by": "a@x.io", "at": "2026-01-01T03:10:00Z", "reason": "done"})
    });
    allowed(Some(&glass), &revoked);
    refused(
        Some(&base()),
        &with(base(), |s| s["breakGlass"] = json!({"at": "2026-01-01T03:00:00.000Z"})),
        "breakGlass is set only at creation",
    );
    refused(
        Some(&glass),
        &remove(&glass, "breakGlass"),
        "breakGlass is set only at creation",
    );
    refused(
        Some(&glass),
        &with(glass.clone(), |s| {
            s["breakGlass"]["at"] = json!("2026-01-01T04:00:00.000Z")
        }),
        "breakGlass is immutable",
    );
}

#[test]
fn a_break_glass_review_is_set_once_and_only_for_break_glass() {
    let glass = with(base(), |s| s["breakGlass"] = json!({"at": "2026-01-01T03:00:00.000Z"}));
    let review = json!({"by": "lead@example.com", "at": "2026-01-01T05:00:00.000Z", "comment": "seen, fine",
                        "groups": ["payments-leads"]});
    let reviewed = with(glass.clone(), |s| s["breakGlassReview"] = review.clone());
    allowed(Some(&glass), &reviewed);
    allowed(Some(&reviewed), &reviewed);
    allowed(
        Some(&reviewed),
        &with(reviewed.clone(), |s| {
            s["revocation"] = json!({"by": "a@x.io", "at": "2026-01-01T05:10:00Z", "reason": "done"})
        }),
    );
    for (field, value) in [
        ("by", json!("other@example.com")),
        ("comment", json!("")),
        ("groups", json!([])),
    ] {
        refused(
            Some(&reviewed),
            &with(reviewed.clone(), |s| s["breakGlassReview"][field] = value.clone()),
            "breakGlassReview can be set once and is never changed or removed",
        );
    }
    refused(
        Some(&reviewed),
        &remove(&reviewed, "breakGlassReview"),
        "breakGlassReview is never removed once made",
    );
    let want = "breakGlassReview needs breakGlass";
    refused(
        Some(&approved()),
        &with(approved(), |s| s["breakGlassReview"] = review.clone()),
        want,
    );
    refused(None, &with(base(), |s| s["breakGlassReview"] = review.clone()), want);
}

/// An API server refuses a CRD whose rules' estimated cost exceeds `StaticEstimatedCostLimit`
/// (10,000,000 per expression, `staging/src/k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation/validation.go`).
/// The estimate (`cel-go` `checker/cost.go`) takes list sizes from `maxItems` and string sizes from
/// `maxLength`; without them it assumes the largest list a request body can hold, and the append-only
/// rules (a `filter` over the list with an `in` over the old list: maxItems² steps) are refused.
/// kubesim does not estimate cost, so this checks the inputs of the estimate and a generous bound of it.
#[test]
fn the_lists_rules_compare_are_bounded() {
    let s = schema();
    let spec = &s["properties"]["spec"]["properties"];
    for r in rules() {
        if r.path.len() != 2 || r.path[0] != "spec" || !r.rule.contains("oldSelf") {
            continue;
        }
        let node = &spec[&r.path[1]];
        if node["type"] != "array" {
            continue;
        }
        let field = &r.path[1];
        let max_items = node["maxItems"]
            .as_f64()
            .unwrap_or_else(|| panic!("spec.{field} has a rule but no maxItems"));
        // comprehension over the new list, membership in the old one, an object comparison each
        let estimate = max_items * max_items * 100.0;
        assert!(estimate < 10_000_000.0, "spec.{field}: {estimate}");
        let items = &node["items"];
        let strings: Vec<&Value> = match items["type"].as_str() {
            Some("string") => vec![items],
            _ => items["properties"]
                .as_object()
                .map(|p| p.values().filter(|v| v["type"] == "string").collect())
                .unwrap_or_default(),
        };
        for st in strings {
            assert!(
                st["maxLength"].is_number(),
                "a string in spec.{field} has no maxLength: {st}"
            );
        }
    }
}

// Issue 16: access roles and pod scopes.

fn workload_scope(name: &str) -> Value {
    json!({"workload": {"kind": "Deployment", "name": name}})
}

fn selector_scope() -> Value {
    json!({"selector": {"matchLabels": {"app": "checkout"},
                        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["canary"]}]}})
}

/// The whole of what an API server does with a write: the structural schema (types, patterns,
/// lengths, `maxProperties`) after pruning, then the CEL rules, as kubesim's CRD handling does it
/// (crates/kubesim/src/crd.rs, modelled on `apiextensions-apiserver`'s `customresource_handler.go`
/// validation). `Err` is the API server's message.
fn admitted(old: Option<&Value>, new: &Value) -> Result<(), String> {
    let yaml = janus_api::crd_yaml().expect("the CRD serializes");
    let crd: Value = yaml_serde::from_str(&yaml).expect("the CRD parses");
    let rt = kubesim::crd::with_rules(&crd).expect("the CRD registers");
    let mut obj = new.clone();
    kubesim::crd::validate_custom(&rt, &mut obj, true, old).map_err(|e| format!("{} {:?}", e.message, e.details))
}

#[test]
fn role_and_pod_scope_are_fixed_at_creation() {
    let scoped = with(base(), |s| {
        s["role"] = json!("logs");
        s["podScope"] = workload_scope("payments-api");
    });
    allowed(None, &scoped);
    // The web's own changes to such a request pass.
    let scoped_approved = with(scoped.clone(), |s| s["approval"] = approval());
    allowed(Some(&scoped), &scoped_approved);
    let with_approvals = with(scoped.clone(), |s| {
        s["approvals"] = json!([entry("a@example.com", "2026-01-01T00:00:00.000Z")])
    });
    allowed(Some(&scoped), &with_approvals);
    // role: changed, removed, added.
    refused(
        Some(&scoped),
        &with(scoped.clone(), |s| s["role"] = json!("exec")),
        "role is immutable",
    );
    refused(
        Some(&scoped),
        &remove(&scoped, "role"),
        "role is set only at creation: never added or removed later",
    );
    refused(
        Some(&base()),
        &with(base(), |s| s["role"] = json!("exec")),
        "role is set only at creation",
    );
    // podScope: changed (another workload, a selector instead), removed, added.
    refused(
        Some(&scoped),
        &with(scoped.clone(), |s| s["podScope"] = workload_scope("payments-db")),
        "podScope is immutable",
    );
    refused(
        Some(&scoped),
        &with(scoped.clone(), |s| s["podScope"] = selector_scope()),
        "podScope is immutable",
    );
    refused(
        Some(&scoped),
        &remove(&scoped, "podScope"),
        "podScope is set only at creation: never added or removed later",
    );
    refused(
        Some(&approved()),
        &with(approved(), |s| s["podScope"] = selector_scope()),
        "podScope is set only at creation",
    );
    // A selector's labels or expressions changed.
    let by_labels = with(base(), |s| s["podScope"] = selector_scope());
    refused(
        Some(&by_labels),
        &with(by_labels.clone(), |s| {
            s["podScope"]["selector"]["matchLabels"]["app"] = json!("other")
        }),
        "podScope is immutable",
    );
    refused(
        Some(&by_labels),
        &with(by_labels.clone(), |s| {
            s["podScope"]["selector"]["matchExpressions"][0]["values"] = json!(["canary", "stable"])
        }),
        "podScope is immutable",
    );
    // The same through the whole write path (schema and rules).
    assert!(admitted(Some(&scoped), &scoped_approved).is_ok());
    let e = admitted(Some(&scoped), &with(scoped.clone(), |s| s["role"] = json!("debug"))).unwrap_err();
    assert!(e.contains("role is immutable"), "{e}");
}

#[test]
fn a_pod_scope_names_exactly_one_of_selector_and_workload() {
    allowed(None, &with(base(), |s| s["podScope"] = selector_scope()));
    allowed(None, &with(base(), |s| s["podScope"] = workload_scope("payments-api")));
    refused(
        None,
        &with(base(), |s| {
            s["podScope"] = json!({"selector": {"matchLabels": {"app": "x"}},
                                   "workload": {"kind": "Deployment", "name": "x"}})
        }),
        "podScope needs exactly one of selector and workload",
    );
    refused(
        None,
        &with(base(), |s| s["podScope"] = json!({})),
        "podScope needs exactly one of selector and workload",
    );
}

#[test]
fn selector_requirements_are_refused_as_kubernetes_refuses_them() {
    let req = |r: Value| {
        with(base(), |s| {
            s["podScope"] = json!({"selector": {"matchExpressions": [r]}})
        })
    };
    for ok in [
        json!({"key": "tier", "operator": "In", "values": ["a"]}),
        json!({"key": "tier", "operator": "NotIn", "values": ["a", "b"]}),
        json!({"key": "tier", "operator": "Exists"}),
        json!({"key": "tier", "operator": "DoesNotExist"}),
    ] {
        allowed(None, &req(ok.clone()));
        assert_eq!(admitted(None, &req(ok.clone())), Ok(()), "{ok}");
    }
    // Values with In/NotIn, none with Exists/DoesNotExist (CEL).
    for bad in [
        json!({"key": "tier", "operator": "In"}),
        json!({"key": "tier", "operator": "NotIn", "values": []}),
        json!({"key": "tier", "operator": "Exists", "values": ["a"]}),
        json!({"key": "tier", "operator": "DoesNotExist", "values": ["a"]}),
    ] {
        refused(
            None,
            &req(bad.clone()),
            "operators In and NotIn need values; Exists and DoesNotExist take none",
        );
    }
    // An unknown operator (the schema's pattern): refused by the API server before any rule.
    for op in ["Equals", "in", "Gt", ""] {
        let e = admitted(None, &req(json!({"key": "tier", "operator": op, "values": ["a"]}))).unwrap_err();
        assert!(e.contains("operator"), "{op}: {e}");
    }
    // More than 20 labels (maxProperties), a label value over 63 characters, an unknown kind.
    let many: serde_json::Map<String, Value> = (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
    let e = admitted(
        None,
        &with(base(), |s| s["podScope"] = json!({"selector": {"matchLabels": many}})),
    )
    .unwrap_err();
    assert!(e.contains("matchLabels"), "{e}");
    let twenty: serde_json::Map<String, Value> = (0..20).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(
        admitted(
            None,
            &with(base(), |s| s["podScope"] = json!({"selector": {"matchLabels": twenty}}))
        ),
        Ok(())
    );
    let e = admitted(
        None,
        &with(base(), |s| {
            s["podScope"] = json!({"selector": {"matchLabels": {"app": "x".repeat(64)}}})
        }),
    )
    .unwrap_err();
    assert!(e.contains("matchLabels"), "{e}");
    let e = admitted(
        None,
        &with(base(), |s| {
            s["podScope"] = json!({"workload": {"kind": "ReplicaSet", "name": "x"}})
        }),
    )
    .unwrap_err();
    assert!(e.contains("kind"), "{e}");
    let e = admitted(None, &with(base(), |s| s["role"] = json!("Exec"))).unwrap_err();
    assert!(e.contains("role"), "{e}");
}

/// Objects stored before roles and scopes (no role, no podScope) keep working: every change the web
/// makes to them passes the new rules, and the rules only hold fields that are set.
#[test]
fn requests_from_before_roles_still_update() {
    let old = base();
    allowed(Some(&old), &approved());
    assert_eq!(admitted(Some(&old), &approved()), Ok(()));
    allowed(Some(&approved()), &extended());
    assert_eq!(admitted(Some(&approved()), &extended()), Ok(()));
    let denied =
        with(
            base(),
            |s| s["denial"] = json!({"by": "admin@example.com", "at": "2026-01-01T00:00:00.000Z", "reason": "no"}),
        );
    allowed(Some(&old), &denied);
}

/// The rules over podScope compare it whole (`self == oldSelf`); cel-go's estimate of an equality is
/// the smaller argument's size (checker/cost.go, `overloads.Equals`), and kube-apiserver sizes objects,
/// maps, lists and strings from `maxProperties`, `maxItems` and `maxLength` (apiserver
/// pkg/cel/common/schemas.go), falling back to what a 3 MiB request could hold. Everything under
/// podScope is bounded, so the estimate is small on every supported server.
#[test]
fn everything_under_pod_scope_is_bounded() {
    fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
        match v["type"].as_str() {
            Some("string") if v.get("maxLength").is_none() && v.get("enum").is_none() => out.push(at.into()),
            Some("array") => {
                if v.get("maxItems").is_none() {
                    out.push(at.into());
                }
                walk(&v["items"], &format!("{at}[*]"), out);
            }
            Some("object") => {
                if let Some(ap) = v.get("additionalProperties") {
                    if v.get("maxProperties").is_none() {
                        out.push(at.into());
                    }
                    walk(ap, &format!("{at}{{*}}"), out);
                }
                for (k, p) in v["properties"].as_object().into_iter().flatten() {
                    walk(p, &format!("{at}.{k}"), out);
                }
            }
            _ => {}
        }
    }
    let s = schema();
    let mut unbounded = Vec::new();
    walk(
        &s["properties"]["spec"]["properties"]["podScope"],
        "spec.podScope",
        &mut unbounded,
    );
    walk(
        &s["properties"]["spec"]["properties"]["role"],
        "spec.role",
        &mut unbounded,
    );
    assert!(unbounded.is_empty(), "unbounded: {unbounded:?}");
    let labels =
        &s["properties"]["spec"]["properties"]["podScope"]["properties"]["selector"]["properties"]["matchLabels"];
    assert_eq!(labels["maxProperties"].as_f64(), Some(20.0), "{labels}");
}
