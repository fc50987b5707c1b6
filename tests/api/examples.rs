//! The shipped examples under deploy/ stay valid: the example configuration loads and validates,
//! its issuers can be built, the example policies load under its lifetime cap and name only its
//! issuers, and the example policy tests all pass.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use writ::config::Config;
use writ::identity::IdentityVerifier;
use writ::policy::{PolicySet, testing};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The example configuration, with its policy directory pointed at the examples.
fn example_config() -> Config {
    let mut config = Config::load(&deploy().join("config.example.toml")).unwrap();
    assert_eq!(
        config.policy_dir.as_deref(),
        Some(Path::new("/etc/writ/policies"))
    );
    config.policy_dir = Some(deploy().join("policies"));
    config
}

#[test]
fn the_example_config_is_valid_and_production_shaped() {
    let config = example_config();
    config.validate().unwrap();
    assert!(
        !config.dev,
        "the production example must not enable dev mode"
    );
    let names: Vec<&str> = config.issuers.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["kubernetes", "github", "spire"]);
}

#[tokio::test]
async fn the_example_issuers_can_be_built() {
    // Issuer URLs, algorithm lists and agent templates are checked here; nothing is fetched.
    let config = example_config();
    let identities = IdentityVerifier::from_config(&config, None).unwrap();
    let names: Vec<&str> = identities.issuer_names().collect();
    assert_eq!(names, ["kubernetes", "github", "spire"]);
}

#[test]
fn the_example_policies_load_and_name_only_configured_issuers() {
    let config = example_config();
    let policies = PolicySet::load_dir(&deploy().join("policies"), config.max_ttl).unwrap();
    assert!(!policies.policies.is_empty());
    let configured: HashSet<&str> = config.issuers.iter().map(|i| i.name.as_str()).collect();
    for (issuer, origin) in policies.issuers() {
        assert!(
            configured.contains(issuer),
            "{origin}: issuer {issuer:?} is not in config.example.toml"
        );
    }
    let used: HashSet<&str> = policies.issuers().map(|(issuer, _)| issuer).collect();
    assert_eq!(
        used, configured,
        "every example issuer has example policies"
    );
}

#[test]
fn the_example_policy_tests_pass() {
    let config = example_config();
    let dir = deploy().join("policies");
    let policies = PolicySet::load_dir(&dir, config.max_ttl).unwrap();
    let run = testing::run_dir(&dir, &policies).unwrap();
    let results = &run.cases;
    assert!(!results.is_empty(), "deploy/policies has no policy tests");
    assert!(
        run.unexercised.is_empty(),
        "example rules no case exercises: {:?}",
        run.unexercised
    );
    let failures: Vec<String> = results
        .iter()
        .filter_map(|r| {
            r.failure
                .as_ref()
                .map(|why| format!("{} :: {}: {why}", r.file, r.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
    // Every policy file has tests beside it.
    let tested: HashSet<String> = results.iter().map(|r| r.file.clone()).collect();
    for policy_file in writ::policy::policy_files(&dir, false).unwrap() {
        let test_file = policy_file.with_extension("test.toml");
        assert!(
            tested.contains(&test_file.display().to_string()),
            "{} has no cases in {}",
            policy_file.display(),
            test_file.display()
        );
    }
}
