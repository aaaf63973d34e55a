//! k8s-janus notifications: the messages audit events imply ([`model`]), their renderings for Slack,
//! Teams, email, CloudEvents webhooks and syslog ([`render`]), and the sinks that send them ([`sink`]).
//!
//! Notifications are derived from the audit log (the one exactly-once record of what happened). The
//! delivery loop (outbox, claims, retries, dead letters) calls [`model::implied`] for each stored
//! event, asks each [`Sink`] whether it [`accepts`](Sink::accepts) the notification, and calls
//! [`Sink::send`] with the idempotency key [`Notification::idempotency_key`]. See docs/notifications.md.

pub mod delivery;
pub mod model;
pub mod redact;
pub mod render;
pub mod sink;

pub use delivery::{Delivery, DeliveryObserver, DeliveryOptions, SendStats};
pub use model::{Context, Event, Link, Message, Notification, Recipients, Topic, expiring_soon_event, implied};
pub use sink::{BuildError, Delivered, SendError, Sink, build};
