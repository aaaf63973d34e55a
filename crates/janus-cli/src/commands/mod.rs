//! The client commands that are plain API calls: signing in, requests and decisions, personal API tokens.

pub mod login;
pub mod requests;
pub mod tokens;
