//! Persistence for k8s-janus (skeleton; being built).
