//! A small in-memory sliding-window limiter (login attempts per client address).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Allows `max` events per `window` and key.
pub struct RateLimiter {
    max: usize,
    window: Duration,
    events: Mutex<HashMap<String, Vec<Instant>>>,
}

impl RateLimiter {
    /// A limiter of `max` events per `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            events: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event for `key`; false when the limit is already reached.
    pub fn allow(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut map = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            // Bound memory under a flood of distinct keys: forget windows that are over.
            let window = self.window;
            map.retain(|_, v| v.last().is_some_and(|t| now.duration_since(*t) < window));
        }
        let v = map.entry(key.to_string()).or_default();
        v.retain(|t| now.duration_since(*t) < self.window);
        if v.len() >= self.max {
            return false;
        }
        v.push(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key() {
        let l = RateLimiter::new(2, Duration::from_secs(60));
        assert!(l.allow("a") && l.allow("a") && !l.allow("a"));
        assert!(l.allow("b"));
    }
}
