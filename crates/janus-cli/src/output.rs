//! How answers are printed: aligned tables for people, or the API's JSON objects unchanged (`-o json`,
//! `-o yaml`) for scripts.

use std::io::Write as _;

use serde_json::Value;

use crate::{CliError, ExitCode};

/// The `-o` choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Columns for people.
    #[default]
    Table,
    /// The API's JSON objects (lists as arrays), unchanged.
    Json,
    /// The same objects as YAML.
    Yaml,
}

/// Prints `value` as JSON or YAML; `false` for [`Format::Table`] (the caller prints its table).
pub fn machine(format: Format, value: &Value) -> Result<bool, CliError> {
    let text = match format {
        Format::Table => return Ok(false),
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        Format::Yaml => yaml_serde::to_string(value).map_err(|e| e.to_string()),
    }
    .map_err(|e| CliError::new(ExitCode::Unreachable, format!("cannot print the answer: {e}")))?;
    out(&text);
    Ok(true)
}

/// Writes to stdout; a closed pipe (`janus requests | head -1`) is not an error worth a panic. Control
/// characters other than newline and tab are shown escaped ([`clean_text`]): everything printed here may carry
/// server-supplied text (a requester's reason), and a raw escape sequence could rewrite what the reader sees.
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(clean_text(text).as_bytes());
    let _ = o.flush();
}

/// Whether `c` must not reach a terminal raw: C0 and C1 controls and DEL (they start escape sequences: cursor
/// moves, OSC 52 clipboard writes, title changes), and the bidirectional overrides and isolates that reorder what
/// is shown (CVE-2021-42574).
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape_into(out: &mut String, c: char) {
    use std::fmt::Write as _;
    let n = u32::from(c);
    // Written out visibly, as Rust would escape them, so the reader sees that something was there.
    let _ = if n <= 0xff {
        write!(out, "\\x{n:02x}")
    } else {
        write!(out, "\\u{{{n:x}}}")
    };
}

/// `text` for one line of a terminal: every control character (newline and tab too) shown as `\xNN`.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if unsafe_char(c) {
            escape_into(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` for a terminal, keeping its newlines and tabs; other control characters shown as `\xNN`.
pub fn clean_text(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| unsafe_char(c) && c != '\n' && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) && c != '\n' && c != '\t' {
            escape_into(&mut out, c);
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A string field of a JSON object ("" when absent).
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A table with a header row; columns padded to the widest cell, the last one unpadded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    // Cells are server text: one line each, with control characters visible (a newline in a cell would make
    // a fake row).
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()).collect();
    let rows = &rows;
    let n = header.len();
    let mut width = header.iter().map(|h| h.chars().count()).collect::<Vec<_>>();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            l.push_str(c);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut t = line(header.to_vec());
    for r in rows {
        t.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    t
}

/// `text` cut to `max` characters with an ellipsis, on one line, control characters visible.
pub fn short(text: &str, max: usize) -> String {
    let one_line = clean(&text.split_whitespace().collect::<Vec<_>>().join(" "));
    if one_line.chars().count() <= max {
        one_line
    } else {
        one_line.chars().take(max.saturating_sub(1)).collect::<String>() + "…"
    }
}

/// "key: value" lines, keys aligned.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}:{} {}\n", " ".repeat(w - k.len()), clean(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(&["NAME", "PHASE"], &[vec!["a-long-name".into(), "Active".into()]]);
        assert_eq!(t, "NAME         PHASE\na-long-name  Active\n");
        assert_eq!(short("a\nb  c", 10), "a b c");
        assert_eq!(short("abcdef", 4), "abc…");
    }

    #[test]
    fn server_text_cannot_move_the_cursor_or_write_the_clipboard() {
        let reason = "fix\x1b[1A\x1b[2KCluster: dev\u{9b}31m\x07\x7f\u{202e}";
        let shown = clean(reason);
        assert_eq!(shown, "fix\\x1b[1A\\x1b[2KCluster: dev\\x9b31m\\x07\\x7f\\u{202e}");
        let p = pairs(&[("Reason", "a\nCluster: dev".to_string())]);
        assert_eq!(p, "Reason: a\\x0aCluster: dev\n");
        let t = table(&["REASON"], &[vec!["x\x1b]52;c;ZXZpbA==\x07".into()]]);
        assert_eq!(t, "REASON\nx\\x1b]52;c;ZXZpbA==\\x07\n");
        assert!(!short(reason, 100).contains('\x1b'));
        assert_eq!(clean_text("a\n\tb\x1bc"), "a\n\tb\\x1bc");
        assert_eq!(clean_text("plain"), "plain");
    }
}
