//! Renderings of a [`Notification`] for each kind of receiver: Slack Block Kit, a Teams Adaptive Card,
//! an email's plain-text and HTML parts, a CloudEvents 1.0 JSON event with its signature, an RFC 5424
//! syslog line with RFC 6587 octet-counted framing.
//!
//! Every string comes from the scrubbed [`Notification`] (see [`crate::redact`]); nothing here reads
//! the raw audit event.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::model::{Message, Notification};

/// The CloudEvents `source` of every event k8s-janus sends.
pub const CLOUDEVENTS_SOURCE: &str = "k8s-janus";
/// Prefix of the CloudEvents `type`: `io.opsmode.k8s-janus.<audit kind>` (e.g.
/// `io.opsmode.k8s-janus.request.created`).
pub const CLOUDEVENTS_TYPE_PREFIX: &str = "io.opsmode.k8s-janus.";
/// The signature header of the webhook sink.
pub const SIGNATURE_HEADER: &str = "X-Janus-Signature";
/// The header carrying the delivery's idempotency key (HTTP sinks).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Slack escapes `&`, `<` and `>` in mrkdwn and plain text.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The Slack incoming-webhook payload (Block Kit) of a message. `channel` is set when routing named one.
pub fn slack(message: &Message, channel: Option<&str>) -> Value {
    let title = if message.urgent {
        format!(":rotating_light: {}", message.title)
    } else {
        message.title.clone()
    };
    let mut blocks = vec![
        // Block Kit limits: header text 150 characters, section text 3000, field text 2000, 10 fields.
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(&title, 150), "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&slack_escape(&message.text), 3000)}}),
    ];
    let fields: Vec<Value> = message
        .facts
        .iter()
        .take(10)
        .map(|(k, v)| json!({"type": "mrkdwn", "text": clip(&format!("*{}*\n{}", slack_escape(k), slack_escape(v)), 2000)}))
        .collect();
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if !message.to.groups.is_empty() {
        blocks.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": clip(&format!("For: {}", slack_escape(&message.to.groups.join(", "))), 3000)}
        ]}));
    }
    if !message.links.is_empty() {
        let buttons: Vec<Value> = message
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut b =
                    json!({"type": "button", "text": {"type": "plain_text", "text": clip(&l.label, 75)}, "url": l.url});
                if i == 0 {
                    b["style"] = json!(if message.urgent { "danger" } else { "primary" });
                }
                b
            })
            .collect();
        blocks.push(json!({"type": "actions", "elements": buttons}));
    } else if let Some(w) = &message.where_to_go {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": slack_escape(w)}]}));
    }
    let mut payload = json!({"text": title, "blocks": blocks});
    if let Some(c) = channel.filter(|c| !c.is_empty()) {
        payload["channel"] = json!(c);
    }
    payload
}

/// The Teams incoming-webhook payload: a message with one Adaptive Card 1.4 attachment.
pub fn teams(message: &Message) -> Value {
    let mut body = vec![
        json!({"type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium", "wrap": true,
               "color": if message.urgent { "Attention" } else { "Default" }}),
        json!({"type": "TextBlock", "text": message.text, "wrap": true}),
    ];
    if !message.facts.is_empty() {
        let facts: Vec<Value> = message
            .facts
            .iter()
            .map(|(k, v)| json!({"title": k, "value": v}))
            .collect();
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    if !message.to.groups.is_empty() {
        body.push(json!({"type": "TextBlock", "text": format!("For: {}", message.to.groups.join(", ")), "isSubtle": true, "wrap": true}));
    }
    // Set only when there is no link (no base URL).
    if let Some(w) = &message.where_to_go {
        body.push(json!({"type": "TextBlock", "text": w, "isSubtle": true, "wrap": true}));
    }
    let actions: Vec<Value> = message
        .links
        .iter()
        .map(|l| json!({"type": "Action.OpenUrl", "title": l.label, "url": l.url}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": actions,
            }
        }]
    })
}

/// An email's subject, plain-text part and HTML part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailBody {
    /// Subject line.
    pub subject: String,
    /// The text/plain part.
    pub text: String,
    /// The text/html part.
    pub html: String,
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The email rendering of a message.
pub fn email(message: &Message) -> EmailBody {
    let subject = if message.urgent {
        format!("[URGENT] {}", message.title)
    } else {
        message.title.clone()
    };
    let mut text = format!("{}\n\n", message.text);
    let width = message.facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &message.facts {
        text.push_str(&format!("{k:width$}  {v}\n"));
    }
    text.push('\n');
    for l in &message.links {
        text.push_str(&format!("{}: {}\n", l.label, l.url));
    }
    // Set only when there is no link (no base URL).
    if let Some(w) = &message.where_to_go {
        text.push_str(&format!("{w}.\n"));
    }
    text.push_str("\n-- \nk8s-janus\n");

    let mut html = String::from("<!DOCTYPE html>\n<html><body style=\"font-family:sans-serif\">\n");
    if message.urgent {
        html.push_str("<p style=\"color:#b00020;font-weight:bold\">URGENT</p>\n");
    }
    html.push_str(&format!(
        "<h2>{}</h2>\n<p>{}</p>\n<table>\n",
        html_escape(&message.title),
        html_escape(&message.text)
    ));
    for (k, v) in &message.facts {
        html.push_str(&format!(
            "<tr><th style=\"text-align:left;padding-right:1em\">{}</th><td>{}</td></tr>\n",
            html_escape(k),
            html_escape(v)
        ));
    }
    html.push_str("</table>\n");
    for l in &message.links {
        html.push_str(&format!(
            "<p><a href=\"{}\">{}</a></p>\n",
            html_escape(&l.url),
            html_escape(&l.label)
        ));
    }
    // Set only when there is no link (no base URL).
    if let Some(w) = &message.where_to_go {
        html.push_str(&format!("<p>{}.</p>\n", html_escape(w)));
    }
    html.push_str("<p style=\"color:#666\">k8s-janus</p>\n</body></html>\n");
    EmailBody { subject, text, html }
}

/// The CloudEvents 1.0 structured-mode JSON of a notification (`application/cloudevents+json`).
///
/// `id` is the delivery's idempotency key (a repeat after a crash carries the same id: CloudEvents
/// consumers treat source + id as unique); `data` holds the event and, when there is one, the message.
pub fn cloudevent(n: &Notification, idempotency_key: &str) -> Value {
    let mut ce = json!({
        "specversion": "1.0",
        "id": idempotency_key,
        "source": CLOUDEVENTS_SOURCE,
        "type": format!("{CLOUDEVENTS_TYPE_PREFIX}{}", n.event.kind),
        "time": n.event.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "datacontenttype": "application/json",
        "data": {
            "event": n.event,
            "message": n.message,
            "policy": n.policy,
        },
    });
    if let Some(r) = &n.event.request {
        ce["subject"] = json!(r);
    }
    ce
}

/// The `X-Janus-Signature` value for `body` sent at `t`: `t=<unix seconds>,v1=<hex HMAC-SHA256 over
/// "<t>.<body>">` (docs/notifications.md shows how to verify it).
pub fn signature(key: &[u8], t: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; the error arm cannot happen but must not panic.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return format!("t={t},v1=");
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// RFC 5424 PARAM-VALUE escaping: `"`, `\` and `]` get a backslash.
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        // A line break would end the record for receivers that split on them despite the framing.
        out.push(if c == '\n' || c == '\r' { ' ' } else { c });
    }
    out
}

/// The severity of an audit kind (RFC 5424: 4 warning, 5 notice, 6 informational).
fn severity(kind: &str) -> u8 {
    match kind {
        "request.break_glass" | "login.locked" | "request.spec_changed" | "request.approval_ignored" => 4,
        "login.failed" | "request.failed" | "request.revoked" | "request.denied" => 5,
        _ => 6,
    }
}

/// Facility 13 ("log audit", RFC 5424 table 1).
const FACILITY_LOG_AUDIT: u8 = 13;
/// The SD-ID of the structured data element: `name@<private enterprise number>`; 32473 is the number
/// RFC 5612 reserves for documentation and examples, kept until k8s-janus has its own.
pub const SD_ID: &str = "janus@32473";

/// One syslog message (RFC 5424) for a notification: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
/// [janus@32473 key="…" kind="…" actor="…" request="…" cluster="…" namespaces="…"] BOM-less UTF-8 JSON
/// of the event`. `hostname` is the sending pod's name.
pub fn syslog_line(n: &Notification, hostname: &str, app_name: &str, idempotency_key: &str) -> String {
    let pri = FACILITY_LOG_AUDIT * 8 + severity(&n.event.kind);
    let ts = n.event.at.to_rfc3339_opts(SecondsFormat::Micros, true);
    // HOSTNAME, APP-NAME, MSGID: printable US-ASCII without spaces, bounded (255, 48, 32).
    let token = |s: &str, max: usize| -> String {
        let t: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
        if t.is_empty() { "-".into() } else { t }
    };
    let msgid = token(&n.event.kind, 32);
    let mut sd = format!(
        "[{SD_ID} key=\"{}\" id=\"{}\" kind=\"{}\" actor=\"{}\"",
        sd_escape(&n.event.key),
        sd_escape(idempotency_key),
        sd_escape(&n.event.kind),
        sd_escape(&n.event.actor)
    );
    if let Some(r) = &n.event.request {
        sd.push_str(&format!(" request=\"{}\"", sd_escape(r)));
    }
    if let Some(c) = &n.event.cluster {
        sd.push_str(&format!(" cluster=\"{}\"", sd_escape(c)));
    }
    if !n.event.namespaces.is_empty() {
        sd.push_str(&format!(" namespaces=\"{}\"", sd_escape(&n.event.namespaces.join(","))));
    }
    sd.push(']');
    let msg = serde_json::to_string(&n.event).unwrap_or_default();
    format!(
        "<{pri}>1 {ts} {} {} - {msgid} {sd} {msg}",
        token(hostname, 255),
        token(app_name, 48)
    )
}

/// RFC 6587 octet-counting framing: `<length in bytes> <message>`.
pub fn octet_frame(line: &str) -> Vec<u8> {
    let mut out = format!("{} ", line.len()).into_bytes();
    out.extend_from_slice(line.as_bytes());
    out
}

/// Seconds since the Unix epoch for the signature timestamp.
pub fn unix(at: DateTime<Utc>) -> i64 {
    at.timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Computed independently: `printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret`.
        let s = signature(b"secret", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            s,
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[test]
    fn octet_framing_counts_bytes_not_characters() {
        assert_eq!(octet_frame("é"), b"2 \xc3\xa9".to_vec());
        assert_eq!(sd_escape(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
    }
}
