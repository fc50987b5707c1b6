//! Typed broker configuration: a TOML file, then `WRIT_*` environment variables and command-line
//! flags on top (applied by the CLI). Unknown fields are errors, so a typo never silently falls
//! back to a default. Durations are written the human way ("5m", "30s").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The longest lifetime any writ may ever have, whatever a policy or the config says. Writs live
/// minutes; a broker configured for more is refused at start.
pub const ABSOLUTE_MAX_TTL: Duration = Duration::from_secs(60 * 60);

/// The largest clock skew tolerated on workload tokens.
pub const ABSOLUTE_MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// The longest any writ can be honoured: the lifetime cap plus the largest skew a verifier may
/// allow. A task or agent revocation is served this long after its cut-off.
pub const WRIT_LIFETIME_BOUND: Duration = Duration::from_secs(65 * 60);

/// The name of the development identity issuer, trusted only in dev mode.
pub const DEV_ISSUER_NAME: &str = "writ-dev";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `sqlite://path` (embedded default) or `postgres://...` (replicas).
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Directory of the broker's Ed25519 root keys (0700; key files 0600).
    #[serde(default = "default_key_dir")]
    pub key_dir: PathBuf,
    /// Directory of policy files (`*.toml`; `*.test.toml` are policy tests). Required outside dev
    /// mode; in dev mode the built-in playground policy is used when unset.
    #[serde(default)]
    pub policy_dir: Option<PathBuf>,
    /// Development mode: trusts the built-in development identity issuer. Loopback only.
    #[serde(default)]
    pub dev: bool,
    /// Hard cap on any writ's lifetime; every policy's `max_ttl` must fit under it.
    #[serde(default = "default_max_ttl", with = "humantime_serde")]
    pub max_ttl: Duration,
    /// Tolerated clock difference with identity issuers for `exp`, `nbf` and `iat`.
    #[serde(default = "default_clock_skew", with = "humantime_serde")]
    pub clock_skew: Duration,
    /// A request taking longer than this in all is cut off with `503 timeout` (a slow client or
    /// a stuck dependency; issuers and the database have shorter timeouts of their own).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often the revocation view is re-read from the database even without a
    /// notification (PostgreSQL notifies replicas at once; this catches a lost notification).
    #[serde(default = "default_revocation_poll", with = "humantime_serde")]
    pub revocation_poll: Duration,
    /// How often the revocation stream sends a heartbeat, which is what keeps a verifier's view
    /// fresh while nothing is revoked: keep it well under verifiers' staleness bound.
    #[serde(default = "default_revocation_heartbeat", with = "humantime_serde")]
    pub revocation_heartbeat: Duration,
    /// How often the audit chain's head is signed into a checkpoint (when it moved).
    #[serde(
        default = "default_audit_checkpoint_interval",
        with = "humantime_serde"
    )]
    pub audit_checkpoint_interval: Duration,
    /// Trusted workload identity issuers.
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
}

/// One trusted workload identity issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Short name that policies refer to (`issuer = "kubernetes"`).
    pub name: String,
    /// The issuer URL; tokens must carry exactly this `iss`.
    pub issuer: String,
    /// Where the signing keys come from; OIDC discovery on `issuer` when unset.
    #[serde(default)]
    pub jwks: Option<JwksSource>,
    /// The audience tokens must carry in `aud`.
    pub audience: String,
    /// Accepted signature algorithms. `none` and HMAC algorithms are never accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// How the agent's identity is derived from claims: `{a/b}` is replaced by the claim at that
    /// path (segments split on `/`, so `{kubernetes.io/namespace}` reads a nested claim).
    pub agent: String,
    /// How often the key set is refreshed even when every `kid` is known.
    #[serde(default = "default_jwks_refresh", with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// The shortest interval between two fetches caused by unknown `kid`s.
    #[serde(default = "default_jwks_min_interval", with = "humantime_serde")]
    pub jwks_min_refetch_interval: Duration,
}

/// Where an issuer's keys are read from when it has no discovery document.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// The embedded default: SQLite and keys under `./writ-data`, loopback, dev mode off.
    pub fn default_embedded() -> Config {
        Config {
            listen: default_listen(),
            database_url: default_database_url(),
            key_dir: default_key_dir(),
            policy_dir: None,
            dev: false,
            max_ttl: default_max_ttl(),
            clock_skew: default_clock_skew(),
            request_timeout: default_request_timeout(),
            revocation_poll: default_revocation_poll(),
            revocation_heartbeat: default_revocation_heartbeat(),
            audit_checkpoint_interval: default_audit_checkpoint_interval(),
            issuers: Vec::new(),
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string(),
        })
    }

    /// Checks what serde cannot: caps, dev-mode exposure, issuer names.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.max_ttl > ABSOLUTE_MAX_TTL || self.max_ttl < Duration::from_secs(10) {
            return invalid(format!(
                "max_ttl must be between 10s and {}",
                humantime::format_duration(ABSOLUTE_MAX_TTL)
            ));
        }
        if self.clock_skew > ABSOLUTE_MAX_SKEW {
            return invalid(format!(
                "clock_skew must be at most {}",
                humantime::format_duration(ABSOLUTE_MAX_SKEW)
            ));
        }
        if self.request_timeout < Duration::from_secs(1)
            || self.request_timeout > Duration::from_secs(300)
        {
            return invalid("request_timeout must be between 1s and 5m".into());
        }
        let within = |value: Duration, low: Duration, high: Duration| low <= value && value <= high;
        if !within(
            self.revocation_poll,
            Duration::from_millis(100),
            Duration::from_secs(60),
        ) {
            return invalid("revocation_poll must be between 100ms and 1m".into());
        }
        if !within(
            self.revocation_heartbeat,
            Duration::from_millis(100),
            Duration::from_secs(60),
        ) {
            return invalid("revocation_heartbeat must be between 100ms and 1m".into());
        }
        if !within(
            self.audit_checkpoint_interval,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        ) {
            return invalid("audit_checkpoint_interval must be between 1s and 24h".into());
        }
        if self.dev && !self.listen.ip().is_loopback() {
            return invalid(format!(
                "dev mode trusts a built-in identity issuer and may only listen on loopback, not {}",
                self.listen
            ));
        }
        if !self.dev && self.policy_dir.is_none() {
            return invalid("policy_dir is required outside dev mode".into());
        }
        let mut names = std::collections::HashSet::new();
        for issuer in &self.issuers {
            if issuer.name == DEV_ISSUER_NAME {
                return invalid(format!("the issuer name {DEV_ISSUER_NAME:?} is reserved"));
            }
            if !names.insert(issuer.name.as_str()) {
                return invalid(format!("issuer {:?} is configured twice", issuer.name));
            }
        }
        Ok(())
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_database_url() -> String {
    "sqlite://writ-data/writ.db".into()
}
fn default_key_dir() -> PathBuf {
    PathBuf::from("writ-data/keys")
}
fn default_max_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_clock_skew() -> Duration {
    Duration::from_secs(30)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_revocation_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_revocation_heartbeat() -> Duration {
    Duration::from_secs(2)
}
fn default_audit_checkpoint_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn default_jwks_refresh() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_jwks_min_interval() -> Duration {
    Duration::from_secs(10)
}

/// Serde adapter for human durations ("5m") in TOML.
pub mod humantime_serde {
    use serde::Deserializer;
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Human)
    }

    /// Text with a unit; a bare number gets an answer saying how to write it.
    struct Human;

    impl serde::de::Visitor<'_> for Human {
        type Value = Duration;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration with a unit, e.g. \"30s\" or \"10m\"")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text).map_err(|e| {
                E::custom(format!(
                    "{text:?}: {e}; write a duration with a unit, e.g. \"30s\" or \"10m\""
                ))
            })
        }

        fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<Duration, E> {
            match u64::try_from(number) {
                Ok(seconds) => self.visit_u64(seconds),
                Err(_) => Err(E::custom("a duration cannot be negative")),
            }
        }

        fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "durations are text with a unit: for {seconds} seconds write \"{}\"",
                humantime::format_duration(Duration::from_secs(seconds))
            )))
        }

        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Duration, E> {
            Err(E::custom(
                "durations are text with a unit, e.g. \"1500ms\" or \"2m\"",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn empty_file_is_the_embedded_default_but_needs_policies_outside_dev() {
        let config = parse("").unwrap();
        assert_eq!(config.listen, default_listen());
        assert!(config.validate().is_err());
    }

    #[test]
    fn unknown_fields_are_errors() {
        assert!(parse("lisen = \"127.0.0.1:1\"").is_err());
    }

    #[test]
    fn dev_mode_refuses_non_loopback() {
        let config = parse("dev = true\nlisten = \"0.0.0.0:8080\"").unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("loopback"), "{error}");
    }

    #[test]
    fn ttl_cap_is_bounded() {
        let config = parse("dev = true\nmax_ttl = \"2h\"").unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn skew_and_request_timeout_are_bounded() {
        for text in [
            "dev = true\nclock_skew = \"10m\"",
            "dev = true\nrequest_timeout = \"0s\"",
            "dev = true\nrequest_timeout = \"1h\"",
        ] {
            assert!(parse(text).unwrap().validate().is_err(), "{text}");
        }
        assert!(
            parse("dev = true\nrequest_timeout = \"30s\"")
                .unwrap()
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn reserved_issuer_name_is_refused() {
        let config = parse(
            "dev = true\n[[issuer]]\nname = \"writ-dev\"\nissuer = \"https://x\"\naudience = \"writ\"\nagent = \"{sub}\"",
        )
        .unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn issuer_with_jwks_file() {
        let config = parse(
            "[[issuer]]\nname = \"spire\"\nissuer = \"https://spire\"\naudience = \"writ\"\nagent = \"{sub}\"\njwks = { file = \"/etc/bundle.json\" }",
        )
        .unwrap();
        assert_eq!(
            config.issuers[0].jwks,
            Some(JwksSource::File("/etc/bundle.json".into()))
        );
    }
}
