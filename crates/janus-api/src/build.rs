//! `janus_build_info`: the one definition of the build metric both the controller and the web export,
//! so one dashboard query shows the version of every pod.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of `janus_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The version the binary was built from (the workspace version every crate shares).
    pub version: String,
    /// The source revision (`JANUS_REVISION` at build time), `unknown` when not given.
    pub revision: String,
}

impl BuildLabels {
    /// This binary's version and revision.
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: option_env!("JANUS_REVISION").unwrap_or("unknown").to_string(),
        }
    }
}

/// Registers `build_info` (always 1, labelled with [`BuildLabels::current`]) in `registry`; under a
/// registry prefixed `janus` it is exported as `janus_build_info`.
pub fn register_build_info(registry: &mut Registry) {
    let build_info = Family::<BuildLabels, Gauge>::default();
    build_info.get_or_create(&BuildLabels::current()).set(1);
    registry.register("build_info", "Version of this binary (always 1)", build_info);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_is_one_with_the_version_and_revision() {
        let mut registry = Registry::with_prefix("janus");
        register_build_info(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let want = format!(
            "janus_build_info{{version=\"{}\",revision=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            option_env!("JANUS_REVISION").unwrap_or("unknown")
        );
        assert!(text.contains(&want), "{want} missing in\n{text}");
        assert!(
            text.contains("# HELP janus_build_info Version of this binary (always 1)."),
            "{text}"
        );
    }
}
