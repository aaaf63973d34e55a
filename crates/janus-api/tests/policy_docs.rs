#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The approval policies shown to operators (docs/policies.md, the chart README's "Approval policies",
//! config/janus.example.yaml) are configurations the binary accepts: parsed with unknown keys refused and
//! validated as at start-up. A renamed field or a tightened rule breaks this test, not an operator's
//! install.

use janus_api::config::Config;
use serde_json::{Value, json};

const DOCS: &str = include_str!("../../../docs/policies.md");
const CHART_README: &str = include_str!("../../../charts/k8s-janus/README.md");
const EXAMPLE: &str = include_str!("../../../config/janus.example.yaml");

/// The ```yaml blocks of a Markdown text.
fn yaml_blocks(markdown: &str) -> Vec<&str> {
    markdown
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect()
}

/// A configuration holding `policies` and the defaults otherwise, parsed and validated like the file.
#[track_caller]
fn accepted(policies: &Value, what: &str) -> Config {
    let text = json!({ "policies": policies }).to_string(); // JSON is YAML
    Config::from_yaml(&text, what).unwrap_or_else(|e| panic!("{what} is refused: {e}\n{text}"))
}

fn names(policies: &Value) -> Vec<&str> {
    policies
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

#[test]
fn the_policies_page_examples_are_valid_configurations() {
    let mut seen = vec![];
    for block in yaml_blocks(DOCS) {
        let v: Value = yaml_serde::from_str(block).expect("a YAML block of docs/policies.md parses");
        let Some(policies) = v.get("policies") else { continue };
        let config = accepted(policies, "a docs/policies.md example");
        assert_eq!(config.policies.len(), policies.as_array().unwrap().len());
        seen.extend(names(policies).into_iter().map(String::from));
    }
    assert_eq!(
        seen,
        [
            "production",
            "team-owned",
            "production",
            "staging-oncall",
            "logs-auto",
            "contractors"
        ]
    );
}

#[test]
fn the_chart_readme_examples_are_valid_configurations() {
    let section = CHART_README
        .split("## Approval policies")
        .nth(1)
        .expect("the chart README has an Approval policies section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut all = vec![];
    for block in yaml_blocks(section) {
        let v: Value = yaml_serde::from_str(block).expect("a YAML block of the chart README parses");
        let policies = &v["janus"]["policies"];
        accepted(policies, "a chart README example");
        all.extend(policies.as_array().unwrap().iter().cloned());
    }
    // Together, in the README's order, they are one valid configuration too.
    let all = Value::Array(all);
    accepted(&all, "the chart README examples together");
    assert_eq!(
        names(&all),
        ["team-owned", "production", "staging-oncall", "logs-auto", "contractors"]
    );
    // The chart README and the docs page show the same three examples.
    let docs: Vec<Value> = yaml_blocks(DOCS)
        .into_iter()
        .skip(1)
        .filter_map(|b| yaml_serde::from_str::<Value>(b).ok())
        .filter_map(|v| v.get("policies").cloned())
        .flat_map(|p| p.as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        Value::Array(docs),
        all,
        "docs/policies.md and the chart README examples differ"
    );
}

#[test]
fn the_example_configuration_has_no_policy_and_a_valid_commented_one() {
    let config = Config::from_yaml(EXAMPLE, "config/janus.example.yaml").unwrap();
    assert!(config.policies.is_empty(), "the example keeps the default behaviour");
    // The commented example below `policies: []`, uncommented, is accepted.
    let after = EXAMPLE
        .split("\npolicies: []\n")
        .nth(1)
        .expect("config/janus.example.yaml has `policies: []`");
    let mut lines = after.lines().skip_while(|l| *l != "# policies:");
    let commented: String = lines
        .next()
        .into_iter()
        .chain(lines.take_while(|l| l.starts_with("#   ")))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let v: Value = yaml_serde::from_str(&commented).expect("the commented policy parses");
    assert_eq!(names(&v["policies"]), ["production", "logs-auto"]);
    let config = accepted(&v["policies"], "the commented policy of config/janus.example.yaml");
    assert_eq!(config.policies[0].allowed_roles, ["exec", "logs"]);
}

/// The `roles:` of the example configuration are the defaults (the example lists every key with its
/// default), and its commented `debugImages` line, uncommented, is accepted.
#[test]
fn the_example_roles_are_the_defaults_and_its_debug_images_are_valid() {
    let config = Config::from_yaml(EXAMPLE, "config/janus.example.yaml").unwrap();
    assert_eq!(config.roles, janus_api::roles::builtin_roles());
    let commented = EXAMPLE
        .lines()
        .find(|l| l.trim_start().starts_with("# debugImages:"))
        .expect("config/janus.example.yaml shows debugImages");
    let line = commented.replacen("# debugImages:", "debugImages:", 1);
    let with_images = EXAMPLE.replacen(commented, &line, 1);
    let config = Config::from_yaml(&with_images, "the example with debugImages").unwrap();
    let debug = config.roles.iter().find(|r| r.name == "debug").unwrap();
    assert_eq!(debug.debug_images.len(), 3, "{:?}", debug.debug_images);
}

/// The roles example of docs/policies.md behaves as the page says.
#[test]
fn the_logs_only_example_behaves_as_documented() {
    use janus_api::AccessRequestSpec;
    use janus_api::rules::policy::{ApprovedVia, NamespaceInfo, RequestFacts, Verdict, evaluate, govern};
    let block = yaml_blocks(DOCS)
        .into_iter()
        .find(|b| b.contains("name: logs-auto"))
        .expect("docs/policies.md has the logs-only example");
    let v: Value = yaml_serde::from_str(block).unwrap();
    let config = accepted(&v["policies"], "the logs-only example");
    let nss = [NamespaceInfo {
        name: "shop".into(),
        ..Default::default()
    }];
    let judge = |requester: &str, groups: &[&str], role: Option<&str>, ttl: i64| {
        let mut spec = AccessRequestSpec::new(requester, "staging", vec!["shop".into()], "r", ttl);
        spec.requester_groups = groups.iter().map(|g| g.to_string()).collect();
        spec.role = role.map(str::to_owned);
        let facts = RequestFacts::of(&spec, &nss, chrono::Utc::now());
        let name = govern(&config, &facts).unwrap().name;
        (name, evaluate(&config, &spec, &facts))
    };
    let (p, v) = judge("dev@example.com", &["developers"], Some("logs"), 3600);
    assert_eq!(p, "logs-auto");
    assert!(
        matches!(
            v,
            Verdict::Approved {
                via: ApprovedVia::Auto,
                ..
            }
        ),
        "{v:?}"
    );
    let (p, v) = judge("dev@example.com", &["developers"], Some("logs"), 7200);
    assert_eq!(p, "logs-auto");
    assert!(matches!(v, Verdict::Pending(_)), "{v:?}");
    let (p, v) = judge("dev@example.com", &["developers"], None, 3600);
    assert_eq!(p, "default");
    assert!(matches!(v, Verdict::Pending(_)), "{v:?}");
    let (p, v) = judge("c@contractors.example.com", &[], Some("logs"), 3600);
    assert_eq!(p, "logs-auto");
    assert!(matches!(v, Verdict::Pending(_)), "{v:?}");
    let (p, v) = judge("c@contractors.example.com", &[], None, 3600);
    assert_eq!(p, "contractors");
    assert_eq!(
        v,
        Verdict::Invalid("policy contractors allows the roles logs; this request asks for exec".into())
    );
}

/// The checks above would pass vacuously if the validation accepted anything.
#[test]
fn a_broken_example_is_refused() {
    let mut p: Value = yaml_serde::from_str(yaml_blocks(DOCS)[0]).unwrap();
    p["policies"][0]["approver"] = json!({"emails": ["a@example.com"]});
    let text = json!({ "policies": p["policies"] }).to_string();
    let err = Config::from_yaml(&text, "x").unwrap_err().to_string();
    assert!(err.contains("approver"), "{err}");
}
