//! Tests for the protobuf decoder: hand-encoded objects as kubectl and helm send them, the table, and robustness.

use serde_json::{Value, json};

use super::{Card, Kind, MAGIC, Special, decode, go_duration, schema};

/// A tiny protobuf encoder, enough to write what Go's generated marshallers write.
#[derive(Clone, Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn new() -> Self {
        Self::default()
    }

    fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, tag: u32, wire: u8) {
        self.raw_varint((u64::from(tag) << 3) | u64::from(wire));
    }

    /// An int32/int64/bool field (negative numbers sign-extended to 10 bytes, as Go does).
    fn int(mut self, tag: u32, v: i64) -> Self {
        self.key(tag, 0);
        self.raw_varint(v as u64);
        self
    }

    fn bool(self, tag: u32, b: bool) -> Self {
        self.int(tag, i64::from(b))
    }

    fn double(mut self, tag: u32, x: f64) -> Self {
        self.key(tag, 1);
        self.0.extend_from_slice(&x.to_bits().to_le_bytes());
        self
    }

    fn bytes(mut self, tag: u32, b: &[u8]) -> Self {
        self.key(tag, 2);
        self.raw_varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    fn str(self, tag: u32, s: &str) -> Self {
        self.bytes(tag, s.as_bytes())
    }

    fn msg(self, tag: u32, m: Enc) -> Self {
        self.bytes(tag, &m.0)
    }

    /// A `map<string, string|bytes>` entry.
    fn entry(self, tag: u32, k: &str, v: &[u8]) -> Self {
        self.msg(tag, Enc::new().str(1, k).bytes(2, v))
    }

    /// A `map<string, message>` entry.
    fn entry_msg(self, tag: u32, k: &str, v: Enc) -> Self {
        self.msg(tag, Enc::new().str(1, k).msg(2, v))
    }
}

/// Wraps an encoded object as Go's protobuf serializer does: magic, then runtime.Unknown.
fn body(api_version: &str, kind: &str, obj: &Enc) -> Vec<u8> {
    let unknown = Enc::new()
        .msg(1, Enc::new().str(1, api_version).str(2, kind))
        .bytes(2, &obj.0)
        .str(3, "")
        .str(4, "");
    [MAGIC, unknown.0.as_slice()].concat()
}

/// ObjectMeta as Go marshals it: every non-pointer field written, zero or not.
fn meta(name: &str, namespace: &str, creation: Option<i64>) -> Enc {
    let ts = match creation {
        Some(s) => Enc::new().int(1, s).int(2, 0),
        None => Enc::new(),
    };
    Enc::new()
        .str(1, name)
        .str(2, "")
        .str(3, namespace)
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .int(7, 0)
        .msg(8, ts)
}

fn int_or_string_int(v: i64) -> Enc {
    Enc::new().int(1, 0).int(2, v).str(3, "")
}

fn int_or_string_str(s: &str) -> Enc {
    Enc::new().int(1, 1).int(2, 0).str(3, s)
}

fn quantity(s: &str) -> Enc {
    Enc::new().str(1, s)
}

#[test]
fn secret_with_data_labels_owner_references_and_timestamp() {
    let owner = Enc::new()
        .str(1, "ConfigMap")
        .str(3, "owner")
        .str(4, "u-1")
        .str(5, "v1")
        .bool(6, true)
        .bool(7, false);
    let md = meta("s", "ns1", Some(1_704_164_645))
        .entry(11, "app", b"x")
        .entry(12, "note", b"")
        .msg(13, owner)
        .str(14, "example.com/keep");
    let secret = Enc::new()
        .msg(1, md)
        .entry(2, "a", b"b")
        .entry(2, "bin", &[0, 255, 1])
        .str(3, "Opaque")
        .entry(4, "plain", b"text");
    let got = decode(&body("v1", "Secret", &secret)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "s",
                "namespace": "ns1",
                "creationTimestamp": "2024-01-02T03:04:05Z",
                "labels": {"app": "x"},
                "annotations": {"note": ""},
                "ownerReferences": [{
                    "kind": "ConfigMap", "name": "owner", "uid": "u-1", "apiVersion": "v1",
                    "controller": true, "blockOwnerDeletion": false
                }],
                "finalizers": ["example.com/keep"]
            },
            "data": {"a": "Yg==", "bin": "AP8B"},
            "type": "Opaque",
            "stringData": {"plain": "text"}
        })
    );
}

#[test]
fn zero_time_and_zero_non_pointer_fields_are_omitted_like_json() {
    // `kubectl create namespace x`: an empty creationTimestamp message is the zero time, shown as null in JSON.
    let ns = Enc::new()
        .msg(1, meta("x", "", None))
        .msg(2, Enc::new())
        .msg(3, Enc::new().str(1, ""));
    let got = decode(&body("v1", "Namespace", &ns)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "x", "creationTimestamp": null}, "spec": {}, "status": {}})
    );
}

#[test]
fn pod_with_containers_ports_probes_resources_and_env() {
    let port = Enc::new()
        .str(1, "http")
        .int(2, 0)
        .int(3, 8080)
        .str(4, "TCP")
        .str(5, "");
    let resources = Enc::new()
        .entry_msg(1, "cpu", quantity("500m"))
        .entry_msg(1, "memory", quantity("128Mi"))
        .entry_msg(2, "cpu", quantity("100m"));
    let env_secret = Enc::new().str(1, "TOKEN").str(2, "").msg(
        3,
        Enc::new().msg(
            4,
            Enc::new()
                .msg(1, Enc::new().str(1, "creds"))
                .str(2, "token")
                .bool(3, false),
        ),
    );
    let env_plain = Enc::new().str(1, "MODE").str(2, "fast");
    let readiness = Enc::new()
        .msg(
            1,
            Enc::new().msg(
                2,
                Enc::new()
                    .str(1, "/healthz")
                    .msg(2, int_or_string_str("http"))
                    .str(3, "")
                    .str(4, "HTTP"),
            ),
        )
        .int(2, 0)
        .int(3, 1)
        .int(4, 10)
        .int(5, 0)
        .int(6, 0);
    let liveness = Enc::new().msg(
        1,
        Enc::new().msg(3, Enc::new().msg(1, int_or_string_int(8080)).str(2, "")),
    );
    let container = Enc::new()
        .str(1, "app")
        .str(2, "nginx:1.27")
        .str(3, "sh")
        .str(3, "-c")
        .msg(6, port)
        .msg(7, env_plain)
        .msg(7, env_secret)
        .msg(8, resources)
        .msg(10, liveness)
        .msg(11, readiness)
        .str(13, "")
        .str(14, "IfNotPresent")
        .bool(16, false)
        .bool(17, false)
        .bool(18, false);
    // supplementalGroups: one packed run and one unpacked element; both decode into one list.
    let packed = {
        let mut e = Enc::new();
        e.raw_varint(1000);
        e.raw_varint(2000);
        e
    };
    let security = Enc::new().bytes(4, &packed.0).int(4, 3000).bool(3, false).int(2, -1);
    let spec = Enc::new()
        .msg(2, container)
        .str(3, "Always")
        .int(4, 30)
        .str(6, "")
        .bool(11, false)
        .bool(12, false)
        .bool(13, false)
        .msg(14, security)
        .bool(21, false)
        .entry(7, "disk", b"ssd");
    let pod = Enc::new()
        .msg(1, meta("web", "default", None))
        .msg(2, spec)
        .msg(3, Enc::new());
    let got = decode(&body("v1", "Pod", &pod)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": null},
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "nginx:1.27",
                    "command": ["sh", "-c"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [
                        {"name": "MODE", "value": "fast"},
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token", "optional": false}}}
                    ],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
                    "livenessProbe": {"tcpSocket": {"port": 8080}},
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                        "timeoutSeconds": 1,
                        "periodSeconds": 10
                    },
                    "imagePullPolicy": "IfNotPresent"
                }],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "nodeSelector": {"disk": "ssd"},
                "securityContext": {"runAsUser": -1, "runAsNonRoot": false, "supplementalGroups": [1000, 2000, 3000]},
                "automountServiceAccountToken": false
            },
            "status": {}
        })
    );
}

#[test]
fn deployment_keeps_explicit_zero_replicas() {
    let spec = Enc::new()
        .int(1, 0)
        .msg(2, Enc::new().entry(1, "app", b"web"))
        .int(5, 0)
        .bool(7, false);
    let dep = Enc::new().msg(1, meta("web", "", None)).msg(2, spec);
    let got = decode(&body("apps/v1", "Deployment", &dep)).unwrap();
    assert_eq!(
        got["spec"],
        json!({"replicas": 0, "selector": {"matchLabels": {"app": "web"}}})
    );
}

#[test]
fn role_binding() {
    let rb = Enc::new()
        .msg(1, meta("read", "team", None))
        .msg(
            2,
            Enc::new()
                .str(1, "User")
                .str(2, "rbac.authorization.k8s.io")
                .str(3, "alice")
                .str(4, ""),
        )
        .msg(
            2,
            Enc::new()
                .str(1, "ServiceAccount")
                .str(2, "")
                .str(3, "bot")
                .str(4, "team"),
        )
        .msg(
            3,
            Enc::new()
                .str(1, "rbac.authorization.k8s.io")
                .str(2, "Role")
                .str(3, "reader"),
        );
    let got = decode(&body("rbac.authorization.k8s.io/v1", "RoleBinding", &rb)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "read", "namespace": "team", "creationTimestamp": null},
            "subjects": [
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"},
                {"kind": "ServiceAccount", "name": "bot", "namespace": "team"}
            ],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}
        })
    );
}

#[test]
fn role_with_acronym_field_names() {
    let rule = Enc::new().str(1, "get").str(5, "/healthz").str(5, "/metrics");
    let role = Enc::new().msg(1, meta("r", "", None)).msg(2, rule);
    let got = decode(&body("rbac.authorization.k8s.io/v1", "ClusterRole", &role));
    // ClusterRole is a distinct kind; Role shares the rule message.
    assert_eq!(
        got.unwrap()["rules"],
        json!([{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/metrics"]}])
    );
}

#[test]
fn self_subject_access_review() {
    let attrs = Enc::new()
        .str(1, "default")
        .str(2, "create")
        .str(3, "")
        .str(4, "")
        .str(5, "pods")
        .str(6, "")
        .str(7, "");
    let ssar = Enc::new()
        .msg(1, meta("", "", None))
        .msg(2, Enc::new().msg(1, attrs))
        .msg(3, Enc::new().bool(1, false).str(2, "").str(3, "").bool(4, false));
    let got = decode(&body("authorization.k8s.io/v1", "SelfSubjectAccessReview", &ssar)).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}},
            "status": {"allowed": false}
        })
    );
}

#[test]
fn subject_access_review_extra_is_a_map_of_string_lists() {
    let spec = Enc::new()
        .msg(2, Enc::new().str(1, "/api").str(2, "get"))
        .str(3, "bob")
        .str(4, "dev")
        .entry_msg(5, "scopes", Enc::new().str(1, "a").str(1, "b"));
    let sar = Enc::new().msg(1, meta("", "", None)).msg(2, spec);
    let got = decode(&body("authorization.k8s.io/v1", "SubjectAccessReview", &sar)).unwrap();
    assert_eq!(
        got["spec"],
        json!({"nonResourceAttributes": {"path": "/api", "verb": "get"}, "user": "bob", "groups": ["dev"],
               "extra": {"scopes": ["a", "b"]}})
    );
}

#[test]
fn lease_micro_time_and_managed_fields() {
    let spec = Enc::new()
        .str(1, "holder")
        .int(2, 15)
        .msg(4, Enc::new().int(1, 1_704_164_645).int(2, 123_456_789));
    let mf = Enc::new()
        .str(1, "kubectl")
        .str(2, "Update")
        .str(3, "coordination.k8s.io/v1")
        .msg(4, Enc::new().int(1, 0).int(2, 0))
        .str(6, "FieldsV1")
        .msg(7, Enc::new().bytes(1, br#"{"f:spec":{}}"#))
        .str(8, "");
    let lease = Enc::new().msg(1, meta("l", "ns", None).msg(17, mf)).msg(2, spec);
    let got = decode(&body("coordination.k8s.io/v1", "Lease", &lease)).unwrap();
    assert_eq!(got["spec"]["renewTime"], json!("2024-01-02T03:04:05.123456Z"));
    assert_eq!(got["spec"]["leaseDurationSeconds"], json!(15));
    assert_eq!(
        got["metadata"]["managedFields"],
        json!([{"manager": "kubectl", "operation": "Update", "apiVersion": "coordination.k8s.io/v1",
                "time": "1970-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}])
    );
}

#[test]
fn crd_schema_specials() {
    let str_schema = Enc::new().str(5, "string");
    let schema = Enc::new()
        .str(5, "object")
        .entry_msg(
            29,
            "size",
            Enc::new()
                .str(5, "integer")
                .msg(8, Enc::new().bytes(1, b"3"))
                .double(9, 10.0),
        )
        .entry_msg(
            29,
            "tags",
            Enc::new()
                .str(5, "array")
                .msg(24, Enc::new().msg(1, str_schema.clone())),
        )
        .entry_msg(
            29,
            "labels",
            Enc::new()
                .str(5, "object")
                .msg(30, Enc::new().bool(1, true).msg(2, str_schema)),
        )
        .entry_msg(29, "free", Enc::new().msg(30, Enc::new().bool(1, false)).bool(38, true))
        .entry_msg(
            29,
            "mode",
            Enc::new()
                .msg(20, Enc::new().bytes(1, br#""a""#))
                .msg(20, Enc::new().bytes(1, b"1")),
        )
        .entry_msg(32, "x", Enc::new().str(2, "y"))
        .double(19, 0.5);
    let version = Enc::new()
        .str(1, "v1")
        .bool(2, true)
        .bool(3, true)
        .msg(4, Enc::new().msg(1, schema))
        .bool(7, false);
    let spec = Enc::new()
        .str(1, "example.com")
        .msg(3, Enc::new().str(1, "widgets").str(2, "").str(4, "Widget").str(5, ""))
        .str(4, "Namespaced")
        .msg(7, version)
        .bool(10, false);
    let crd = Enc::new().msg(1, meta("widgets.example.com", "", None)).msg(2, spec);
    let got = decode(&body("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd)).unwrap();
    assert_eq!(
        got["spec"],
        json!({
            "group": "example.com",
            "names": {"plural": "widgets", "kind": "Widget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "multipleOf": 0.5,
                    "properties": {
                        "size": {"type": "integer", "default": 3, "maximum": 10},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"additionalProperties": false, "x-kubernetes-preserve-unknown-fields": true},
                        "mode": {"enum": ["a", 1]}
                    },
                    "dependencies": {"x": ["y"]}
                }}
            }]
        })
    );
}

#[test]
fn delete_options_under_any_group_version() {
    let opts = Enc::new().int(1, 0).str(4, "Foreground").str(5, "All");
    let got = decode(&body("apps/v1", "DeleteOptions", &opts)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
               "propagationPolicy": "Foreground", "dryRun": ["All"]})
    );
}

#[test]
fn unknown_fields_are_skipped_and_repeated_messages_merge() {
    let cm = Enc::new()
        .msg(1, meta("c", "", None))
        .str(99, "from a newer client")
        .int(98, 7)
        .double(97, 1.0)
        .msg(1, Enc::new().entry(11, "merged", b"yes"))
        .entry(2, "k", b"v");
    let got = decode(&body("v1", "ConfigMap", &cm)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "creationTimestamp": null, "labels": {"merged": "yes"}}, "data": {"k": "v"}})
    );
}

#[test]
fn errors_are_clear() {
    let err = |b: &[u8]| decode(b).unwrap_err();
    assert!(err(b"{}").contains("k8s"));
    assert!(err(&body("example.com/v1", "Widget", &Enc::new())).contains("no protobuf schema for kind \"Widget\""));
    assert!(err(&body("", "", &Enc::new())).contains("apiVersion and kind"));
    // A string field sent as a varint.
    let bad = Enc::new().msg(1, Enc::new().int(1, 5));
    assert!(err(&body("v1", "ConfigMap", &bad)).contains("wire type 0"));
    // Truncated: a length past the end.
    let mut b = body("v1", "ConfigMap", &Enc::new().msg(1, meta("c", "", None)));
    b.truncate(b.len() - 3);
    assert!(err(&b).contains("truncated"));
    // An invalid IntOrString type.
    let port = Enc::new().msg(1, Enc::new().msg(3, Enc::new().msg(1, Enc::new().int(1, 7))));
    let c = Enc::new().str(1, "a").msg(10, port);
    let pod = Enc::new().msg(2, Enc::new().msg(2, c));
    assert!(err(&body("v1", "Pod", &pod)).contains("invalid type 7"));
    // Embedded raw JSON that is not JSON.
    let cr = Enc::new()
        .msg(1, meta("r", "", None))
        .msg(2, Enc::new().bytes(1, b"{not json"));
    assert!(err(&body("apps/v1", "ControllerRevision", &cr)).contains("not JSON"));
    // A content encoding we do not do.
    let gz = Enc::new()
        .msg(1, Enc::new().str(1, "v1").str(2, "ConfigMap"))
        .str(3, "gzip");
    assert!(err(&[MAGIC, gz.0.as_slice()].concat()).contains("gzip"));
}

#[test]
fn json_content_type_in_envelope() {
    let unknown = Enc::new()
        .msg(1, Enc::new().str(1, "v1").str(2, "ConfigMap"))
        .bytes(2, br#"{"metadata":{"name":"j"}}"#)
        .str(4, "application/json");
    let got = decode(&[MAGIC, unknown.0.as_slice()].concat()).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}})
    );
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    // JSONSchemaProps.not (tag 28) nested 5 000 times.
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..5_000 {
        inner = Enc::new().bytes(28, &inner).0;
    }
    let version = Enc::new().msg(4, Enc::new().bytes(1, &inner));
    let crd = Enc::new().msg(2, Enc::new().msg(7, version));
    let err = decode(&body("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd)).unwrap_err();
    assert!(err.contains("nested deeper"), "{err}");
    // Likewise RawExtensions holding envelopes holding RawExtensions.
    let mut raw = br#"{"a":1}"#.to_vec();
    for _ in 0..1_000 {
        let cr = Enc::new().msg(2, Enc::new().bytes(1, &raw));
        raw = body("apps/v1", "ControllerRevision", &cr);
    }
    assert!(decode(&raw).unwrap_err().contains("nested deeper"));
}

#[test]
fn go_duration_strings() {
    for (ns, want) in [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (100_000_000, "100ms"),
        (1_000_000_000, "1s"),
        (1_500_000_000, "1.5s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (-2_000_000_000, "-2s"),
        (i64::MIN, "-2562047h47m16.854775808s"),
    ] {
        assert_eq!(go_duration(ns), want);
    }
    // The Duration message itself (no served kind embeds one, so decode it directly).
    let i = schema::MESSAGES
        .iter()
        .position(|m| m.special == Special::Duration)
        .unwrap();
    let d = Enc::new().int(1, 5_400_000_000_000);
    assert_eq!(super::decode_message(&d.0, i as u16, 0).unwrap(), json!("1h30m0s"));
    assert_eq!(super::decode_message(&[], i as u16, 0).unwrap(), json!("0s"));
}

#[test]
fn table_is_consistent() {
    let n = schema::MESSAGES.len();
    for msg in schema::MESSAGES {
        assert!(
            msg.fields.windows(2).all(|w| w[0].tag < w[1].tag),
            "{} fields not sorted",
            msg.name
        );
        for f in msg.fields {
            if let Kind::Message(i) = f.kind {
                assert!(usize::from(i) < n, "{}.{} refers to #{i}", msg.name, f.json);
            }
            assert!(
                !f.json.is_empty() || f.flags & super::INLINE != 0,
                "{} #{} has no name",
                msg.name,
                f.tag
            );
            if f.card == Card::Map {
                assert!(f.flags == super::NONE);
            }
        }
    }
    let kinds = schema::KINDS;
    assert!(kinds.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
    assert!(schema::ANY_VERSION_KINDS.windows(2).all(|w| w[0].0 < w[1].0));
    for (av, k, i) in kinds {
        assert_eq!(schema::MESSAGES[usize::from(*i)].special, Special::None, "{av} {k}");
        assert!(
            schema::MESSAGES[usize::from(*i)].name.ends_with(&format!(".{k}")),
            "{av} {k}"
        );
    }
    for (av, k) in [
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("v1", "Pod"),
        ("v1", "Service"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
        ("apps/v1", "Deployment"),
        ("batch/v1", "Job"),
        ("autoscaling/v1", "Scale"),
        ("policy/v1", "Eviction"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ] {
        assert!(super::lookup_kind(av, k).is_some(), "{av} {k}");
    }
}

/// xorshift64*: deterministic pseudo-random bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn sample_bodies() -> Vec<Vec<u8>> {
    let secret = Enc::new()
        .msg(1, meta("s", "ns", Some(1_700_000_000)).entry(11, "a", b"b"))
        .entry(2, "k", b"v")
        .str(3, "Opaque");
    let pod = Enc::new().msg(1, meta("p", "ns", None)).msg(
        2,
        Enc::new().msg(
            2,
            Enc::new()
                .str(1, "c")
                .msg(6, Enc::new().int(3, 80))
                .msg(8, Enc::new().entry_msg(1, "cpu", quantity("1")))
                .msg(
                    10,
                    Enc::new().msg(1, Enc::new().msg(3, Enc::new().msg(1, int_or_string_int(80)))),
                ),
        ),
    );
    let crd = Enc::new().msg(
        2,
        Enc::new().msg(
            7,
            Enc::new().msg(
                4,
                Enc::new().msg(
                    1,
                    Enc::new()
                        .entry_msg(29, "a", Enc::new().msg(30, Enc::new().bool(1, true)))
                        .msg(8, Enc::new().bytes(1, b"{\"x\":[1,2]}"))
                        .double(9, 1.5),
                ),
            ),
        ),
    );
    vec![
        body("v1", "Secret", &secret),
        body("v1", "Pod", &pod),
        body("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd),
    ]
}

#[test]
fn random_truncated_and_mutated_input_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for body in sample_bodies() {
        assert!(decode(&body).is_ok());
        // Every prefix.
        for n in 0..body.len() {
            let _ = decode(&body[..n]);
        }
        // Random byte flips, insertions and deletions.
        for _ in 0..3_000 {
            let mut b = body.clone();
            for _ in 0..=(rng.next() % 4) {
                let at = (rng.next() as usize) % b.len().max(1);
                match rng.next() % 3 {
                    0 if !b.is_empty() => b[at] ^= 1 << (rng.next() % 8),
                    1 => b.insert(at.min(b.len()), rng.next() as u8),
                    _ if !b.is_empty() => {
                        b.remove(at);
                    }
                    _ => {}
                }
            }
            let _ = decode(&b);
        }
    }
    // Pure noise, with and without the magic and a plausible envelope.
    for _ in 0..3_000 {
        let n = (rng.next() % 200) as usize;
        let noise = rng.bytes(n);
        let _ = decode(&noise);
        let _ = decode(&[MAGIC, noise.as_slice()].concat());
        for (av, kind) in [
            ("v1", "Pod"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
            ("v1", "Secret"),
        ] {
            let unknown = Enc::new().msg(1, Enc::new().str(1, av).str(2, kind)).bytes(2, &noise);
            let result = decode(&[MAGIC, unknown.0.as_slice()].concat());
            if let Ok(v) = result {
                assert!(matches!(v, Value::Object(_)));
            }
        }
    }
}
