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

/// Writes to stdout; a closed pipe (`janus requests | head -1`) is not an error worth a panic.
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

/// A string field of a JSON object ("" when absent).
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A table with a header row; columns padded to the widest cell, the last one unpadded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
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

/// `text` cut to `max` characters with an ellipsis, on one line.
pub fn short(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
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
        .map(|(k, v)| format!("{k}:{} {v}\n", " ".repeat(w - k.len())))
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
}
