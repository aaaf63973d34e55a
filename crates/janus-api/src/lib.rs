//! janus-api
