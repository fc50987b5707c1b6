//! The shipped examples under deploy/ stay valid: the example configuration loads and validates,
//! its issuers can be built, the example policies load under its lifetime cap and name only its
//! issuers, and the example policy tests all pass. So do the policy authors' guide's examples
//! (deploy/policies/examples/<name>/, one policy directory each), run with `writ policy check`
//! and `writ policy test` as an author would, and the guide quotes only those tested files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use writ::config::Config;
use writ::identity::IdentityVerifier;
use writ::policy::{PolicySet, testing};

use crate::helpers::writ_command;

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
    let policies = policies_naming_configured_issuers(&deploy().join("policies"));
    let configured = configured_issuers(&example_config());
    let used: HashSet<String> = policies
        .issuers()
        .map(|(issuer, _)| issuer.to_owned())
        .collect();
    assert_eq!(
        used, configured,
        "every example issuer has example policies"
    );
}

#[test]
fn the_example_policy_tests_pass() {
    assert_policy_tests_pass(&deploy().join("policies"));
}

#[test]
fn every_guide_example_is_a_policy_directory_whose_tests_pass() {
    let config = example_config();
    let max_ttl = humantime::format_duration(config.max_ttl).to_string();
    let guide = std::fs::read_to_string(deploy().join("policies/README.md")).unwrap();
    let examples = guide_examples();
    assert!(
        examples.len() >= 4,
        "the guide has its examples: {examples:?}"
    );
    for dir in &examples {
        assert_policy_tests_pass(dir);
        // As an author runs them.
        for args in [&["check"][..], &["test", "--require-coverage"]] {
            let output = writ_command(dir)
                .arg("policy")
                .args(args)
                .args([".", "--max-ttl", &max_ttl])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "writ policy {args:?} {}:\n{}{}",
                dir.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let name = dir.file_name().unwrap().to_str().unwrap();
        assert!(
            guide.contains(&format!("(examples/{name}/)")),
            "deploy/policies/README.md does not link examples/{name}/"
        );
    }
}

#[test]
fn the_guide_quotes_only_tested_files() {
    let guide = std::fs::read_to_string(deploy().join("policies/README.md")).unwrap();
    let mut files = Vec::new();
    for dir in guide_examples()
        .into_iter()
        .chain([deploy().join("policies")])
    {
        for tests in [false, true] {
            for path in writ::policy::policy_files(&dir, tests).unwrap() {
                files.push(std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let blocks = toml_blocks(&guide);
    assert!(!blocks.is_empty(), "the guide shows its examples");
    for block in blocks {
        assert!(
            files.iter().any(|file| file.contains(&block)),
            "deploy/policies/README.md quotes TOML found in no example file:\n{block}"
        );
    }
}

/// The guide's example directories, sorted.
fn guide_examples() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(deploy().join("policies/examples"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The text of every ```toml block of a Markdown file, without the indentation of its fence (a
/// block inside a list item is indented).
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for line in markdown.lines() {
        let indent = line.len() - line.trim_start().len();
        match &mut current {
            None if line.trim() == "```toml" => current = Some((indent, String::new())),
            None => {}
            Some(_) if line.trim() == "```" => blocks.extend(current.take().map(|(_, b)| b)),
            Some((fence, block)) => {
                block.push_str(line.get(*fence..).unwrap_or_default());
                block.push('\n');
            }
        }
    }
    blocks
}

fn configured_issuers(config: &Config) -> HashSet<String> {
    config.issuers.iter().map(|i| i.name.clone()).collect()
}

/// The policies of `dir`, loaded under the example configuration's lifetime cap, each naming one
/// of its issuers.
fn policies_naming_configured_issuers(dir: &Path) -> PolicySet {
    let config = example_config();
    let policies = PolicySet::load_dir(dir, config.max_ttl).unwrap();
    assert!(
        !policies.policies().is_empty(),
        "{} has no policies",
        dir.display()
    );
    let configured = configured_issuers(&config);
    for (issuer, origin) in policies.issuers() {
        assert!(
            configured.contains(issuer),
            "{origin}: issuer {issuer:?} is not in config.example.toml"
        );
    }
    policies
}

/// Every case of `dir`'s policy tests passes, every rule is exercised by some case, and every
/// policy file has tests beside it.
fn assert_policy_tests_pass(dir: &Path) {
    let policies = policies_naming_configured_issuers(dir);
    let run = testing::run_dir(dir, &policies).unwrap();
    let results = &run.cases;
    assert!(!results.is_empty(), "{} has no policy tests", dir.display());
    assert!(
        run.unexercised.is_empty(),
        "{}: rules no case exercises: {:?}",
        dir.display(),
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
    let tested: HashSet<String> = results.iter().map(|r| r.file.clone()).collect();
    for policy_file in writ::policy::policy_files(dir, false).unwrap() {
        let test_file = policy_file.with_extension("test.toml");
        assert!(
            tested.contains(&test_file.display().to_string()),
            "{} has no cases in {}",
            policy_file.display(),
            test_file.display()
        );
    }
}
