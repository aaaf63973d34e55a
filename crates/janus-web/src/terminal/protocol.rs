//! The terminal WebSocket protocol. Data and control never mix: keystrokes and output travel as binary
//! frames only; control messages are JSON text frames. So JSON typed into the shell stays data.

use serde::{Deserialize, Serialize};

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
        for bad in [
            r#"{"type":"resize","cols":0,"rows":40}"#,
            r#"{"type":"resize","cols":70000,"rows":40}"#,
            r#"{"type":"exec","cmd":"rm"}"#,
            r#"{"type":"ping","x":1}"#,
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
