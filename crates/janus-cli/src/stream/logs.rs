//! `janus logs REQUEST POD [-f]`: a container's log through `GET /api/v1/requests/{name}/logs`
//! (crates/janus-web/src/terminal/pods.rs), read with the request's own token on the server.
//!
//! When the server ends the stream (revoke, expiry, logout, token revoked) it
//! sends a last line `[log stream ended <nonce>: <reason>]`, the nonce being the response's
//! `X-Janus-Stream-End` header (random per stream: a container's own line that looks like it is log, not the
//! end); that line goes to stderr as "janus: log stream ended: …" and the exit code is 8. Without `-f` the
//! client asks for `follow=false`: the tail, then the end.

use super::{http, resolve, write_now};
use crate::{CliError, ExitCode, Target};

/// What `janus logs` was asked for.
#[derive(Debug, Clone, Default)]
pub struct LogsArgs {
    /// The access request's name.
    pub request: String,
    /// The pod.
    pub pod: String,
    /// The container; the server picks a pod's only container.
    pub container: Option<String>,
    /// The namespace; `None` picks the request's only one, or lists them.
    pub namespace: Option<String>,
    /// Keep following until the server ends the stream (or the person presses Ctrl-C).
    pub follow: bool,
    /// Lines before now to show (the server's default is 200, at most 5000).
    pub tail: Option<i64>,
}

/// Shows the log; returns 0, or 8 when the server ended the stream because the access or login ended.
pub async fn logs(t: &Target, a: &LogsArgs) -> Result<i32, CliError> {
    let place = resolve(t, &a.request, a.namespace.as_deref(), Some(&a.pod)).await?;
    let tail = a.tail.map(|n| n.to_string());
    let mut query = vec![("namespace", place.namespace.as_str()), ("pod", place.pod.as_str())];
    if let Some(c) = &a.container {
        query.push(("container", c.as_str()));
    }
    if let Some(n) = &tail {
        query.push(("tail", n.as_str()));
    }
    if !a.follow {
        query.push(("follow", "false"));
    }
    let mut resp = http::get(t, &["api", "v1", "requests", &a.request, "logs"], &query, None).await?;
    let mut out = std::io::stdout();
    // No header (a server from before the nonce): no line can end the stream, all of it is log.
    let nonce = resp
        .headers()
        .get(END_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let mut lines = Lines::new(nonce.as_deref());
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                let ready = lines.push(&bytes);
                if let Err(e) = write_now(&mut out, &ready) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(0);
                    }
                    return Err(CliError::new(
                        ExitCode::Unreachable,
                        format!("cannot write the log: {e}"),
                    ));
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "log stream failed");
                let _ = write_now(&mut out, &lines.finish().0);
                return Err(CliError::new(
                    ExitCode::Unreachable,
                    "the connection to the janus server was lost while following the log",
                ));
            }
        }
    }
    let (rest, ended) = lines.finish();
    let _ = write_now(&mut out, &rest);
    Ok(match ended {
        Some(reason) => {
            eprintln!("janus: log stream ended: {}", crate::output::clean(&reason));
            ExitCode::SessionEnded as i32
        }
        None => 0,
    })
}

/// The response header naming the nonce of the server's closing line (crates/janus-web/src/terminal/pods.rs).
const END_HEADER: &str = "x-janus-stream-end";

/// Splits the body into lines and holds back what may be the server's closing line (and the empty line the
/// server puts before it) until more log follows or the stream ends.
struct Lines {
    /// An incomplete last line.
    partial: Vec<u8>,
    /// Complete lines held back: empty lines and closing lines.
    held: Vec<u8>,
    /// `[log stream ended <nonce>: `, or `None` when the server sent no nonce (nothing ends the log then).
    end_prefix: Option<String>,
}

impl Lines {
    fn new(nonce: Option<&str>) -> Self {
        Self {
            partial: Vec::new(),
            held: Vec::new(),
            end_prefix: nonce.map(|n| format!("[log stream ended {n}: ")),
        }
    }

    fn is_end(&self, line: &[u8]) -> bool {
        self.end_prefix
            .as_ref()
            .is_some_and(|p| line.starts_with(p.as_bytes()) && line.ends_with(b"]"))
    }

    /// Takes a chunk; returns the bytes that can be shown now.
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.partial.extend_from_slice(chunk);
        let mut ready = Vec::new();
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            let body = &line[..line.len() - 1];
            if body.is_empty() || self.is_end(body) {
                self.held.extend_from_slice(&line);
            } else {
                ready.append(&mut self.held);
                ready.extend_from_slice(&line);
            }
        }
        ready
    }

    /// The stream ended: what is left to show, and the server's reason when its closing line came last.
    fn finish(mut self) -> (Vec<u8>, Option<String>) {
        let held = String::from_utf8_lossy(&self.held).into_owned();
        let last = held.lines().rev().find(|l| !l.is_empty()).unwrap_or_default();
        let reason = self
            .end_prefix
            .as_deref()
            .and_then(|p| last.strip_prefix(p))
            .and_then(|r| r.strip_suffix(']'))
            .map(str::to_string);
        let mut rest = if reason.is_some() {
            // The closing line and the blank line before it are the server's, not the log's.
            let cut = held.rfind(last).unwrap_or(0);
            held[..cut].trim_end_matches('\n').as_bytes().to_vec()
        } else {
            std::mem::take(&mut self.held)
        };
        if !rest.is_empty() && reason.is_some() {
            rest.push(b'\n');
        }
        rest.append(&mut self.partial);
        (rest, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_closing_line_becomes_the_reason_and_log_lines_pass_unchanged() {
        let mut l = Lines::new(Some("n0nce"));
        let mut shown = l.push(b"one\n\ntw");
        shown.extend(l.push(b"o\n[log stream ended n0nce: not yet]\nthree\n"));
        shown.extend(l.push(b"\n[log stream ended n0nce: access was revoked]\n"));
        let (rest, reason) = l.finish();
        shown.extend(rest);
        assert_eq!(
            String::from_utf8(shown).unwrap(),
            "one\n\ntwo\n[log stream ended n0nce: not yet]\nthree\n"
        );
        assert_eq!(reason.as_deref(), Some("access was revoked"));

        // A container's own line forging the closing line (without the stream's nonce) is log, and the end.
        for forged in [
            "[log stream ended: access was revoked]",
            "[log stream ended other: revoked]",
        ] {
            let mut l = Lines::new(Some("n0nce"));
            let mut shown = l.push(format!("a\n\n{forged}\n").as_bytes());
            let (rest, reason) = l.finish();
            shown.extend(rest);
            assert_eq!(String::from_utf8(shown).unwrap(), format!("a\n\n{forged}\n"));
            assert_eq!(reason, None, "{forged}");
        }

        let mut l = Lines::new(Some("n0nce"));
        let mut shown = l.push(b"a\n\n");
        let (rest, reason) = l.finish();
        shown.extend(rest);
        assert_eq!(String::from_utf8(shown).unwrap(), "a\n\n");
        assert_eq!(reason, None);
    }
}
