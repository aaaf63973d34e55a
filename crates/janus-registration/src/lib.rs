//! Registering remote clusters (skeleton; being built).
