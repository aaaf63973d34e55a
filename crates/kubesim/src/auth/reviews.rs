//! The review kinds, answered as the real API server answers them: the access reviews of
//! `authorization.k8s.io` (`kubectl auth can-i` sends a SelfSubjectAccessReview, `--list` a
//! SelfSubjectRulesReview), TokenReview and SelfSubjectReview (`kubectl auth whoami`) of
//! `authentication.k8s.io`. Nothing is stored; the object comes back with its status filled.
//!
//! Who may create which review is the API layer's RBAC check, done before this.

use serde_json::{Value, json};

use super::rbac::{self, non_resource_rule_value, resource_rule_value};
use super::tokens::{ISSUER, authenticate_token};
use super::{Attributes, Ctx, UserInfo, aggregate_errors, go_quote};
use crate::errors::{ApiError, ApiResult};

const AUTHZ: &str = "authorization.k8s.io";
const AUTHN: &str = "authentication.k8s.io";

/// Answers one review. `namespace` is the request's (LocalSubjectAccessReview is namespaced).
pub fn review(ctx: &Ctx<'_>, user: &UserInfo, kind: &str, namespace: Option<&str>, body: Value) -> ApiResult<Value> {
    let mut out = if body.is_object() { body } else { json!({}) };
    let (group, status) = match kind {
        "SelfSubjectAccessReview" => {
            validate_access_spec(&out["spec"], kind, false, Vec::new())?;
            (AUTHZ, access_status(ctx, user, &out["spec"]))
        }
        "SubjectAccessReview" => {
            validate_access_spec(&out["spec"], kind, true, Vec::new())?;
            (AUTHZ, access_status(ctx, &subject_of(&out["spec"]), &out["spec"]))
        }
        "LocalSubjectAccessReview" => {
            let Some(ns) = namespace.filter(|n| !n.is_empty()) else {
                return Err(ApiError::bad_request("namespace is required on this type: "));
            };
            match out["metadata"]["namespace"].as_str() {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {}
            }
            if !out["metadata"].is_object() {
                out["metadata"] = json!({});
            }
            out["metadata"]["namespace"] = json!(ns);
            let spec = &out["spec"];
            let mut extra = Vec::new();
            if spec["resourceAttributes"].is_object() {
                let ra_ns = spec["resourceAttributes"]["namespace"].as_str().unwrap_or_default();
                if ra_ns != ns {
                    extra.push((
                        "spec.resourceAttributes.namespace".to_string(),
                        format!("Invalid value: {}: must match metadata.namespace", go_quote(ra_ns)),
                    ));
                }
            }
            if spec["nonResourceAttributes"].is_object() {
                extra.push((
                    "spec.nonResourceAttributes".to_string(),
                    format!(
                        "Invalid value: {}: disallowed on this kind of request",
                        non_resource_repr(spec)
                    ),
                ));
            }
            validate_access_spec(spec, kind, true, extra)?;
            (AUTHZ, access_status(ctx, &subject_of(spec), spec))
        }
        "SelfSubjectRulesReview" => {
            let ns = out["spec"]["namespace"].as_str().unwrap_or_default();
            if ns.is_empty() {
                return Err(ApiError::bad_request("no namespace on request"));
            }
            let (rules, errors) = rbac::rules_for(ctx.store, user, ns);
            let resource_rules: Vec<Value> = rules
                .iter()
                .filter(|r| !r.resources.is_empty())
                .map(resource_rule_value)
                .collect();
            let non_resource_rules: Vec<Value> = rules
                .iter()
                .filter(|r| !r.non_resource_urls.is_empty())
                .map(non_resource_rule_value)
                .collect();
            // Upstream answers with a fresh object: the spec is not echoed.
            out["spec"] = json!({});
            let mut status =
                json!({ "resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false });
            if !errors.is_empty() {
                status["evaluationError"] = json!(aggregate_errors(&errors));
            }
            (AUTHZ, status)
        }
        "TokenReview" => {
            let token = out["spec"]["token"].as_str().unwrap_or_default();
            if token.is_empty() {
                return Err(ApiError::bad_request(
                    "token is required for TokenReview in authentication",
                ));
            }
            let mut audiences: Vec<String> = out["spec"]["audiences"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default();
            if audiences.is_empty() {
                audiences = vec![ISSUER.to_string()];
            }
            let status = match authenticate_token(ctx, token, &audiences) {
                Ok((u, auds)) => {
                    json!({ "authenticated": true, "user": user_info_value(&u), "audiences": auds })
                }
                Err(e) => json!({ "authenticated": false, "user": {}, "error": e.to_string() }),
            };
            (AUTHN, status)
        }
        "SelfSubjectReview" => {
            if !out["metadata"].is_object() {
                out["metadata"] = json!({});
            }
            out["metadata"]["creationTimestamp"] = json!(crate::store::now_rfc3339());
            (AUTHN, json!({ "userInfo": user_info_value(user) }))
        }
        other => {
            return Err(ApiError::bad_request(format!("{other} is not a review kind")));
        }
    };
    // Keep the version the client sent within the right group (v1beta1 clients get v1beta1 back).
    if !out["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with(&format!("{group}/")))
    {
        out["apiVersion"] = json!(format!("{group}/v1"));
    }
    out["kind"] = json!(kind);
    if !out["metadata"].is_object() {
        out["metadata"] = json!({ "creationTimestamp": null });
    }
    out["status"] = status;
    Ok(out)
}

/// `{username, uid, groups}` with `uid` omitted when empty, as `authenticationv1.UserInfo` serialises.
fn user_info_value(u: &UserInfo) -> Value {
    let mut v = json!({ "username": u.username, "groups": u.groups });
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    v
}

/// The identity a SubjectAccessReview asks about: exactly the given user, groups and uid.
fn subject_of(spec: &Value) -> UserInfo {
    UserInfo {
        username: spec["user"].as_str().unwrap_or_default().into(),
        uid: spec["uid"].as_str().unwrap_or_default().into(),
        groups: spec["groups"]
            .as_array()
            .map(|a| a.iter().filter_map(|g| g.as_str().map(String::from)).collect())
            .unwrap_or_default(),
    }
}

/// Go's `%#v` of the nonResourceAttributes struct, as upstream prints it in its validation messages.
fn non_resource_repr(spec: &Value) -> String {
    let n = &spec["nonResourceAttributes"];
    format!(
        "authorization.NonResourceAttributes{{Path:{}, Verb:{}}}",
        go_quote(n["path"].as_str().unwrap_or_default()),
        go_quote(n["verb"].as_str().unwrap_or_default())
    )
}

/// Upstream `ValidateSubjectAccessReviewSpec` (and the self variant without the subject check).
fn validate_access_spec(
    spec: &Value,
    kind: &str,
    needs_subject: bool,
    mut causes: Vec<(String, String)>,
) -> ApiResult<()> {
    let resource = spec["resourceAttributes"].is_object();
    let non_resource = spec["nonResourceAttributes"].is_object();
    if resource && non_resource {
        causes.push((
            "spec.nonResourceAttributes".into(),
            format!(
                "Invalid value: {}: cannot be specified in combination with resourceAttributes",
                non_resource_repr(spec)
            ),
        ));
    }
    if !resource && !non_resource {
        causes.push((
            "spec.resourceAttributes".into(),
            "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"
                .into(),
        ));
    }
    let no_groups = spec["groups"].as_array().is_none_or(|g| g.is_empty());
    if needs_subject && spec["user"].as_str().unwrap_or_default().is_empty() && no_groups {
        causes.push((
            "spec.user".into(),
            "Invalid value: \"\": at least one of user or group must be specified".into(),
        ));
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(kind, AUTHZ, "", causes))
}

fn non_empty_str(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

fn attributes_of(spec: &Value) -> Attributes<'_> {
    let s = non_empty_str;
    let ra = &spec["resourceAttributes"];
    if ra.is_object() {
        Attributes {
            verb: ra["verb"].as_str().unwrap_or_default(),
            group: ra["group"].as_str().unwrap_or_default(),
            resource: ra["resource"].as_str().unwrap_or_default(),
            subresource: s(&ra["subresource"]),
            namespace: s(&ra["namespace"]),
            name: s(&ra["name"]),
            path: None,
        }
    } else {
        let nra = &spec["nonResourceAttributes"];
        Attributes {
            verb: nra["verb"].as_str().unwrap_or_default(),
            path: Some(nra["path"].as_str().unwrap_or_default()),
            ..Default::default()
        }
    }
}

fn access_status(ctx: &Ctx<'_>, subject: &UserInfo, spec: &Value) -> Value {
    let d = rbac::decide(ctx.store, subject, &attributes_of(spec));
    let mut status = json!({ "allowed": d.allowed });
    if !d.reason.is_empty() {
        status["reason"] = json!(d.reason);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::super::rbac::RBAC_GROUP;
    use super::super::testutil::*;
    use super::*;
    use crate::store::Store;

    fn setup() -> Store {
        let store = Store::new();
        put(
            &store,
            RBAC_GROUP,
            "clusterroles",
            json!({"metadata": {"name": "pod-exec"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]}),
        );
        put(
            &store,
            RBAC_GROUP,
            "rolebindings",
            json!({"metadata": {"namespace": "team", "name": "bot-exec"},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "pod-exec"},
            "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "team"}]}),
        );
        store
    }

    fn ssar(ra: Value) -> Value {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {"creationTimestamp": null}, "spec": {"resourceAttributes": ra}})
    }

    #[test]
    fn self_subject_access_review_as_kubectl_auth_can_i_sends_it() {
        let store = setup();
        let c = ctx(&store);
        let bot = UserInfo::service_account("team", "bot", "u");
        let out = review(
            &c,
            &bot,
            "SelfSubjectAccessReview",
            None,
            ssar(json!({"namespace": "team", "verb": "create", "resource": "pods", "subresource": "exec"})),
        )
        .unwrap();
        assert_eq!(out["apiVersion"], "authorization.k8s.io/v1");
        assert_eq!(out["kind"], "SelfSubjectAccessReview");
        assert_eq!(out["status"]["allowed"], true);
        assert_eq!(
            out["status"]["reason"],
            r#"RBAC: allowed by RoleBinding "bot-exec/team" of ClusterRole "pod-exec" to ServiceAccount "bot/team""#
        );
        assert_eq!(out["spec"]["resourceAttributes"]["verb"], "create");

        let denied = review(
            &c,
            &bot,
            "SelfSubjectAccessReview",
            None,
            ssar(json!({"namespace": "team", "verb": "delete", "resource": "pods"})),
        )
        .unwrap();
        assert_eq!(denied["status"], json!({"allowed": false}));
        let other_ns = review(
            &c,
            &bot,
            "SelfSubjectAccessReview",
            None,
            ssar(json!({"namespace": "x", "verb": "get", "resource": "pods"})),
        )
        .unwrap();
        assert_eq!(other_ns["status"]["allowed"], false);
        let admin = review(
            &c,
            &UserInfo::admin(),
            "SelfSubjectAccessReview",
            None,
            ssar(json!({"verb": "*", "group": "*", "resource": "*"})),
        )
        .unwrap();
        assert_eq!(admin["status"], json!({"allowed": true}));

        let path = json!({"spec": {"nonResourceAttributes": {"path": "/version", "verb": "get"}}});
        assert_eq!(
            review(&c, &bot, "SelfSubjectAccessReview", None, path).unwrap()["status"]["allowed"],
            true
        );

        let empty = review(&c, &bot, "SelfSubjectAccessReview", None, json!({"spec": {}})).unwrap_err();
        assert_eq!(empty.code, 422);
        assert_eq!(
            empty.message,
            "SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"
        );
    }

    #[test]
    fn subject_and_local_subject_access_reviews() {
        let store = setup();
        let c = ctx(&store);
        let admin = UserInfo::admin();
        let sar = json!({"spec": {"user": "system:serviceaccount:team:bot", "groups": ["system:serviceaccounts"],
                                  "resourceAttributes": {"namespace": "team", "verb": "list", "resource": "pods"}}});
        let out = review(&c, &admin, "SubjectAccessReview", None, sar).unwrap();
        assert_eq!(out["status"]["allowed"], true);
        let nobody = json!({"spec": {"resourceAttributes": {"namespace": "team", "verb": "list", "resource": "pods"}}});
        let e = review(&c, &admin, "SubjectAccessReview", None, nobody).unwrap_err();
        assert!(
            e.message
                .ends_with("spec.user: Invalid value: \"\": at least one of user or group must be specified"),
            "{}",
            e.message
        );
        // Groups given are taken literally: no implicit system:authenticated.
        let group_only = json!({"spec": {"groups": ["system:authenticated"], "nonResourceAttributes": {"path": "/api", "verb": "get"}}});
        assert_eq!(
            review(&c, &admin, "SubjectAccessReview", None, group_only).unwrap()["status"]["allowed"],
            true
        );
        let user_only = json!({"spec": {"user": "jane", "nonResourceAttributes": {"path": "/api", "verb": "get"}}});
        assert_eq!(
            review(&c, &admin, "SubjectAccessReview", None, user_only).unwrap()["status"]["allowed"],
            false
        );

        let lsar = json!({"spec": {"user": "system:serviceaccount:team:bot", "resourceAttributes": {"namespace": "team", "verb": "get", "resource": "pods"}}});
        let out = review(&c, &admin, "LocalSubjectAccessReview", Some("team"), lsar.clone()).unwrap();
        assert_eq!(out["status"]["allowed"], true);
        assert_eq!(out["metadata"]["namespace"], "team");
        let e = review(&c, &admin, "LocalSubjectAccessReview", Some("other"), lsar.clone()).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message
                .contains("spec.resourceAttributes.namespace: Invalid value: \"team\": must match metadata.namespace"),
            "{}",
            e.message
        );
        assert_eq!(
            review(&c, &admin, "LocalSubjectAccessReview", None, lsar)
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn self_subject_rules_review_lists_rules_for_can_i_list() {
        let store = setup();
        let c = ctx(&store);
        let bot = UserInfo::service_account("team", "bot", "u");
        let out = review(
            &c,
            &bot,
            "SelfSubjectRulesReview",
            None,
            json!({"spec": {"namespace": "team"}}),
        )
        .unwrap();
        let rr = out["status"]["resourceRules"].as_array().unwrap();
        assert!(
            rr.contains(&json!({"verbs": ["create"], "apiGroups": [""], "resources": ["pods/exec"]})),
            "{rr:?}"
        );
        assert!(rr.contains(&json!({"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]})));
        let nr = out["status"]["nonResourceRules"].as_array().unwrap();
        assert!(
            nr.iter()
                .any(|r| { r["nonResourceURLs"].as_array().unwrap().contains(&json!("/apis/*")) })
        );
        assert_eq!(out["status"]["incomplete"], false);
        // Elsewhere, only the cluster-wide rules.
        let out = review(
            &c,
            &bot,
            "SelfSubjectRulesReview",
            None,
            json!({"spec": {"namespace": "x"}}),
        )
        .unwrap();
        assert!(
            !out["status"]["resourceRules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["resources"] == json!(["pods/exec"]))
        );
        // The admin holds everything through the built-in cluster-admin binding.
        let out = review(
            &c,
            &UserInfo::admin(),
            "SelfSubjectRulesReview",
            None,
            json!({"spec": {"namespace": "x"}}),
        )
        .unwrap();
        assert!(
            out["status"]["resourceRules"]
                .as_array()
                .unwrap()
                .contains(&json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}))
        );
        assert_eq!(
            review(&c, &bot, "SelfSubjectRulesReview", None, json!({"spec": {}}))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn token_review_and_self_subject_review() {
        let store = setup();
        let s = sa(&store, "team", "bot");
        let c = ctx(&store);
        let (token, _) = issuer().issue("team", "bot", &uid(&s), &[ISSUER.to_string()], 3600, None);
        let out = review(
            &c,
            &UserInfo::admin(),
            "TokenReview",
            None,
            json!({"spec": {"token": token}}),
        )
        .unwrap();
        assert_eq!(out["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(out["status"]["authenticated"], true);
        assert_eq!(out["status"]["user"]["username"], "system:serviceaccount:team:bot");
        assert_eq!(out["status"]["user"]["uid"], uid(&s));
        assert_eq!(out["status"]["audiences"], json!([ISSUER]));
        let bad = review(
            &c,
            &UserInfo::admin(),
            "TokenReview",
            None,
            json!({"spec": {"token": "nope"}}),
        )
        .unwrap();
        assert_eq!(bad["status"]["authenticated"], false);
        assert!(!bad["status"]["error"].as_str().unwrap().contains("nope"));
        let vault = review(
            &c,
            &UserInfo::admin(),
            "TokenReview",
            None,
            json!({"spec": {"token": token, "audiences": ["vault"]}}),
        )
        .unwrap();
        assert_eq!(vault["status"]["authenticated"], false);
        assert_eq!(
            review(&c, &UserInfo::admin(), "TokenReview", None, json!({"spec": {}}))
                .unwrap_err()
                .code,
            400
        );

        let bot = UserInfo::service_account("team", "bot", &uid(&s));
        let me = review(
            &c,
            &bot,
            "SelfSubjectReview",
            None,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
        )
        .unwrap();
        assert_eq!(me["status"]["userInfo"]["username"], "system:serviceaccount:team:bot");
        assert_eq!(
            me["status"]["userInfo"]["groups"],
            json!([
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                "system:authenticated"
            ])
        );
        assert!(me["metadata"]["creationTimestamp"].is_string());
        let admin = review(&c, &UserInfo::admin(), "SelfSubjectReview", None, json!({})).unwrap();
        assert!(admin["status"]["userInfo"].get("uid").is_none());
        assert_eq!(review(&c, &bot, "Pod", None, json!({})).unwrap_err().code, 400);
    }
}
