//! Deterministic, collision-resistant object names for a request's credentials, safe for any email.
//!
//! Names are derived once at grant time and recorded in `status.grants`; cleanup finds objects by
//! label, never by recomputing these names (the Python implementation leaked Secrets that way).

/// Largest length of a DNS-1123 label.
const MAX_LABEL: usize = 63;

/// FNV-1a, 64 bit: a stable hash with no dependency, enough to keep truncated names unique.
fn fnv1a(data: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Lowercases and replaces everything outside `[a-z0-9-]` with `-`, collapsing runs, trimming dashes.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        let c = ch.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// A DNS-1123 label of at most 63 characters: `prefix-<readable part>-<hash of the full input>`.
pub fn label_name(prefix: &str, parts: &[&str]) -> String {
    let full = parts.join("/");
    let hash = format!("{:08x}", fnv1a(&full) as u32);
    let readable = sanitize(&parts.join("-"));
    let room = MAX_LABEL - prefix.len() - hash.len() - 2;
    let mut readable: String = readable.chars().take(room).collect();
    while readable.ends_with('-') {
        readable.pop();
    }
    if readable.is_empty() {
        format!("{prefix}-{hash}")
    } else {
        format!("{prefix}-{readable}-{hash}")
    }
}

/// Whether `s` is a DNS-1123 label (namespaces, cluster names, ServiceAccounts): 1–63 characters of
/// `[a-z0-9-]`, starting and ending with an alphanumeric.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is a DNS-1123 subdomain (most object names, e.g. pods and containers' pods): at most 253
/// characters, dot-separated DNS-1123 labels.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Name of the ServiceAccount (and RoleBinding) for a request in a namespace.
pub fn grant_name(request: &str, namespace: &str) -> String {
    label_name("janus", &[request, namespace])
}

/// Name of the token Secret in the Janus namespace.
pub fn token_secret_name(request: &str, namespace: &str) -> String {
    label_name("janus-token", &[request, namespace])
}

/// A request name derived from the requester's email, for `generateName`.
pub fn request_name_prefix(email: &str) -> String {
    let local = email.split('@').next().unwrap_or(email);
    let mut s: String = sanitize(local).chars().take(40).collect();
    while s.ends_with('-') {
        s.pop();
    }
    if s.is_empty() {
        "request-".to_string()
    } else {
        format!("{s}-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn hostile_emails_give_valid_distinct_names() {
        let emails = [
            "Jane.Doe+prod@example.com",
            "jane_doe@example.com",
            "jane-doe@example.com",
            "JANE.DOE@EXAMPLE.COM",
            &format!("{}@example.com", "a".repeat(200)),
            "___@x.io",
            "ü@ß.de",
        ];
        let mut seen = std::collections::HashSet::new();
        for (i, e) in emails.iter().enumerate() {
            let prefix = request_name_prefix(e);
            // The API server makes request names unique through generateName's random suffix.
            let req = format!("{prefix}x7k2{i}");
            for ns in ["default", &"n".repeat(63)] {
                let sa = grant_name(&req, ns);
                let secret = token_secret_name(&req, ns);
                assert!(is_label(&sa), "{sa}");
                assert!(is_label(&secret), "{secret}");
                assert!(seen.insert(sa.clone()), "collision {sa}");
            }
        }
        assert_eq!(grant_name("r", "ns"), grant_name("r", "ns"), "deterministic");
        assert_ne!(
            grant_name("a-b", "c"),
            grant_name("a", "b-c"),
            "separator is part of the hash"
        );
    }

    #[test]
    fn dns_names() {
        for ok in ["a", "default", "team-a", "a1", &"x".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "ä", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        for ok in [
            "a.b",
            "web-0",
            "x.y-z.w",
            &format!("{}.{}", "a".repeat(63), "b".repeat(63)),
        ] {
            assert!(is_dns_subdomain(ok), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "A.b", "a_b", &"a.".repeat(127)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }
}
