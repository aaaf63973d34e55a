//! The storage error type. Messages never contain credentials.

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or opened (the URL shown never holds a password).
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// The schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(String),
    /// A statement failed (including a database that became unreachable).
    #[error("database query failed: {0}")]
    Query(String),
    /// A row with the same unique key already exists.
    #[error("already exists: {0}")]
    Conflict(String),
    /// The input was rejected before reaching the database.
    #[error("invalid input: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Maps a sqlx error from a statement: unique violations become [`StoreError::Conflict`].
    pub(crate) fn query(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return StoreError::Conflict(db.message().to_string());
        }
        StoreError::Query(e.to_string())
    }
}

/// Removes a secret from a message (and its percent-encoded form), for errors built from driver text.
pub(crate) fn redact(message: String, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => {
            let mut m = message.replace(s, "***");
            let encoded = percent_encode(s);
            if encoded != s {
                m = m.replace(&encoded, "***");
            }
            m
        }
        _ => message,
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_plain_and_encoded() {
        assert_eq!(redact("x s3cr3t y".into(), Some("s3cr3t")), "x *** y");
        assert_eq!(redact("p%40ss".into(), Some("p@ss")), "***");
        assert_eq!(redact("nothing".into(), None), "nothing");
        assert_eq!(redact("nothing".into(), Some("")), "nothing");
    }
}
