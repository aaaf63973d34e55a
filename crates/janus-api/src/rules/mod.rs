//! The domain rules of an access request, in one place: phases and endings, who may take which action,
//! TTL bounds and expiry arithmetic, condition names, and time handling.
//!
//! Everything here is a plain function of its arguments (the spec, the status, the configuration, the
//! clock), so each rule is unit-tested once. The controller, the web, the recorder and the CLI call these;
//! nothing re-derives them.

pub mod actions;
pub mod conditions;
pub mod lifecycle;
pub mod policy;
pub mod scope;
pub mod time;
pub mod ttl;

pub use actions::{ActionPolicy, Actions, Actor};
pub use lifecycle::{Ending, ending, phase_of};
