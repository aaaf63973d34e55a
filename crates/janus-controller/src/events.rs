//! The notes of the Kubernetes Events the controller publishes: short enough for the API server.
//!
//! kube-apiserver refuses an Event whose note (message) is longer than 1,024 bytes
//! (`NoteLengthLimit` in pkg/apis/core/validation/events.go, compared with Go's `len`), and the refused
//! Event is simply lost. The controller's notes carry API error messages, and a 403 from the RBAC
//! escalation check lists every permission it lacks, so they easily pass that. kube's error text also
//! repeats the whole server message in its `Debug` form. [`note`] keeps what a reader needs: the start
//! of the message, the HTTP code and reason, and the end (which says what to do).

/// The API server's limit on an Event's note, in bytes.
pub const NOTE_LIMIT: usize = 1024;

/// How much of the end of a long message is kept (the advice that follows the error).
const TAIL_BYTES: usize = 160;

/// The note for an Event about `message`: unchanged when it fits, otherwise summarised to at most
/// [`NOTE_LIMIT`] bytes, cut on character boundaries, keeping the start, the HTTP code and reason of
/// an API error and the end of the message.
pub fn note(message: &str) -> String {
    let (cleaned, status) = without_status_dump(message);
    if cleaned.len() <= NOTE_LIMIT {
        return cleaned;
    }
    let marker = match &status {
        Some((code, reason)) if !reason.is_empty() => format!(" … [truncated; HTTP {code} {reason}] … "),
        Some((code, _)) => format!(" … [truncated; HTTP {code}] … "),
        None => " … [truncated] … ".to_string(),
    };
    let tail = tail_of(&cleaned, TAIL_BYTES);
    let head = head_of(&cleaned, NOTE_LIMIT.saturating_sub(marker.len() + tail.len()));
    format!("{head}{marker}{tail}")
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn head_of(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The longest suffix of `s` of at most `max` bytes, starting after a space when there is one (so it
/// does not begin mid-word).
fn tail_of(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    let tail = &s[start..];
    match tail.find(' ') {
        Some(i) if start > 0 && i + 1 < tail.len() => &tail[i + 1..],
        _ => tail,
    }
}

/// Removes kube's `Debug` dump of an API Status (` (Status { … })`, which repeats the server's message)
/// and puts the HTTP code in its place. Returns the text and the Status's code and reason, if any.
fn without_status_dump(message: &str) -> (String, Option<(u16, String)>) {
    const START: &str = " (Status {";
    let Some(at) = message.find(START) else {
        return (message.to_string(), None);
    };
    let Some(len) = balanced_len(&message[at + 1..]) else {
        return (message.to_string(), None);
    };
    let dump = &message[at + 1..at + 1 + len];
    let code = field_after(dump, "code: ").and_then(|c| c.parse::<u16>().ok());
    let reason = field_after(dump, ", reason: \"").unwrap_or_default();
    let rest = &message[at + 1 + len..];
    match code {
        Some(code) => (format!("{} (HTTP {code}){rest}", &message[..at]), Some((code, reason))),
        None => (format!("{}{rest}", &message[..at]), None),
    }
}

/// The characters of `s` outside quoted strings (with their byte offsets), for reading kube's `Debug`
/// dumps: a quoted message may contain anything, brackets and `key: ` patterns included. An opening
/// quote is yielded (it ends the text before it); the string's contents and closing quote are not.
fn outside_quotes(s: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let mut in_str = false;
    let mut escaped = false;
    s.char_indices().filter(move |&(_, c)| {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            return false;
        }
        if c == '"' {
            in_str = true;
        }
        true
    })
}

/// The length of the parenthesised group `s` starts with, skipping quoted strings (with escapes).
fn balanced_len(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in outside_quotes(s) {
        match c {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + c.len_utf8());
                }
            }
            _ => {}
        }
    }
    None
}

/// The alphanumeric run after the first `key` outside quoted strings of `dump`.
fn field_after(dump: &str, key: &str) -> Option<String> {
    let (i, _) = outside_quotes(dump).find(|&(i, _)| dump[i..].starts_with(key))?;
    Some(
        dump[i + key.len()..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text the grant step reports for a refused RoleBinding, built from kube's real error type.
    fn escalation_failure(rules: usize) -> String {
        let listed: Vec<String> = (0..rules)
            .map(|i| {
                format!("{{APIGroups:[\"\"], Resources:[\"pods/resource-{i}\"], Verbs:[\"get\" \"list\" \"watch\"]}}")
            })
            .collect();
        let status = kube::core::Status {
            status: Some(kube::core::response::StatusSummary::Failure),
            code: 403,
            message: format!(
                "rolebindings.rbac.authorization.k8s.io \"janus-x\" is forbidden: user \"system:serviceaccount:k8s-janus:k8s-janus-controller\" (groups=[\"system:serviceaccounts\"]) is attempting to grant RBAC permissions not currently held:\n{}",
                listed.join("\n")
            ),
            reason: "Forbidden".into(),
            ..Default::default()
        };
        let e = kube::Error::Api(Box::new(status));
        format!(
            "k8s-janus is not allowed to bind the exec role on cluster prod: {e}; check the chart's RBAC (or the remote agent) there"
        )
    }

    #[test]
    fn short_messages_are_kept() {
        assert_eq!(note("approved by alice"), "approved by alice");
        let exact = "x".repeat(NOTE_LIMIT);
        assert_eq!(note(&exact), exact);
    }

    #[test]
    fn a_long_escalation_refusal_keeps_start_code_and_advice() {
        let msg = escalation_failure(30);
        assert!(msg.len() > 2 * NOTE_LIMIT, "the fixture is long: {}", msg.len());
        let n = note(&msg);
        assert!(n.len() <= NOTE_LIMIT, "{} bytes", n.len());
        assert!(
            n.starts_with("k8s-janus is not allowed to bind the exec role on cluster prod: ApiError: rolebindings")
        );
        assert!(n.contains("[truncated; HTTP 403 Forbidden]"), "{n}");
        assert!(n.ends_with("check the chart's RBAC (or the remote agent) there"), "{n}");
        assert!(!n.contains("Status {"), "the Debug dump is gone: {n}");
    }

    #[test]
    fn a_short_api_error_loses_only_the_repetition() {
        let msg = escalation_failure(1);
        let n = note(&msg);
        assert!(n.len() < msg.len());
        assert!(!n.contains("Status {"), "{n}");
        assert!(n.contains(": Forbidden (HTTP 403); check the chart's RBAC"), "{n}");
        assert!(!n.contains("truncated"), "{n}");
    }

    #[test]
    fn cuts_fall_on_character_boundaries_at_every_length() {
        for len in [NOTE_LIMIT - 1, NOTE_LIMIT, NOTE_LIMIT + 1, NOTE_LIMIT + 2, 5000] {
            for unit in ["€", "a€", "ab€", "😀"] {
                let msg: String = unit.repeat(len / unit.len() + 1);
                let n = note(&msg);
                assert!(n.len() <= NOTE_LIMIT, "{len} {unit}: {} bytes", n.len());
                if msg.len() <= NOTE_LIMIT {
                    assert_eq!(n, msg);
                } else {
                    assert!(n.starts_with(unit) && n.contains("[truncated]"), "{n}");
                }
            }
        }
    }

    #[test]
    fn brackets_and_keys_inside_quoted_strings_are_skipped() {
        let dump =
            r#"(Status { message: "a ) } ] \" code: 999, reason: \"X\"", reason: "Forbidden", code: 403 }) tail"#;
        assert_eq!(balanced_len(dump), Some(dump.len() - " tail".len()));
        assert_eq!(field_after(dump, "code: ").as_deref(), Some("403"));
        assert_eq!(field_after(dump, ", reason: \"").as_deref(), Some("Forbidden"));
        assert_eq!(field_after(dump, "missing: "), None);
    }

    #[test]
    fn malformed_dumps_are_left_as_text() {
        let msg = format!("failed (Status {{ code: 500, message: \"{}", "y".repeat(2000));
        let n = note(&msg);
        assert!(n.len() <= NOTE_LIMIT);
        assert!(n.starts_with("failed (Status {"));
    }
}
