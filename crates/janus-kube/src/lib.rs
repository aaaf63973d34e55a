//! The clusters k8s-janus grants access on, shared by the controller and the web: which clusters exist
//! (configured or registered by a labelled kubeconfig Secret), handles to reach them, and API clients
//! with bounded timeouts.

pub mod clusters;
pub mod error;
mod kubeconfigs;

pub use clusters::{ClusterHandle, ClusterInfo, Clusters, Timeouts};
pub use error::{Error, Result};
