//! The terminal WebSocket protocol. Data and control never mix: keystrokes and output travel as binary
//! frames only; control messages are JSON text frames. So JSON typed into the shell stays data.
//!
//! A shell's output frames are the raw bytes of its terminal. A command run without a terminal (exec
//! mode, `command=` query parameters) keeps stdout and stderr apart: each output frame starts with a
//! stream byte ([`STDOUT`] or [`STDERR`]), the way the Kubernetes channel protocol does, and the
//! command's exit code arrives as [`ServerControl::Exit`] before the socket closes.

use serde::{Deserialize, Serialize};

/// Exec mode: the first byte of an output frame carrying the command's standard output.
pub const STDOUT: u8 = 1;
/// Exec mode: the first byte of an output frame carrying the command's standard error.
pub const STDERR: u8 = 2;

/// Control messages from the browser (text frames).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum ClientControl {
    /// The terminal's size changed.
    Resize {
        /// Columns (1..=1000).
        cols: u16,
        /// Rows (1..=1000).
        rows: u16,
    },
    /// Keep-alive (a struct variant so that unknown fields are refused like everywhere else).
    Ping {},
    /// Exec mode: the client has no more input; the command's stdin is closed (a shell has no use for
    /// it: Ctrl-D ends a shell).
    Eof {},
}

/// Control messages to the browser (text frames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerControl {
    /// The shell is connected.
    Connected {
        /// Session id (for the recording).
        session: String,
        /// Container the shell runs in.
        container: String,
    },
    /// The session will end soon unless there is input.
    IdleWarning {
        /// Seconds left.
        seconds: i64,
    },
    /// Exec mode: the command ended with this exit code (0 on success); sent before [`Self::Closed`].
    Exit {
        /// The exit code the exec's final `Status` reported.
        code: i32,
    },
    /// The session ended.
    Closed {
        /// Why.
        reason: String,
    },
    /// Something went wrong before or while connecting.
    Error {
        /// What.
        message: String,
    },
}

impl ClientControl {
    /// Parses a control frame, refusing sizes no terminal has.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > 1024 {
            return Err("control message too large".into());
        }
        let c: Self = serde_json::from_str(text).map_err(|e| format!("invalid control message: {e}"))?;
        if let Self::Resize { cols, rows } = c
            && (cols == 0 || rows == 0 || cols > 1000 || rows > 1000)
        {
            return Err("terminal size out of range".into());
        }
        Ok(c)
    }
}

impl ServerControl {
    /// The JSON text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"type":"error","message":"encoding"}"#.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_parsing() {
        assert_eq!(
            ClientControl::parse(r#"{"type":"resize","cols":120,"rows":40}"#).unwrap(),
            ClientControl::Resize { cols: 120, rows: 40 }
        );
        assert_eq!(
            ClientControl::parse(r#"{"type":"ping"}"#).unwrap(),
            ClientControl::Ping {}
        );
        assert_eq!(
            ClientControl::parse(r#"{"type":"eof"}"#).unwrap(),
            ClientControl::Eof {}
        );
        assert_eq!(ServerControl::Exit { code: 3 }.to_text(), r#"{"type":"exit","code":3}"#);
        for bad in [
            r#"{"type":"resize","cols":0,"rows":40}"#,
            r#"{"type":"resize","cols":70000,"rows":40}"#,
            r#"{"type":"exec","cmd":"rm"}"#,
            r#"{"type":"ping","x":1}"#,
            r#"{"type":"eof","channel":0}"#,
            "not json",
            "",
        ] {
            assert!(ClientControl::parse(bad).is_err(), "{bad}");
        }
        assert!(
            ServerControl::Closed { reason: "x".into() }
                .to_text()
                .contains(r#""type":"closed""#)
        );
    }
}
