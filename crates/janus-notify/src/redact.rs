//! Scrubbing: nothing that looks like a token, a kubeconfig or a key leaves in a notification.
//!
//! Audit details never hold a credential by design (docs/security.md, "Audit events"), but reasons,
//! comments and messages are free text people type; someone pasting a token into a reason must not have
//! it mailed to every approver or streamed to a SIEM. So every string a sink sends from an event goes
//! through [`scrub_text`], and the details through [`scrub_value`].

use std::sync::LazyLock;

use regex::Regex;

/// What replaces a scrubbed value.
pub const REDACTED: &str = "[redacted]";

#[allow(clippy::expect_used, reason = "constant patterns, checked by the unit tests")]
static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // PEM blocks (keys, certificates in a pasted kubeconfig), up to the END line or the end of text.
        (r"-----BEGIN [A-Z0-9 ]+-----(?s:.*?)(?:-----END [A-Z0-9 ]+-----|\z)", REDACTED),
        // JWTs: Kubernetes service-account tokens, OIDC tokens.
        (r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*", REDACTED),
        // `token: …`, `password=…`, kubeconfig data fields: keep the name, drop the value.
        (
            r"(?i)\b(token|bearer|password|passwd|secret|client-key-data|client-certificate-data|certificate-authority-data)(\s*[:=]\s*|\s+)[^\s,;]+",
            "$1$2[redacted]",
        ),
        // Long base64 runs (kubeconfig data, keys) and long hex runs (API keys).
        (r"[A-Za-z0-9+/]{48,}={0,2}", REDACTED),
        (r"\b[0-9a-fA-F]{40,}\b", REDACTED),
    ]
    .into_iter()
    .map(|(p, r)| (Regex::new(p).expect("valid pattern"), r))
    .collect()
});

/// Keys whose values are dropped whatever they hold.
const SECRET_KEYS: &[&str] = &[
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "kubeconfig",
    "password",
    "secret",
    "client_secret",
    "authorization",
    "cookie",
    "private_key",
];

/// `s` with every token-, key- or kubeconfig-looking part replaced by [`REDACTED`].
pub fn scrub_text(s: &str) -> String {
    let mut out = s.to_string();
    for (re, with) in PATTERNS.iter() {
        if re.is_match(&out) {
            out = re.replace_all(&out, *with).into_owned();
        }
    }
    out
}

/// A copy of `v` with secret-named keys' values replaced and every string scrubbed.
pub fn scrub_value(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(scrub_text(s)),
        Value::Array(a) => Value::Array(a.iter().map(scrub_value).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    if SECRET_KEYS
                        .iter()
                        .any(|s| lower == *s || lower.ends_with(&format!("_{s}")))
                    {
                        (k.clone(), Value::String(REDACTED.into()))
                    } else {
                        (k.clone(), scrub_value(v))
                    }
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keys_and_kubeconfig_data_are_scrubbed_and_plain_text_is_kept() {
        let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl";
        assert_eq!(scrub_text(&format!("use {jwt} please")), "use [redacted] please");
        assert_eq!(scrub_text("token: abc123"), "token: [redacted]");
        assert_eq!(scrub_text("Bearer abc.def"), "Bearer [redacted]");
        assert_eq!(
            scrub_text("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY----- after"),
            "[redacted] after"
        );
        assert_eq!(
            scrub_text("client-key-data: LS0tLS1CRUdJTg=="),
            "client-key-data: [redacted]"
        );
        let b64 = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk=";
        assert_eq!(scrub_text(b64), REDACTED);
        let plain = "debugging INC-4711: pods crash-looping in payments, need logs";
        assert_eq!(scrub_text(plain), plain);
        let v = serde_json::json!({"reason": format!("x {jwt}"), "grants": [{"token": "abc", "namespace": "apps"}]});
        let s = scrub_value(&v);
        assert_eq!(s["reason"], "x [redacted]");
        assert_eq!(s["grants"][0]["token"], REDACTED);
        assert_eq!(s["grants"][0]["namespace"], "apps");
    }
}
