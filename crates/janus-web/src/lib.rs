//! The web UI (skeleton; being built).
