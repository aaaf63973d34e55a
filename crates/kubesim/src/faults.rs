//! Fault injection for reliability tests: latency, error rates, throttling, dropped watches, closed connections.

use std::sync::Mutex;
use std::time::Duration;

use rand::RngExt as _;
use serde::{Deserialize, Serialize};

use crate::errors::ApiError;

/// What to inject. All rates are probabilities in `[0, 1]` per request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Delay added to every request.
    pub latency_ms: u64,
    /// Probability of a 500 InternalError.
    pub error_rate: f64,
    /// Probability of a 429 TooManyRequests with `Retry-After`.
    pub throttle_rate: f64,
    /// Seconds sent in `Retry-After` with 429s.
    pub retry_after_seconds: u64,
    /// Probability that the connection is closed without a response.
    pub close_rate: f64,
    /// Watches are ended by the server after this many milliseconds (clients must re-watch).
    pub watch_timeout_ms: Option<u64>,
    /// Refuse every request with 503 (the API server is "down" but the port is open).
    pub unavailable: bool,
    /// Only requests whose path, with its query string, contains this string are affected (all when
    /// empty).
    pub path_contains: String,
    /// Faults hit only the next N affected requests, then stop (unlimited when unset).
    pub times: Option<u64>,
}

/// The fault settings of one cluster.
#[derive(Debug, Default)]
pub struct Faults {
    cfg: Mutex<FaultConfig>,
}

/// What the dispatcher should do with a request.
#[derive(Debug)]
pub enum Verdict {
    /// Serve normally.
    Serve,
    /// Answer with this error.
    Fail(ApiError),
    /// Drop the connection.
    Close,
}

impl Faults {
    /// Current settings.
    pub fn get(&self) -> FaultConfig {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the settings.
    pub fn set(&self, cfg: FaultConfig) {
        *self.cfg.lock().unwrap_or_else(|e| e.into_inner()) = cfg;
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.set(FaultConfig::default());
    }

    /// Applies latency and picks the verdict for one request.
    pub async fn before(&self, path: &str) -> Verdict {
        let cfg = {
            let mut g = self.cfg.lock().unwrap_or_else(|e| e.into_inner());
            if !g.path_contains.is_empty() && !path.contains(&g.path_contains) {
                return Verdict::Serve;
            }
            match g.times {
                Some(0) => return Verdict::Serve,
                Some(n) => g.times = Some(n - 1),
                None => {}
            }
            g.clone()
        };
        if cfg.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(cfg.latency_ms)).await;
        }
        if cfg.unavailable {
            return Verdict::Fail(ApiError::new(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ));
        }
        let mut rng = rand::rng();
        if cfg.close_rate > 0.0 && rng.random_bool(cfg.close_rate.clamp(0.0, 1.0)) {
            return Verdict::Close;
        }
        if cfg.throttle_rate > 0.0 && rng.random_bool(cfg.throttle_rate.clamp(0.0, 1.0)) {
            let mut e = ApiError::new(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            );
            e.retry_after = Some(cfg.retry_after_seconds.max(1));
            return Verdict::Fail(e);
        }
        if cfg.error_rate > 0.0 && rng.random_bool(cfg.error_rate.clamp(0.0, 1.0)) {
            return Verdict::Fail(ApiError::internal("injected fault"));
        }
        Verdict::Serve
    }
}
