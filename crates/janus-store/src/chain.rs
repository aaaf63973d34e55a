//! The tamper-evident audit chain: the canonical form and hash of an audit event, and the checks that
//! find the first event changed, deleted or inserted behind the application's back (in the database or
//! in an exported copy). The format is documented in docs/security.md, "Tamper-evident audit log".

use std::collections::VecDeque;
use std::fmt;
use std::io::BufRead;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::{AuditEvent, StoreError};

/// The `prev_hash` of the first event of a chain: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The first element of the canonical form; a future format gets a new one.
pub const CHAIN_FORMAT: &str = "janus-audit-v1";

/// How many recent events the checker remembers, to tell "an event was inserted here" from "this event
/// was replaced" when a link breaks.
const RECENT: usize = 1024;

/// The content of an event that its hash covers.
#[derive(Debug, Clone, Copy)]
pub struct ChainedContent<'a> {
    /// Its place in the chain (1, 2, 3, …).
    pub seq: i64,
    /// The idempotency key.
    pub key: &'a str,
    /// The kind, as stored.
    pub kind: &'a str,
    /// When it happened (hashed at microsecond precision, as stored).
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: &'a str,
    /// The AccessRequest it concerns.
    pub request: Option<&'a str>,
    /// The cluster it concerns.
    pub cluster: Option<&'a str>,
    /// The namespaces it concerns, in stored order.
    pub namespaces: &'a [String],
    /// Kind-specific details.
    pub details: &'a Value,
    /// The hash of the event before it ([`GENESIS_HASH`] for the first).
    pub prev_hash: &'a str,
}

/// Writes `v` as canonical JSON: no whitespace, object keys sorted by their UTF-8 bytes, strings and
/// numbers as serde_json writes them.
pub fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The canonical form an event's hash is computed over: the JSON array
/// `["janus-audit-v1", seq, key, kind, at, actor, request, cluster, namespaces, details, prev_hash]`,
/// `at` in RFC 3339 UTC with exactly six fraction digits and `Z`, absent request/cluster as `null`.
pub fn canonical_form(c: &ChainedContent<'_>) -> String {
    let s = |v: &str| Value::String(v.to_string()).to_string();
    let opt = |v: Option<&str>| v.map_or_else(|| "null".to_string(), s);
    let mut out = String::with_capacity(256);
    out.push('[');
    out.push_str(&s(CHAIN_FORMAT));
    out.push(',');
    out.push_str(&c.seq.to_string());
    for part in [
        s(c.key),
        s(c.kind),
        s(&c.at.to_rfc3339_opts(SecondsFormat::Micros, true)),
        s(c.actor),
        opt(c.request),
        opt(c.cluster),
    ] {
        out.push(',');
        out.push_str(&part);
    }
    out.push(',');
    canonical_json(
        &Value::Array(c.namespaces.iter().map(|n| Value::String(n.clone())).collect()),
        &mut out,
    );
    out.push(',');
    canonical_json(c.details, &mut out);
    out.push(',');
    out.push_str(&s(c.prev_hash));
    out.push(']');
    out
}

/// SHA-256 of the canonical form, as 64 lowercase hex digits.
pub fn event_hash(c: &ChainedContent<'_>) -> String {
    let digest = Sha256::digest(canonical_form(c).as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// The hash a stored or exported event should have, from its own fields.
pub(crate) fn stored_event_hash(ev: &AuditEvent, seq: i64, prev_hash: &str) -> String {
    event_hash(&ChainedContent {
        seq,
        key: &ev.key,
        kind: &ev.kind,
        at: ev.at,
        actor: &ev.actor,
        request: ev.request.as_deref(),
        cluster: ev.cluster.as_deref(),
        namespaces: &ev.namespaces,
        details: &ev.details,
        prev_hash,
    })
}

/// What is wrong at the first bad place of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainFault {
    /// The event's content (or its seq or prev_hash) no longer matches its own hash.
    Changed,
    /// The event was inserted: the event after it links to the event before it.
    Inserted {
        /// The seq of the next event, whose link skips this one.
        next_seq: i64,
    },
    /// The event does not link to the event before it, and to none of the recent ones either: it was
    /// inserted or replaced (or the events it linked to were deleted and the rest renumbered).
    NotLinked {
        /// The hash it links to.
        links_to: String,
        /// The hash of the event before it.
        previous: String,
    },
    /// Events are missing (deleted): from the problem's seq to `to`, before the event `next_key`.
    Missing {
        /// The last missing seq.
        to: i64,
        /// The key of the event after the gap (seq `to + 1`).
        next_key: String,
    },
    /// The last events are missing (deleted): the chain head records seq `to`, the last event found
    /// is `from - 1`.
    TailMissing {
        /// The first missing seq.
        from: i64,
        /// The last seq the chain head records.
        to: i64,
    },
    /// The event lies beyond the recorded chain head: it was inserted behind the application's back.
    BeyondHead {
        /// The last seq the chain head records.
        head: i64,
    },
    /// An exported event carries no seq or hash (exported before the chain existed).
    Unchained,
    /// An event of a copy (an export kept elsewhere) is not in the database, and retention did not
    /// delete it: it was deleted behind the application's back.
    NotInDatabase,
    /// An event of a copy has another hash in the database: the database's event was changed, or the
    /// chain from there on was rewritten.
    DiffersFromCopy {
        /// The hash in the copy.
        copy: String,
        /// The hash in the database.
        database: String,
    },
}

/// The first bad place of a chain: which event, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    /// The seq of the first bad event (for deleted events, the first missing seq).
    pub seq: i64,
    /// The key of the first bad event, when the event is there to name.
    pub key: Option<String>,
    /// What is wrong.
    pub fault: ChainFault,
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.key.as_deref().unwrap_or("?");
        let seq = self.seq;
        match &self.fault {
            ChainFault::Changed => write!(
                f,
                "event seq {seq} (key {key}) was changed: its content no longer matches its own hash"
            ),
            ChainFault::Inserted { next_seq } => write!(
                f,
                "event seq {seq} (key {key}) was inserted: the event after it (seq {next_seq}) links to the \
                 event before it"
            ),
            ChainFault::NotLinked { links_to, previous } => write!(
                f,
                "event seq {seq} (key {key}) does not link to the event before it (its prev_hash is {links_to}, \
                 the previous event's hash is {previous}): it was inserted or replaced"
            ),
            ChainFault::Missing { to, next_key } => {
                if *to == seq {
                    write!(f, "event seq {seq} is missing (deleted)")?;
                } else {
                    write!(f, "events seq {seq}..={to} are missing (deleted)")?;
                }
                write!(f, "; the chain resumes at seq {} (key {next_key})", to + 1)
            }
            ChainFault::TailMissing { from, to } => write!(
                f,
                "events seq {from}..={to} are missing at the end (deleted): the chain head records seq {to}"
            ),
            ChainFault::BeyondHead { head } => write!(
                f,
                "event seq {seq} (key {key}) lies beyond the recorded chain head (seq {head}): it was inserted"
            ),
            ChainFault::NotInDatabase => write!(
                f,
                "event seq {seq} (key {key}) of the copy is not in the database (deleted; retention did not delete it)"
            ),
            ChainFault::DiffersFromCopy { copy, database } => write!(
                f,
                "event seq {seq} (key {key}) differs between the copy and the database (hash {copy} in the copy, \
                 {database} in the database): the database's was changed or its chain rewritten"
            ),
            ChainFault::Unchained => write!(
                f,
                "event (key {key}) carries no seq or hash: it was exported before the audit chain existed"
            ),
        }
    }
}

/// The outcome of checking a chain (the database's, or an exported file's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Events checked.
    pub events: u64,
    /// The seq of the first event checked.
    pub first_seq: Option<i64>,
    /// The seq and hash of the last event checked.
    pub last: Option<(i64, String)>,
    /// The hash the first event links to (the genesis value, the retention anchor, or for a file that
    /// does not start at seq 1, whatever its first event says: not checkable from the file alone).
    pub starts_after: String,
    /// Events in the database not chained yet (written by a replica that is not upgraded yet; the next
    /// insert chains them). Always 0 for a file.
    pub unchained: u64,
    /// The first bad place, if any.
    pub problem: Option<ChainProblem>,
}

impl ChainReport {
    /// Whether the chain checked is intact.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// Checks events one by one, in chain order, and remembers the first problem.
#[derive(Debug)]
pub struct ChainChecker {
    /// The seq and hash the next event must follow; `None` for a file until its first event.
    expected: Option<(i64, String)>,
    /// The last seq the database's chain head records (`None` for a file).
    head: Option<i64>,
    recent: VecDeque<(i64, String, String)>,
    events: u64,
    first_seq: Option<i64>,
    starts_after: String,
    problem: Option<ChainProblem>,
}

impl ChainChecker {
    /// A checker for a chain that continues after `seq` with hash `hash` (the genesis: 0 and
    /// [`GENESIS_HASH`]; after retention: the anchor).
    pub fn after(seq: i64, hash: &str) -> Self {
        Self {
            expected: Some((seq, hash.to_string())),
            head: None,
            recent: VecDeque::new(),
            events: 0,
            first_seq: None,
            starts_after: hash.to_string(),
            problem: None,
        }
    }

    /// A checker for an exported piece of a chain: its first event is taken as it links (unless it is
    /// seq 1, which must link to the genesis value).
    pub fn piece() -> Self {
        Self {
            expected: None,
            head: None,
            recent: VecDeque::new(),
            events: 0,
            first_seq: None,
            starts_after: String::new(),
            problem: None,
        }
    }

    /// Also checks against the database's chain head, which records the last seq chained: an event
    /// beyond it was inserted, and fewer events mean the tail was deleted.
    pub fn with_head(mut self, last_seq: i64) -> Self {
        self.head = Some(last_seq);
        self
    }

    /// The first problem found so far.
    pub fn problem(&self) -> Option<&ChainProblem> {
        self.problem.as_ref()
    }

    /// Checks the next event. Returns `false` once a problem is found (later events are not checked:
    /// the first bad place is the one to report).
    pub fn check(&mut self, ev: &AuditEvent) -> bool {
        if self.problem.is_some() {
            return false;
        }
        let found = self.judge(ev);
        if let Some(p) = found {
            self.problem = Some(p);
            return false;
        }
        true
    }

    fn judge(&mut self, ev: &AuditEvent) -> Option<ChainProblem> {
        let problem = |seq: i64, fault: ChainFault| {
            Some(ChainProblem {
                seq,
                key: Some(ev.key.clone()),
                fault,
            })
        };
        let (Some(seq), Some(hash), Some(prev)) = (ev.seq, ev.hash.as_deref(), ev.prev_hash.as_deref()) else {
            return problem(ev.seq.unwrap_or(0), ChainFault::Unchained);
        };
        let expected = match &self.expected {
            Some(e) => e.clone(),
            None if seq == 1 => (0, GENESIS_HASH.to_string()),
            None => (seq - 1, prev.to_string()),
        };
        if self.events == 0 {
            self.first_seq = Some(seq);
            self.starts_after = expected.1.clone();
        }
        if seq > expected.0 + 1 {
            return Some(ChainProblem {
                seq: expected.0 + 1,
                key: None,
                fault: ChainFault::Missing {
                    to: seq - 1,
                    next_key: ev.key.clone(),
                },
            });
        }
        if seq <= expected.0 {
            // A repeated or backwards seq cannot come out of the database's unique, ordered column; in
            // a file it means lines were copied or moved.
            return problem(
                seq,
                ChainFault::NotLinked {
                    links_to: prev.to_string(),
                    previous: expected.1,
                },
            );
        }
        if let Some(head) = self.head
            && seq > head
        {
            return problem(seq, ChainFault::BeyondHead { head });
        }
        let own_ok = stored_event_hash(ev, seq, prev) == hash;
        if prev == expected.1 {
            if !own_ok {
                return problem(seq, ChainFault::Changed);
            }
        } else if let Some(pos) = self.recent.iter().rposition(|(_, _, h)| h == prev) {
            // The link skips the events after `pos`: the first of them was inserted.
            let (ins_seq, ins_key, _) = self.recent.get(pos + 1).cloned().unwrap_or_default();
            return Some(ChainProblem {
                seq: ins_seq,
                key: Some(ins_key),
                fault: ChainFault::Inserted { next_seq: seq },
            });
        } else if !own_ok {
            return problem(seq, ChainFault::Changed);
        } else {
            return problem(
                seq,
                ChainFault::NotLinked {
                    links_to: prev.to_string(),
                    previous: expected.1,
                },
            );
        }
        self.expected = Some((seq, hash.to_string()));
        self.recent.push_back((seq, ev.key.clone(), hash.to_string()));
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        self.events += 1;
        None
    }

    /// The report, once every event was given. `unchained`: events in the database without a place
    /// in the chain yet.
    pub fn finish(mut self, unchained: u64) -> ChainReport {
        if self.problem.is_none()
            && let (Some(head), Some((last, _))) = (self.head, &self.expected)
            && *last < head
        {
            self.problem = Some(ChainProblem {
                seq: last + 1,
                key: None,
                fault: ChainFault::TailMissing {
                    from: last + 1,
                    to: head,
                },
            });
        }
        let last = match (&self.expected, self.events) {
            (Some(e), n) if n > 0 => Some(e.clone()),
            _ => None,
        };
        ChainReport {
            events: self.events,
            first_seq: self.first_seq,
            last,
            starts_after: self.starts_after,
            unchained,
            problem: self.problem,
        }
    }
}

/// One event of a copy, as the database is compared with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedLink {
    /// Its seq.
    pub seq: i64,
    /// Its key.
    pub key: String,
    /// Its hash in the copy.
    pub hash: String,
}

/// Reads an export in JSON lines and hands its events to `each` in pieces of at most `size` (the
/// last piece may be shorter), for comparing with the database. Lines without seq or hash are skipped
/// (the file check reports them). Errors as [`verify_jsonl`].
pub fn jsonl_links(input: impl BufRead, size: usize, each: &mut dyn FnMut(Vec<CopiedLink>)) -> Result<(), StoreError> {
    let mut piece = Vec::with_capacity(size.max(1));
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| StoreError::Invalid(format!("cannot read line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let ev: AuditEvent = serde_json::from_str(&line)
            .map_err(|e| StoreError::Invalid(format!("line {} is not an exported audit event: {e}", i + 1)))?;
        if let (Some(seq), Some(hash)) = (ev.seq, ev.hash) {
            piece.push(CopiedLink { seq, key: ev.key, hash });
            if piece.len() >= size.max(1) {
                each(std::mem::take(&mut piece));
            }
        }
    }
    if !piece.is_empty() {
        each(piece);
    }
    Ok(())
}

/// Checks an export in JSON lines (`janus audit export --format jsonl`): every event's own hash, every
/// link, and that seq has no gap. Blank lines are skipped. A line that is not an audit event is an
/// error (the file cannot be checked), naming the line.
pub fn verify_jsonl(input: impl BufRead) -> Result<ChainReport, StoreError> {
    let mut checker = ChainChecker::piece();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| StoreError::Invalid(format!("cannot read line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let ev: AuditEvent = serde_json::from_str(&line)
            .map_err(|e| StoreError::Invalid(format!("line {} is not an exported audit event: {e}", i + 1)))?;
        if !checker.check(&ev) {
            break;
        }
    }
    Ok(checker.finish(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_has_no_whitespace() {
        let mut out = String::new();
        canonical_json(
            &json!({"b": 1, "a": {"z": [true, null, "x\"y"], "é": 2.5, "A": -3}}),
            &mut out,
        );
        assert_eq!(out, r#"{"a":{"A":-3,"z":[true,null,"x\"y"],"é":2.5},"b":1}"#);
    }

    #[test]
    fn the_canonical_form_is_fixed() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T10:00:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let ns = vec!["apps".to_string()];
        let details = json!({"reason": "x", "n": 1});
        let c = ChainedContent {
            seq: 7,
            key: "k/1",
            kind: "session.opened",
            at,
            actor: "a@x.io",
            request: Some("r"),
            cluster: None,
            namespaces: &ns,
            details: &details,
            prev_hash: GENESIS_HASH,
        };
        assert_eq!(
            canonical_form(&c),
            format!(
                r#"["janus-audit-v1",7,"k/1","session.opened","2026-03-01T10:00:00.500000Z","a@x.io","r",null,["apps"],{{"n":1,"reason":"x"}},"{GENESIS_HASH}"]"#
            )
        );
        // SHA-256 of exactly that text, as `printf '%s' "$form" | sha256sum` prints it.
        assert_eq!(
            event_hash(&c),
            "ed01f8bb44b249fc216aaf31ddc8cd28ac36fcab5bad5619eec97f7b878c8e6f"
        );
        assert_ne!(event_hash(&c), event_hash(&ChainedContent { seq: 8, ..c }));
    }
}
