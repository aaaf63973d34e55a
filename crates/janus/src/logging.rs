//! Logging set-up: JSON lines for log shippers, or text for people in which every field and message is
//! escaped, so that a value from outside (a reason, a username, a header) can neither forge a log line
//! nor smuggle terminal escape sequences into it.

use std::fmt;
use std::io::IsTerminal as _;

use clap::ValueEnum;
use tracing::Dispatch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::util::SubscriberInitExt as _;

/// The log format (`--log-format`).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line; serde escapes control characters in strings.
    Json,
    /// Text for people, fields escaped by [`EscapedFields`].
    Text,
}

/// Installs the global logger writing to stderr; `JANUS_LOG` overrides `default_filter`.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_env("JANUS_LOG").unwrap_or_else(|_| default_filter.into());
    // A second initialisation (only possible in tests) keeps the first logger.
    // Colours only for a person at a terminal, never into files or log collectors.
    let ansi = std::io::stderr().is_terminal();
    let _ = dispatch(format, filter, std::io::stderr, ansi).try_init();
}

/// The logger for `format`, writing to `writer`; `ansi` colours the text format's level and target.
pub fn dispatch<W>(format: LogFormat, filter: EnvFilter, writer: W, ansi: bool) -> Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => Dispatch::new(builder.json().flatten_event(true).finish()),
        LogFormat::Text => Dispatch::new(builder.fmt_fields(EscapedFields).finish()),
    }
}

/// tracing-subscriber's text field format (`message key=value …`) with control characters escaped in
/// every field of events and spans, the message included. The formatter's own colours are untouched:
/// they are added around the fields, never inside them.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        // Formatted plainly first (a String writer has no ANSI styling), then escaped as a whole: the
        // default format itself adds no control characters, so everything escaped came from a value.
        let mut plain = String::new();
        DefaultFields::new().format_fields(Writer::new(&mut plain), fields)?;
        escape_into(&mut writer, &plain)
    }
}

/// Whether a character could break a line, restyle a terminal or reorder what a reader sees: C0 and
/// C1 controls (newlines, ESC, DEL…), the Unicode line and paragraph separators and bidirectional
/// overrides.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes `s` with [`needs_escape`] characters as `\n`, `\r`, `\t` or `\u{…}`.
fn escape_into(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let mut rest = s;
    while let Some(i) = rest.find(needs_escape) {
        out.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or_default();
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = &rest[i + c.len_utf8()..];
    }
    out.write_str(rest)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into memory, for reading back what the logger wrote.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    fn logged(format: LogFormat, ansi: bool, log: impl FnOnce()) -> String {
        let buf = Buffer::default();
        let d = dispatch(format, EnvFilter::new("info"), buf.clone(), ansi);
        tracing::dispatcher::with_default(&d, log);
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    const FORGED: &str = "x\nFAKE level=ERROR";
    const COLOUR: &str = "\x1b[31mred\x1b[0m";

    fn forging_event() {
        let span = tracing::info_span!("request", user = %"eve\r\nINFO admin logged in");
        let _g = span.enter();
        tracing::warn!(
            reason = %FORGED,
            name = COLOUR,
            colour = %COLOUR,
            sep = %"a\u{2028}b\u{2029}c\u{85}d\u{202e}e",
            "refused {}",
            "msg\nWARN forged"
        );
    }

    #[test]
    fn text_format_escapes_every_field_and_the_message() {
        let out = logged(LogFormat::Text, false, forging_event);
        assert_eq!(out.matches('\n').count(), 1, "one event, one line: {out:?}");
        assert!(out.ends_with('\n'));
        assert!(!out.contains('\x1b'), "no escape sequence from a value: {out:?}");
        assert!(!out.contains('\r') && !out.contains('\u{2028}') && !out.contains('\u{2029}'));
        assert!(!out.contains('\u{85}') && !out.contains('\u{202e}'));
        assert!(out.contains(r"reason=x\nFAKE level=ERROR"), "{out}");
        assert!(out.contains(r"colour=\u{1b}[31mred\u{1b}[0m"), "{out}");
        assert!(out.contains(r"refused msg\nWARN forged"), "{out}");
        assert!(
            out.contains(r"user=eve\r\nINFO admin logged in"),
            "span fields too: {out}"
        );
        assert!(out.contains(r"a\u{2028}b\u{2029}c\u{85}d\u{202e}e"), "{out}");
        // With colours (a terminal), the formatter's own styling stays, values stay escaped.
        let coloured = logged(LogFormat::Text, true, forging_event);
        assert_eq!(coloured.matches('\n').count(), 1, "{coloured:?}");
        assert!(coloured.contains(r"\u{1b}[31mred"), "{coloured:?}");
        assert!(!coloured.contains("\x1b[31m"), "{coloured:?}");
        assert!(!coloured.contains('\r'), "{coloured:?}");
    }

    #[test]
    fn json_format_stays_escaped_json() {
        let out = logged(LogFormat::Json, false, forging_event);
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["reason"], FORGED);
        assert_eq!(v["message"], "refused msg\nWARN forged");
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn escaping_keeps_ordinary_text() {
        let mut s = String::new();
        escape_into(&mut s, "plain ünïcode ✓ \\n").unwrap();
        assert_eq!(s, "plain ünïcode ✓ \\n");
        s.clear();
        escape_into(&mut s, "\t\u{7f}\u{0}").unwrap();
        assert_eq!(s, r"\t\u{7f}\u{0}");
    }
}
