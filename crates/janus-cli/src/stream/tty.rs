//! The local terminal: raw mode that is undone on every way out (the guard's drop, and a panic hook for
//! panics, since a panic with `panic = "abort"` or in another thread would skip the drop), its size, and
//! whether stdin and stdout are terminals at all.

use std::sync::{Mutex, Once};

use rustix::termios::{self, OptionalActions, Termios};

use crate::{CliError, ExitCode};

/// The settings to go back to while raw mode is on; `None` otherwise.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);
static HOOK: Once = Once::new();

/// Whether both stdin and stdout are terminals (a shell needs both).
pub(crate) fn is_tty() -> bool {
    termios::isatty(std::io::stdin()) && termios::isatty(std::io::stdout())
}

/// The window size as (columns, rows), when stdout is a terminal that knows it.
pub(crate) fn size() -> Option<(u16, u16)> {
    let w = termios::tcgetwinsize(std::io::stdout()).ok()?;
    (w.ws_col > 0 && w.ws_row > 0).then(|| (w.ws_col.min(1000), w.ws_row.min(1000)))
}

/// Puts the original settings back if raw mode is on; safe to call any number of times.
pub(crate) fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = saved {
        // TCSADRAIN: output already written (the last screen) is shown in raw mode first.
        if let Err(e) = termios::tcsetattr(std::io::stdin(), OptionalActions::Drain, &t) {
            tracing::warn!(error = %e, "the terminal settings could not be restored");
        }
    }
}

/// Raw mode on the local terminal while it lives.
#[derive(Debug)]
pub(crate) struct RawMode(());

impl RawMode {
    /// Switches stdin's terminal to raw mode: keys (Ctrl-C, Ctrl-Z, Ctrl-D included) go to the remote shell as
    /// bytes, nothing is echoed locally.
    pub(crate) fn enter() -> Result<Self, CliError> {
        let stdin = std::io::stdin();
        let failed = |e: rustix::io::Errno| {
            CliError::new(
                ExitCode::Unreachable,
                format!("cannot put the terminal into raw mode: {e}"),
            )
        };
        let original = termios::tcgetattr(&stdin).map_err(failed)?;
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        let mut raw = original.clone();
        raw.make_raw();
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(original);
        if let Err(e) = termios::tcsetattr(&stdin, OptionalActions::Now, &raw) {
            SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
            return Err(failed(e));
        }
        Ok(Self(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}
