//! The request lifecycle rules the controller applies. They are defined once in [`janus_api::rules`]
//! (for the controller, the web, the recorder and the CLI alike) and re-exported here under the paths
//! the controller has always used.

pub use janus_api::rules::lifecycle::{Ending, ending, overdue, validate_static};
pub use janus_api::rules::time::{fmt_time, from_jiff, parse_time};
pub use janus_api::rules::ttl::{
    TOKEN_RENEW_MARGIN_MAX_SECONDS, TOKEN_RENEW_MIN_INTERVAL_SECONDS, expires_at, pending_deadline, retention_deadline,
    token_clock_skewed, token_lifetime, token_renew_at,
};
