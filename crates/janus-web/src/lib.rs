//! `janus web`: the web UI, the JSON API under `/api/v1`, live updates and the browser terminal.
//!
//! The web process is the only writer of the database (audit log, users, sessions, recordings) and writes
//! only the human decisions into AccessRequests; status belongs to the controller (DESIGN.md §2).

pub mod api;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod error;
pub mod extract;
pub mod live;
pub mod live_refresh;
pub mod metrics;
pub mod pages;
pub mod requests;
pub mod server;
pub mod service;
pub mod state;
pub mod terminal;
pub mod timefmt;

pub use error::WebError;
pub use server::{Options, run, run_with};
pub use state::AppState;
