//! Session recording as asciicast v2 (output with timing, input, resizes), capped in size, plus the
//! typed lines for the searchable command log.
//!
//! Output and input have separate caps: a flood of output (`cat /dev/urandom`, on purpose or not)
//! must not blind the recording to what is typed afterwards, so keystrokes go on being recorded after
//! the output cap, up to their own (larger) cap. Each cap reached is reported once
//! ([`Recording::take_truncations`]) so that it can be audited.
//!
//! The typed lines are reconstructed from keystrokes (backspace, Ctrl-C and Ctrl-U are applied); tab
//! completion, history recall and cursor-based line editing happen in the shell and are not resolved,
//! so a typed line may differ from the command the shell ran. The recording is the record.
//!
//! A command run without a terminal (exec mode) is recorded the same way: its stdout and stderr as
//! output, its stdin as input (data, not typed lines), and the command itself as its command line.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::json;

/// A recording limit that was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// The output limit (`recordingMaxBytes`): later output is not recorded, input still is.
    Output,
    /// The input limit (`recordingMaxInputBytes`): nothing more is recorded.
    Input,
}

/// An asciicast v2 recording being written.
pub struct Recording {
    start: Instant,
    buf: Vec<u8>,
    /// Cap of the document while output is recorded (header, output and input so far).
    max: usize,
    /// Cap of the input and resize events, counted on their own.
    max_input: usize,
    input_bytes: usize,
    out_full: bool,
    in_full: bool,
    /// Limits reached since the last [`Recording::take_truncations`].
    new_truncations: Vec<Truncation>,
    line: String,
    lines: Vec<(DateTime<Utc>, String)>,
    /// The start of a UTF-8 character cut off at the end of the last output or input chunk.
    out_carry: Vec<u8>,
    in_carry: Vec<u8>,
    /// Output comes from pipes, not a terminal: line feeds get the carriage return a terminal's
    /// `onlcr` would add, so that the replay shows lines, not a staircase.
    crlf: bool,
}

/// Decodes a chunk of a byte stream as UTF-8: a character cut off at the end of the chunk is kept in
/// `carry` for the next one (reads split characters anywhere); bytes that can never be UTF-8 become U+FFFD.
fn decode_stream(carry: &mut Vec<u8>, data: &[u8]) -> String {
    let mut bytes = std::mem::take(carry);
    bytes.extend_from_slice(data);
    let mut out = String::with_capacity(bytes.len());
    let mut rest = &bytes[..];
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                match e.error_len() {
                    Some(n) => {
                        out.push('\u{FFFD}');
                        rest = &bad[n..];
                    }
                    None => {
                        carry.extend_from_slice(bad);
                        return out;
                    }
                }
            }
        }
    }
}

impl Recording {
    /// Starts a recording with its header; `max` caps the output, `max_input` the input.
    pub fn new(cols: u16, rows: u16, title: &str, max: usize, max_input: usize) -> Self {
        let header = json!({
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": Utc::now().timestamp(),
            "title": title,
            "env": {"TERM": "xterm-256color"},
        });
        let mut buf = header.to_string().into_bytes();
        buf.push(b'\n');
        Self {
            start: Instant::now(),
            buf,
            max,
            max_input,
            input_bytes: 0,
            out_full: false,
            in_full: false,
            new_truncations: Vec::new(),
            line: String::new(),
            lines: Vec::new(),
            out_carry: Vec::new(),
            in_carry: Vec::new(),
            crlf: false,
        }
    }

    /// For a command run without a terminal: its output is translated for the replay as a terminal
    /// would show it (`\n` → `\r\n`).
    pub fn without_terminal(mut self) -> Self {
        self.crlf = true;
        self
    }

    fn push_line(&mut self, line: &str) {
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
    }

    fn event(&mut self, kind: &str, data: &str) {
        let output = kind == "o";
        if (output && self.out_full) || self.in_full {
            return;
        }
        let t = self.start.elapsed().as_secs_f64();
        let t = (t * 1_000_000.0).round() / 1_000_000.0;
        let line = json!([t, kind, data]).to_string();
        if output {
            if self.buf.len() + line.len() + 1 > self.max {
                self.out_full = true;
                self.new_truncations.push(Truncation::Output);
                let note = json!([
                    t,
                    "o",
                    "\r\n[recording truncated: output size limit reached; keystrokes are still recorded]\r\n"
                ]);
                self.push_line(&note.to_string());
                return;
            }
        } else if self.input_bytes + line.len() + 1 > self.max_input {
            self.in_full = true;
            self.new_truncations.push(Truncation::Input);
            let note = json!([t, "o", "\r\n[recording truncated: input size limit reached]\r\n"]);
            self.push_line(&note.to_string());
            return;
        } else {
            self.input_bytes += line.len() + 1;
        }
        self.push_line(&line);
    }

    /// Output from the shell.
    pub fn output(&mut self, data: &[u8]) {
        if self.out_full || self.in_full {
            return;
        }
        let mut text = decode_stream(&mut self.out_carry, data);
        if self.crlf {
            text = text.replace('\n', "\r\n");
        }
        if !text.is_empty() {
            self.event("o", &text);
        }
    }

    /// Input to a command run without a terminal: recorded, but it is data for the command, not
    /// typed command lines (the command itself is the line, see [`Recording::command`]).
    pub fn stdin(&mut self, data: &[u8]) {
        let text = decode_stream(&mut self.in_carry, data);
        if !text.is_empty() {
            self.event("i", &text);
        }
    }

    /// A command run as such (exec mode): it goes to the command log as one line.
    pub fn command(&mut self, line: &str) {
        let line: String = line.chars().take(4096).collect();
        self.lines.push((Utc::now(), line));
    }

    /// Input typed; complete lines also go to the command log (as typed, see the module docs).
    pub fn input(&mut self, data: &[u8]) {
        let text = decode_stream(&mut self.in_carry, data);
        if !text.is_empty() {
            self.event("i", &text);
        }
        for c in text.chars() {
            match c {
                '\r' | '\n' => {
                    let l = self.line.trim().to_string();
                    if !l.is_empty() {
                        self.lines.push((Utc::now(), l));
                    }
                    self.line.clear();
                }
                '\u{7f}' | '\u{8}' => {
                    self.line.pop();
                }
                '\u{3}' | '\u{15}' => self.line.clear(),
                c if c.is_control() => {}
                c => {
                    if self.line.len() < 4096 {
                        self.line.push(c);
                    }
                }
            }
        }
    }

    /// A resize.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.event("r", &format!("{cols}x{rows}"));
    }

    /// Whether a size limit cut the recording.
    pub fn truncated(&self) -> bool {
        self.out_full || self.in_full
    }

    /// Limits reached since the last call (each limit is reported once).
    pub fn take_truncations(&mut self) -> Vec<Truncation> {
        std::mem::take(&mut self.new_truncations)
    }

    /// Command lines completed since the last call.
    pub fn take_lines(&mut self) -> Vec<(DateTime<Utc>, String)> {
        std::mem::take(&mut self.lines)
    }

    /// The asciicast document.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asciicast_and_command_lines() {
        let mut r = Recording::new(80, 24, "t", 10_000, 10_000);
        r.output(b"$ ");
        r.input(b"echo hi\x7f\x7fhello\r");
        r.input(b"{\"type\":\"resize\"}\r");
        r.resize(100, 30);
        let lines = r.take_lines();
        assert_eq!(lines[0].1, "echo hello");
        assert_eq!(lines[1].1, "{\"type\":\"resize\"}");
        let doc = String::from_utf8(r.finish()).unwrap();
        let mut it = doc.lines();
        let header: serde_json::Value = serde_json::from_str(it.next().unwrap()).unwrap();
        assert_eq!(header["version"], 2);
        let ev: serde_json::Value = serde_json::from_str(it.next().unwrap()).unwrap();
        assert_eq!(ev[1], "o");
        assert!(doc.contains(r#""r","100x30""#));
    }

    #[test]
    fn a_command_without_terminal_records_output_stdin_and_its_command_line() {
        let mut r = Recording::new(80, 24, "t", 10_000, 10_000).without_terminal();
        r.command("sh -c 'cat'");
        r.stdin(b"rm -rf /\n");
        r.output(b"out\nerr\n");
        // Stdin is data for the command: it is recorded but is no command line.
        let lines: Vec<String> = r.take_lines().into_iter().map(|(_, l)| l).collect();
        assert_eq!(lines, ["sh -c 'cat'"]);
        let doc = r.finish();
        assert_eq!(events(&doc, "i"), "rm -rf /\n");
        assert_eq!(events(&doc, "o"), "out\r\nerr\r\n");
    }

    #[test]
    fn characters_split_across_reads_stay_whole() {
        let mut r = Recording::new(80, 24, "t", 10_000, 10_000);
        let text = "größe ✓ 日本 🚀";
        // Every possible cut, one byte at a time at worst.
        for b in text.as_bytes() {
            r.output(std::slice::from_ref(b));
        }
        r.input("é".as_bytes().get(..1).unwrap());
        r.input("é\r".as_bytes().get(1..).unwrap());
        assert_eq!(r.take_lines()[0].1, "é");
        let doc = String::from_utf8(r.finish()).unwrap();
        let out: String = doc
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e[1] == "o")
            .map(|e| e[2].as_str().unwrap().to_string())
            .collect();
        assert_eq!(out, text);
        assert!(!doc.contains('\u{FFFD}'));
    }

    #[test]
    fn bytes_that_are_never_utf8_are_replaced_not_dropped() {
        let mut carry = Vec::new();
        assert_eq!(decode_stream(&mut carry, b"a\xffb\xc3"), "a\u{FFFD}b");
        assert_eq!(carry, b"\xc3");
        assert_eq!(decode_stream(&mut carry, b"\xa9!"), "é!");
        assert!(carry.is_empty());
        assert_eq!(decode_stream(&mut carry, b"\xe2\x28"), "\u{FFFD}(");
    }

    #[test]
    fn size_limit_truncates() {
        let mut r = Recording::new(80, 24, "t", 300, 300);
        for _ in 0..100 {
            r.output(b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        }
        assert!(r.truncated());
        assert_eq!(r.take_truncations(), vec![Truncation::Output]);
        assert!(r.take_truncations().is_empty(), "reported once");
        let doc = r.finish();
        assert!(doc.len() < 500);
        assert!(String::from_utf8_lossy(&doc).contains("truncated"));
    }

    fn events(doc: &[u8], kind: &str) -> String {
        String::from_utf8_lossy(doc)
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e[1] == kind)
            .map(|e| e[2].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn input_is_recorded_after_the_output_cap_up_to_its_own_cap() {
        let mut r = Recording::new(80, 24, "t", 400, 2_000);
        for _ in 0..100 {
            r.output(b"flood flood flood flood flood flood");
        }
        assert_eq!(r.take_truncations(), vec![Truncation::Output]);
        // Typed after the flood: still in the recording and the command log.
        r.input(b"rm -rf /tmp/evidence\r");
        r.resize(100, 30);
        r.output(b"not recorded");
        assert_eq!(r.take_lines()[0].1, "rm -rf /tmp/evidence");
        for _ in 0..200 {
            r.input(b"x");
        }
        assert_eq!(r.take_truncations(), vec![Truncation::Input]);
        r.input(b"after both caps");
        let doc = r.finish();
        let typed = events(&doc, "i");
        assert!(typed.starts_with("rm -rf /tmp/evidence\r"), "{typed}");
        assert!(!typed.contains("after both caps"));
        assert!(!events(&doc, "o").contains("not recorded"));
        assert!(String::from_utf8_lossy(&doc).contains(r#""r","100x30""#));
        assert!(events(&doc, "o").contains("input size limit reached"));
        assert!(doc.len() < 400 + 2_000 + 300, "{}", doc.len());
    }
}
