//! `[exchange.aws]`: where STS and IAM are, and the roles writs are exchanged for.

use std::time::Duration;

use serde::Deserialize;
use writ_verify::ResourcePattern;

use super::policy::s3_target;

/// The shortest session STS issues (AssumeRole's minimum `DurationSeconds`).
pub const STS_MIN_SESSION: Duration = Duration::from_secs(15 * 60);
/// The longest session STS issues.
pub const STS_MAX_SESSION: Duration = Duration::from_secs(12 * 60 * 60);

/// `[exchange.aws]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AwsExchangeConfig {
    /// The AWS region whose STS endpoint is called (`us-east-1`).
    pub region: String,
    /// STS and IAM at another address (a VPC endpoint, or moto in tests): `https://`, or
    /// `http://` to loopback only.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A file (mode 0600) holding the broker's own AWS credentials as JSON in the
    /// `credential_process` shape (`AccessKeyId`, `SecretAccessKey`, optional `SessionToken`;
    /// `aws configure export-credentials --format process` writes one). Without it they are
    /// read from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
    #[serde(default)]
    pub credentials_file: Option<std::path::PathBuf>,
    /// The roles writs may be exchanged for (`[[exchange.aws.roles]]`).
    #[serde(default)]
    pub roles: Vec<AwsRoleConfig>,
}

/// `[[exchange.aws.roles]]`: one IAM role, and the writ resources it serves.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AwsRoleConfig {
    /// The name agents ask for (the rule of every exchange role name:
    /// `crate::exchange::check_role_name`).
    pub name: String,
    /// `arn:aws:iam::123456789012:role/path/name`.
    pub role_arn: String,
    /// The writ resources this role serves, `aws:s3/<bucket>/<key prefix>*` or
    /// `aws:s3/<bucket>/<key>`: a writ's rights are narrowed to them.
    #[serde(deserialize_with = "resource_patterns")]
    pub resources: Vec<ResourcePattern>,
    /// The longest session asked of STS, between 15 minutes and 12 hours (and at most the
    /// role's own maximum session duration in IAM). Sessions last as long as the writ has left,
    /// 15 minutes at least.
    #[serde(
        default = "default_max_session",
        with = "crate::config::humantime_serde"
    )]
    pub max_session: Duration,
}

fn resource_patterns<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ResourcePattern>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|text| {
            ResourcePattern::parse(text)
                .map_err(|e| serde::de::Error::custom(format!("resources: {text:?}: {e}")))
        })
        .collect()
}

fn default_max_session() -> Duration {
    Duration::from_secs(60 * 60)
}

impl AwsExchangeConfig {
    /// The role named `name`.
    pub fn role(&self, name: &str) -> Option<&AwsRoleConfig> {
        self.roles.iter().find(|role| role.name == name)
    }

    /// Checks what serde cannot; the error names the setting (relative to `exchange.aws`).
    pub fn validate(&self) -> Result<(), String> {
        if !valid_region(&self.region) {
            return Err(format!(
                "region {:?} is not an AWS region name such as \"us-east-1\"",
                self.region
            ));
        }
        if let Some(endpoint) = &self.endpoint
            && !crate::config::https_or_loopback(endpoint)
        {
            return Err(format!(
                "endpoint {endpoint:?} must be an https:// URL (plain http only to loopback)"
            ));
        }
        let mut names = std::collections::HashSet::new();
        for role in &self.roles {
            role.validate()
                .map_err(|m| format!("roles {:?}: {m}", role.name))?;
            if !names.insert(role.name.as_str()) {
                return Err(format!("roles: {:?} is configured twice", role.name));
            }
        }
        Ok(())
    }
}

impl AwsRoleConfig {
    fn validate(&self) -> Result<(), String> {
        crate::exchange::check_role_name(&self.name)?;
        if role_arn_partition(&self.role_arn).is_none() {
            return Err(format!(
                "role_arn {:?} is not a role ARN such as \"arn:aws:iam::123456789012:role/writ-reports\"",
                self.role_arn
            ));
        }
        if self.resources.is_empty() {
            return Err("resources must list the aws:s3/ resources the role serves".into());
        }
        for resource in &self.resources {
            s3_target(resource).map_err(|e| format!("resources: {e}"))?;
        }
        if !(STS_MIN_SESSION..=STS_MAX_SESSION).contains(&self.max_session) {
            return Err(format!(
                "max_session = \"{}\" is out of range: it must be between 15m and 12h",
                humantime::format_duration(self.max_session)
            ));
        }
        Ok(())
    }

    /// The role ARN's partition (`aws`, `aws-cn`, `aws-us-gov`).
    pub fn partition(&self) -> &str {
        role_arn_partition(&self.role_arn).unwrap_or("aws")
    }
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`: lowercase words and digits
/// joined by `-`.
fn valid_region(region: &str) -> bool {
    (1..=32).contains(&region.len())
        && region.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// The partition of `arn:aws[-a-z]*:iam::<12 digits>:role/<path/name>`, or `None` when the
/// text is not of that shape. Role names and path segments are IAM's `[\w+=,.@-]`, the name
/// 1 to 64 characters.
pub fn role_arn_partition(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let partition_ok = match partition.strip_prefix("aws")? {
        "" => true,
        suffix => suffix.strip_prefix('-').is_some_and(|words| {
            !words.is_empty() && words.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        }),
    };
    if !partition_ok {
        return None;
    }
    let rest = rest.strip_prefix("iam::")?;
    let (account, rest) = rest.split_once(':')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let path = rest.strip_prefix("role/")?;
    let segments: Vec<&str> = path.split('/').collect();
    let name = segments.last()?;
    let iam_char = |c: char| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c);
    let ok = path.len() <= 512 + 64
        && (1..=64).contains(&name.len())
        && segments
            .iter()
            .all(|s| !s.is_empty() && s.chars().all(iam_char));
    ok.then_some(partition)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<AwsExchangeConfig, String> {
        let config: AwsExchangeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    const GOOD: &str = r#"
        region = "us-east-1"
        endpoint = "http://127.0.0.1:5000"
        [[roles]]
        name = "reports"
        role_arn = "arn:aws:iam::123456789012:role/writ/writ-reports"
        resources = ["aws:s3/reports-bucket/*", "aws:s3/logs-bucket/app/today.log"]
    "#;

    #[test]
    fn a_good_configuration_and_its_defaults() {
        let config = parse(GOOD).unwrap();
        let role = config.role("reports").unwrap();
        assert_eq!(role.max_session, Duration::from_secs(3600));
        assert_eq!(role.partition(), "aws");
        assert!(config.role("other").is_none());
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        for (from, to, says) in [
            ("region = \"us-east-1\"", "region = \"US east\"", "region"),
            (
                "http://127.0.0.1:5000",
                "http://sts.example:5000",
                "endpoint",
            ),
            ("name = \"reports\"", "name = \"Reports\"", "name must"),
            ("123456789012", "12345", "role_arn"),
            (":role/writ/", ":user/writ/", "role_arn"),
            ("aws:s3/reports-bucket/*", "aws:ec2/*", "resources"),
            ("aws:s3/reports-bucket/*", "aws:s3/*", "resources"),
            ("aws:s3/reports-bucket/*", "aws:s3/Reports/*", "resources"),
            (
                "resources = [",
                "max_session = \"5m\"\nresources = [",
                "max_session",
            ),
            (
                "resources = [",
                "max_session = \"13h\"\nresources = [",
                "max_session",
            ),
            (
                "resources = [",
                "unknown = 1\nresources = [",
                "unknown field",
            ),
            (
                "aws:s3/reports-bucket/*",
                "aws:s3/reports-bucket/../x",
                "canonical",
            ),
        ] {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD, "{from}");
            let error = parse(&text).unwrap_err();
            assert!(error.contains(says), "{to}: {error}");
        }
        let twice = format!("{GOOD}{}", &GOOD[GOOD.find("[[roles]]").unwrap()..]);
        assert!(parse(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn role_arns() {
        for good in [
            "arn:aws:iam::123456789012:role/r",
            "arn:aws-cn:iam::123456789012:role/a/b/c+=,.@-_",
            "arn:aws-us-gov:iam::123456789012:role/writ",
        ] {
            assert!(role_arn_partition(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role//r",
            "arn:aws:iam::12345678901x:role/r",
            "arn:aws:iam:us-east-1:123456789012:role/r",
            "arn:aws-:iam::123456789012:role/r",
            "arn:awsx:iam::123456789012:role/r",
            "arn:aws:sts::123456789012:role/r",
            "arn:aws:iam::123456789012:role/r r",
            "arn:aws:iam::123456789012:role/r\n",
        ] {
            assert!(role_arn_partition(bad).is_none(), "{bad:?}");
        }
    }
}
