//! The k8s-janus API: the `AccessRequest` custom resource, the configuration, and the domain rules around
//! them ([`rules`]: phases, actions, TTLs, conditions; [`names`]: object names).

pub mod access_request;
#[cfg(feature = "metrics")]
pub mod build;
pub mod config;
pub mod names;
pub mod notifications;
pub mod policy;
pub mod roles;
pub mod rules;
pub mod tokens;

pub use access_request::{
    AccessRequest, AccessRequestSpec, AccessRequestStatus, Approval, ApprovalEntry, BreakGlass, BreakGlassReview,
    Condition, Decision, Denial, Extension, Grant, Phase, PolicyStatus, Revocation, Withdrawal,
};

/// API group of every k8s-janus resource.
pub const GROUP: &str = "k8s-janus.opsmode.io";
/// Label on every object created for a request; its value is the request's name.
pub const REQUEST_LABEL: &str = "k8s-janus.opsmode.io/request";
/// Label marking objects k8s-janus manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "k8s-janus";
/// The ClusterRole every grant binds.
pub const POD_EXEC_CLUSTER_ROLE: &str = "janus-pod-exec";
/// Finalizer guaranteeing cleanup before an AccessRequest disappears.
pub const FINALIZER: &str = "k8s-janus.opsmode.io/cleanup";

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};

/// The CRD generated from the Rust types, with no field of `spec` nullable.
///
/// `Option<T>` fields come out of the schema generator as `nullable: true`. An API server keeps an
/// explicit `null` in a nullable field (and prunes it from any other field before validation); a
/// field that holds `null` still counts for `has()`, and the field's own rules are not run on it. So
/// with nullable decisions a JSON patch `replace /spec/revocation null` (or a PUT with `null`) would
/// remove a decision while the removal rule at `spec` (`has(self.revocation)`) still held. Non-nullable,
/// the server prunes the `null` and the removal rule sees the field gone. Nothing ever writes `null`
/// into a spec on purpose: the web's merge patches set decisions, never clear them, and absent fields
/// deserialize as `None` either way.
pub fn crd() -> CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = AccessRequest::crd();
    for version in &mut crd.spec.versions {
        let spec = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|root| root.properties.as_mut())
            .and_then(|props| props.get_mut("spec"));
        if let Some(spec) = spec {
            not_nullable(spec);
        }
    }
    crd
}

/// Clears `nullable` on a schema and everything below it.
fn not_nullable(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    for sub in schema.properties.iter_mut().flat_map(|p| p.values_mut()) {
        not_nullable(sub);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(s)) => not_nullable(s),
        Some(JSONSchemaPropsOrArray::Schemas(list)) => list.iter_mut().for_each(not_nullable),
        None => {}
    }
}

/// The CRD generated from the Rust types, as YAML (what `janus crd` prints).
pub fn crd_yaml() -> Result<String, yaml_serde::Error> {
    yaml_serde::to_string(&crd())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every schema node below `node` that says `nullable: true`, by path.
    fn nullable_paths(node: &Value, path: &str, out: &mut Vec<String>) {
        if node["nullable"] == true {
            out.push(path.to_string());
        }
        if let Some(props) = node["properties"].as_object() {
            for (k, v) in props {
                nullable_paths(v, &format!("{path}.{k}"), out);
            }
        }
        if node["items"].is_object() {
            nullable_paths(&node["items"], &format!("{path}[*]"), out);
        }
    }

    #[test]
    fn no_spec_field_is_nullable_so_an_explicit_null_is_pruned() {
        let crd: Value = yaml_serde::from_str(&super::crd_yaml().expect("crd")).expect("parses");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        for field in ["approval", "denial", "revocation", "withdrawal", "extensions"] {
            assert!(spec["properties"][field].is_object(), "{field} in the schema");
            assert!(
                spec["properties"][field].get("nullable").is_none(),
                "{field} is nullable"
            );
        }
        let mut found = Vec::new();
        nullable_paths(spec, "spec", &mut found);
        assert_eq!(found, Vec::<String>::new(), "nullable fields in spec");
        // The rules are still there, and status is left as generated.
        assert!(spec["properties"]["revocation"]["x-kubernetes-validations"].is_array());
        let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
        assert_eq!(status["properties"]["approved"]["nullable"], true);
    }

    #[test]
    fn specs_still_read_and_write_without_nulls() {
        let spec: crate::AccessRequestSpec = serde_json::from_value(serde_json::json!({
            "requester": "a@example.com", "cluster": "central", "namespaces": ["team-a"],
            "reason": "r", "ttlSeconds": 60, "revocation": null
        }))
        .expect("an explicit null still reads as absent");
        assert!(spec.revocation.is_none() && spec.approval.is_none());
        let out = serde_json::to_value(&spec).expect("serializes");
        for field in ["approval", "denial", "revocation", "withdrawal", "extensions"] {
            assert!(out.get(field).is_none(), "{field} written as {out}");
        }
    }
}
