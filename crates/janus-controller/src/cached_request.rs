//! The request as the controller's watch cache keeps it: only what starts, queues and cuts a
//! reconcile and what `/metrics` counts. Every decision and status write works on the request read
//! fresh from the API server.
//!
//! The cache holds every request (10,000 live grants are 10,000 cached objects), and kube-runtime holds
//! the cached version a reconcile was started with until that reconcile ends, so a burst keeps two
//! versions of most requests alive. The whole [`AccessRequest`] is about 1.6 KB before any of its
//! strings; this keeps the metadata and a few fields (issue 19: the controller's memory at fleet scale).

use std::borrow::Cow;

use janus_api::rules::conditions::types::CREDENTIALS_REMOVED;
use janus_api::{AccessRequest, Grant, Phase};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

/// An AccessRequest as the controller caches it (the same API object, read through a slimmer type).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CachedRequest {
    /// The object's metadata, without managedFields, labels and annotations ([`slim_metadata`]).
    pub metadata: ObjectMeta,
    /// What of the spec the cache needs.
    #[serde(default)]
    pub spec: CachedSpec,
    /// What of the status the cache needs.
    #[serde(default)]
    pub status: Option<CachedStatus>,
}

/// The part of the spec the cache keeps: the cluster asked for, and whether a decision that ends the
/// access was made (only whether: who and why are read fresh).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedSpec {
    /// The cluster asked for (`spec.cluster`).
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    withdrawal: Option<IgnoredAny>,
    #[serde(default)]
    revocation: Option<IgnoredAny>,
    #[serde(default)]
    denial: Option<IgnoredAny>,
}

/// The part of the status the cache keeps.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedStatus {
    /// `status.phase`.
    #[serde(default)]
    pub phase: Phase,
    /// Whether the request's credentials are known to be gone (a `CredentialsRemoved` condition that
    /// is True) and whether their removal is still pending (one that is False).
    #[serde(default, rename = "conditions", deserialize_with = "credentials_conditions")]
    pub credentials: CredentialsState,
    /// `status.expiresAt`.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// `status.grants`: what a cut takes away before the request is read fresh.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// `status.approved.cluster`: where the grants were made.
    #[serde(default, rename = "approved", deserialize_with = "approved_cluster")]
    pub approved_cluster: Option<String>,
}

/// What the `CredentialsRemoved` conditions of a request say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CredentialsState {
    /// One is True: the credentials are gone.
    pub removed: bool,
    /// One is False: their removal is pending.
    pub pending: bool,
}

impl CachedSpec {
    /// Whether a decision that ends the access was made: a withdrawal, revocation or denial (never
    /// removed once made), as [`janus_api::rules::lifecycle::ending`] finds one.
    pub fn ends(&self) -> bool {
        self.withdrawal.is_some() || self.revocation.is_some() || self.denial.is_some()
    }
}

impl CachedRequest {
    /// The cluster whose queue the request's reconcile waits in: the one it was approved for, where
    /// its grants are made and cut, else the one it asks for.
    pub fn queue(&self) -> &str {
        self.status
            .as_ref()
            .and_then(|s| s.approved_cluster.as_deref())
            .unwrap_or(self.spec.cluster.as_str())
    }

    /// The grants whose access is still to be cut when the request ends: none once its credentials
    /// are known to be gone (retention, resyncs).
    pub fn live_grants(&self) -> Option<&CachedStatus> {
        self.status
            .as_ref()
            .filter(|s| !s.grants.is_empty() && !s.credentials.removed)
    }
}

impl From<&AccessRequest> for CachedRequest {
    fn from(ar: &AccessRequest) -> Self {
        let mut metadata = ar.metadata.clone();
        slim_metadata(&mut metadata);
        let present = |o: bool| o.then_some(IgnoredAny);
        Self {
            metadata,
            spec: CachedSpec {
                cluster: ar.spec.cluster.clone(),
                withdrawal: present(ar.spec.withdrawal.is_some()),
                revocation: present(ar.spec.revocation.is_some()),
                denial: present(ar.spec.denial.is_some()),
            },
            status: ar.status.as_ref().map(|s| CachedStatus {
                phase: s.phase,
                credentials: CredentialsState {
                    removed: s
                        .conditions
                        .iter()
                        .any(|c| c.type_ == CREDENTIALS_REMOVED && c.status == "True"),
                    pending: s
                        .conditions
                        .iter()
                        .any(|c| c.type_ == CREDENTIALS_REMOVED && c.status == "False"),
                },
                expires_at: s.expires_at.clone(),
                grants: s.grants.clone(),
                approved_cluster: s.approved.as_ref().map(|a| a.cluster.clone()),
            }),
        }
    }
}

/// Drops from cached metadata what nothing reading the cache needs: managedFields (one entry per
/// writer, most of an object's size), labels and annotations.
pub fn slim_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
}

impl kube::Resource for CachedRequest {
    type DynamicType = ();
    type Scope = <AccessRequest as kube::Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        AccessRequest::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        AccessRequest::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        AccessRequest::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        AccessRequest::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The `CredentialsRemoved` conditions of `status.conditions`, without keeping the list.
fn credentials_conditions<'de, D: Deserializer<'de>>(d: D) -> Result<CredentialsState, D::Error> {
    #[derive(Deserialize)]
    struct Condition {
        #[serde(rename = "type", default)]
        type_: String,
        #[serde(default)]
        status: String,
    }
    let conditions: Option<Vec<Condition>> = Option::deserialize(d)?;
    let mut state = CredentialsState::default();
    for c in conditions.unwrap_or_default() {
        if c.type_ == CREDENTIALS_REMOVED {
            state.removed |= c.status == "True";
            state.pending |= c.status == "False";
        }
    }
    Ok(state)
}

/// `status.approved.cluster`, without the rest of the approved spec.
fn approved_cluster<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct Approved {
        #[serde(default)]
        cluster: String,
    }
    Ok(Option::<Approved>::deserialize(d)?.map(|a| a.cluster))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn request(spec_extra: serde_json::Value, status: serde_json::Value) -> serde_json::Value {
        let mut spec = json!({"requester": "a@x.io", "cluster": "asked", "namespaces": ["team-a"],
                              "reason": "a long reason nobody in the cache needs", "ttlSeconds": 600});
        for (k, v) in spec_extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({
            "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
            "metadata": {"name": "r1", "uid": "u1", "generation": 3, "resourceVersion": "42",
                         "finalizers": [janus_api::FINALIZER],
                         "deletionTimestamp": "2026-12-07T09:30:00Z",
                         "labels": {"a": "b"}, "annotations": {"c": "d"},
                         "managedFields": [{"manager": "web", "operation": "Update"}]},
            "spec": spec,
            "status": status,
        })
    }

    fn granted(conditions: serde_json::Value) -> serde_json::Value {
        json!({"phase": "Active", "message": "m", "expiresAt": "2026-12-07T10:00:00.000Z",
               "conditions": conditions,
               "grants": [{"namespace": "team-a", "serviceAccount": "sa", "roleBinding": "rb",
                           "tokenSecret": "s"}],
               "approved": {"digest": "d", "requester": "a@x.io", "cluster": "approved",
                            "namespaces": ["team-a"], "ttlSeconds": 600, "approvedBy": "admin@x.io"}})
    }

    fn condition(type_: &str, status: &str) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": "r", "message": "m",
               "lastTransitionTime": "2026-12-07T09:00:00Z"})
    }

    /// Read from the wire or taken from a whole request, the cached request is the same, and says
    /// what the whole one says about every question the cache answers.
    #[test]
    fn the_cached_request_says_what_the_whole_one_says() {
        let cases = [
            request(json!({}), json!(null)),
            request(json!({}), granted(json!([condition(CREDENTIALS_REMOVED, "False")]))),
            request(
                json!({"revocation": {"by": "admin@x.io", "at": "2026-12-07T09:00:00Z", "reason": "r"}}),
                granted(json!([
                    condition("Ready", "True"),
                    condition(CREDENTIALS_REMOVED, "True")
                ])),
            ),
            request(
                json!({"withdrawal": {"by": "a@x.io", "at": "2026-12-07T09:00:00Z"}}),
                json!({"phase": "Pending"}),
            ),
            request(
                json!({"denial": {"by": "admin@x.io", "at": "2026-12-07T09:00:00Z", "reason": "no"}}),
                json!({"phase": "Denied", "conditions": []}),
            ),
        ];
        for case in cases {
            let whole: AccessRequest = match serde_json::from_value(case.clone()) {
                Ok(ar) => ar,
                Err(e) => panic!("{e}: {case}"),
            };
            let cached: CachedRequest = serde_json::from_value(case.clone()).unwrap();
            let mut wire = cached.clone();
            slim_metadata(&mut wire.metadata);
            assert_eq!(wire, CachedRequest::from(&whole), "{case}");
            // What the decision inputs and the cut rest on survives the slimming.
            assert_eq!(wire.metadata.deletion_timestamp, whole.metadata.deletion_timestamp);
            assert_eq!(wire.metadata.finalizers, whole.metadata.finalizers);
            assert_eq!(wire.metadata.generation, whole.metadata.generation);
            assert_eq!(wire.metadata.uid, whole.metadata.uid);
            assert!(wire.metadata.managed_fields.is_none() && wire.metadata.labels.is_none());

            assert_eq!(
                cached.spec.ends(),
                janus_api::rules::lifecycle::ending(&whole.spec).is_some()
            );
            let approved = whole.status.as_ref().and_then(|s| s.approved.as_ref());
            assert_eq!(
                cached.queue(),
                approved.map_or(whole.spec.cluster.as_str(), |a| a.cluster.as_str())
            );
            let st = whole.status.clone().unwrap_or_default();
            let cs = cached.status.clone().unwrap_or_default();
            assert_eq!(
                cs.credentials.removed,
                janus_api::rules::conditions::credentials_removed(&st)
            );
            assert_eq!(
                cs.credentials.pending,
                st.conditions
                    .iter()
                    .any(|c| c.type_ == CREDENTIALS_REMOVED && c.status == "False")
            );
            assert_eq!(cs.phase, st.phase);
            assert_eq!(cs.grants, st.grants);
            assert_eq!(cs.expires_at, st.expires_at);
            assert_eq!(
                cached.live_grants().is_some(),
                !st.grants.is_empty() && !janus_api::rules::conditions::credentials_removed(&st)
            );
        }
    }

    /// Fields that are null or missing read as absent, as they do in the whole request: `null` is no
    /// decision, no conditions, no approval. A decision present in any form is an ending (the safe
    /// side: it only brings the cut forward).
    #[test]
    fn null_and_missing_fields_read_as_absent() {
        let case = request(
            json!({"withdrawal": null, "revocation": null, "denial": null}),
            json!({"phase": "Active", "conditions": null, "approved": null, "grants": [],
                   "expiresAt": null}),
        );
        // The whole type refuses `conditions: null` (a list); the cached one takes it as none.
        let mut for_whole = case.clone();
        for_whole["status"].as_object_mut().unwrap().remove("conditions");
        let whole: AccessRequest = serde_json::from_value(for_whole).unwrap();
        let cached: CachedRequest = serde_json::from_value(case).unwrap();
        assert!(!cached.spec.ends());
        assert!(janus_api::rules::lifecycle::ending(&whole.spec).is_none());
        let st = cached.status.as_ref().unwrap();
        assert_eq!(st.credentials, CredentialsState::default());
        assert_eq!(st.approved_cluster, None);
        assert_eq!(cached.queue(), "asked");
        assert!(cached.live_grants().is_none());

        let bare: CachedRequest = serde_json::from_value(json!({"metadata": {"name": "r2"}, "spec": {}})).unwrap();
        assert!(bare.status.is_none() && !bare.spec.ends() && bare.spec.cluster.is_empty());

        let odd: CachedRequest = serde_json::from_value(json!({
            "metadata": {"name": "r3"}, "spec": {"cluster": "c", "withdrawal": {}},
            "status": {"conditions": [{"type": "CredentialsRemoved"}, {"status": "True"}]},
        }))
        .unwrap();
        assert!(odd.spec.ends());
        let st = odd.status.unwrap();
        assert!(
            !st.credentials.removed && !st.credentials.pending,
            "a condition without a status says nothing"
        );
    }

    /// The point of the type: less than half the whole request before any of its strings, and none of
    /// the metadata nobody reads.
    #[test]
    fn the_cached_request_is_a_fraction_of_the_whole() {
        assert!(std::mem::size_of::<CachedRequest>() * 2 < std::mem::size_of::<AccessRequest>());
        let case = request(json!({}), granted(json!([condition(CREDENTIALS_REMOVED, "False")])));
        let whole: AccessRequest = serde_json::from_value(case).unwrap();
        let cached = CachedRequest::from(&whole);
        assert!(cached.metadata.labels.is_none() && cached.metadata.managed_fields.is_none());
        assert!(cached.metadata.annotations.is_none());
    }
}
