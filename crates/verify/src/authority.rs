//! Reading the trusted values of a verified writ (version, id, agent, task, issue and expiry
//! times, services).
//!
//! They come from the authority block alone: the block the broker signed with its root key.
//! Nothing a holder appended can reach them (the pitfall is `query_all`, which returns facts of
//! every block, so a forged `agent("evil")` would come back).
//!
//! The block's facts are decoded straight from its protobuf terms: the bytes whose signature was
//! just verified, decoded by the same `prost` schema biscuit-auth uses. A Datalog `query` over
//! `trusting authority` reads the same facts but costs about three times as much, which alone
//! would put a first-sight verification more than 10% above plain biscuit-auth.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use biscuit_auth::Biscuit;
use biscuit_auth::datalog::SymbolTable;
use biscuit_auth::format::schema::{self, term::Content};
use prost::Message;

use crate::Denial;
use crate::time_limit;

/// The only writ format version this crate understands.
pub(crate) const WRIT_VERSION: i64 = 1;

/// Symbol ids below this refer to biscuit's default symbols (Biscuit v3 format).
const FIRST_BLOCK_SYMBOL: u64 = 1024;

/// Trusted values of one writ, read once at first sight and cached with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuthorityValues {
    pub(crate) writ_id: String,
    pub(crate) agent: String,
    pub(crate) task: String,
    /// When the broker issued the writ: what agent and task revocations are measured against.
    pub(crate) issued_at: SystemTime,
    pub(crate) expires_at: SystemTime,
    /// When the writ stops being valid: the earliest of `expires_at` and every time limit its
    /// blocks set (an attenuation may set an earlier one; see [`time_limit`]).
    pub(crate) effective_expires_at: SystemTime,
    pub(crate) services: Vec<String>,
}

/// Reads the values of a writ whose signatures verified. Anything other than exactly one
/// `writ(1)`, `writ_id`, `agent`, `task`, `issued_at` and `expires_at` of the expected types is
/// not a v1 writ.
pub(crate) fn read(token: &Biscuit) -> Result<AuthorityValues, Denial> {
    let container = token.container().to_proto();
    let block = schema::Block::decode(container.authority.block.as_slice())
        .map_err(|_| unsupported("the authority block cannot be decoded"))?;
    let defaults = SymbolTable::new();
    let symbol = |id: u64| -> Option<&str> {
        if id < FIRST_BLOCK_SYMBOL {
            defaults.get_symbol(id)
        } else {
            let index = usize::try_from(id - FIRST_BLOCK_SYMBOL).ok()?;
            block.symbols.get(index).map(String::as_str)
        }
    };
    let string = |term: &schema::Term| match term.content {
        Some(Content::String(id)) => symbol(id).map(str::to_owned),
        _ => None,
    };

    let mut found = Found::default();
    for fact in &block.facts {
        let terms = fact.predicate.terms.as_slice();
        let Some(name) = symbol(fact.predicate.name) else {
            return Err(unsupported("an authority fact names an unknown symbol"));
        };
        let wrong_shape = || unsupported("an authority value has the wrong type");
        match name {
            "writ" => match terms {
                [
                    schema::Term {
                        content: Some(Content::Integer(version)),
                    },
                ] => found.versions.push(*version),
                _ => return Err(wrong_shape()),
            },
            "writ_id" | "agent" | "task" | "service" => {
                let [term] = terms else {
                    return Err(wrong_shape());
                };
                let value = string(term).ok_or_else(wrong_shape)?;
                match name {
                    "writ_id" => found.writ_ids.push(value),
                    "agent" => found.agents.push(value),
                    "task" => found.tasks.push(value),
                    _ => found.services.push(value),
                }
            }
            "issued_at" | "expires_at" => {
                let [
                    schema::Term {
                        content: Some(Content::Date(secs)),
                    },
                ] = terms
                else {
                    return Err(wrong_shape());
                };
                // A date past what `SystemTime` holds would panic `UNIX_EPOCH + ...`.
                let at = UNIX_EPOCH
                    .checked_add(Duration::from_secs(*secs))
                    .ok_or_else(|| unsupported("an authority date is out of range"))?;
                match name {
                    "issued_at" => found.issued.push(at),
                    _ => found.expiries.push(at),
                }
            }
            _ => {}
        }
    }
    let mut values = found.into_values()?;
    let limit = time_limit::earliest(&container)
        .and_then(|limit| UNIX_EPOCH.checked_add(Duration::from_secs(limit.at)));
    if let Some(limit) = limit {
        values.effective_expires_at = values.effective_expires_at.min(limit);
    }
    Ok(values)
}

#[derive(Default)]
struct Found {
    versions: Vec<i64>,
    writ_ids: Vec<String>,
    agents: Vec<String>,
    tasks: Vec<String>,
    issued: Vec<SystemTime>,
    expiries: Vec<SystemTime>,
    services: Vec<String>,
}

impl Found {
    fn into_values(self) -> Result<AuthorityValues, Denial> {
        match self.versions.as_slice() {
            [WRIT_VERSION] => {}
            [] => return Err(unsupported("no writ(..) version fact")),
            _ => return Err(unsupported("the writ version is not 1")),
        }
        let expires_at = exactly_one(
            self.expiries,
            "no expires_at(..)",
            "expires_at(..) is repeated",
        )?;
        Ok(AuthorityValues {
            writ_id: exactly_one(self.writ_ids, "no writ_id(..)", "writ_id(..) is repeated")?,
            agent: exactly_one(self.agents, "no agent(..)", "agent(..) is repeated")?,
            task: exactly_one(self.tasks, "no task(..)", "task(..) is repeated")?,
            issued_at: exactly_one(self.issued, "no issued_at(..)", "issued_at(..) is repeated")?,
            expires_at,
            effective_expires_at: expires_at,
            // Possibly empty: a valid writ that no verifier accepts (wrong audience everywhere).
            services: self.services,
        })
    }
}

fn exactly_one<T>(
    mut values: Vec<T>,
    missing: &'static str,
    repeated: &'static str,
) -> Result<T, Denial> {
    match values.len() {
        1 => Ok(values.remove(0)),
        0 => Err(unsupported(missing)),
        _ => Err(unsupported(repeated)),
    }
}

fn unsupported(reason: &'static str) -> Denial {
    Denial::UnsupportedFormat { reason }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use biscuit_auth::KeyPair;

    fn token(code: &str) -> Biscuit {
        let root = KeyPair::new();
        Biscuit::builder().code(code).unwrap().build(&root).unwrap()
    }

    const GOOD: &str = r#"writ(1); writ_id("wr_1"); agent("a"); task("t");
        issued_at(2029-12-31T23:45:00Z); expires_at(2030-01-01T00:00:00Z);
        service("s1"); service("s2");"#;

    #[test]
    fn reads_the_values() {
        let values = read(&token(GOOD)).unwrap();
        assert_eq!(values.writ_id, "wr_1");
        assert_eq!(values.agent, "a");
        assert_eq!(values.task, "t");
        assert_eq!(values.services, ["s1", "s2"]);
        assert_eq!(
            values.issued_at,
            humantime::parse_rfc3339("2029-12-31T23:45:00Z").unwrap()
        );
        assert_eq!(
            values.expires_at,
            humantime::parse_rfc3339("2030-01-01T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn later_blocks_are_never_read() {
        let root = KeyPair::new();
        let base = Biscuit::builder().code(GOOD).unwrap().build(&root).unwrap();
        let forged = base
            .append(
                biscuit_auth::builder::BlockBuilder::new()
                    .code(r#"agent("evil"); writ_id("x"); writ(1); service("other");"#)
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(read(&forged).unwrap(), read(&base).unwrap());
    }

    #[test]
    fn refuses_what_is_not_a_v1_writ() {
        let cases = [
            GOOD.replace("writ(1)", "writ(2)"),
            GOOD.replace("writ(1);", ""),
            GOOD.replace("writ(1)", "writ(\"1\")"),
            GOOD.replace("writ(1);", "writ(1); writ(2);"),
            GOOD.replace("agent(\"a\");", ""),
            GOOD.replace("agent(\"a\");", "agent(\"a\"); agent(\"b\");"),
            GOOD.replace("task(\"t\")", "task(\"t\", \"u\")"),
            GOOD.replace("expires_at(2030-01-01T00:00:00Z)", "expires_at(\"soon\")"),
            GOOD.replace("issued_at(2029-12-31T23:45:00Z);", ""),
            GOOD.replace("issued_at(2029-12-31T23:45:00Z)", "issued_at(1)"),
            GOOD.replace(
                "issued_at(2029-12-31T23:45:00Z);",
                "issued_at(2029-12-31T23:45:00Z); issued_at(2029-12-31T23:46:00Z);",
            ),
            GOOD.replace("service(\"s1\")", "service(1)"),
        ];
        for code in cases {
            assert!(
                matches!(read(&token(&code)), Err(Denial::UnsupportedFormat { .. })),
                "{code}"
            );
        }
    }

    #[test]
    fn a_writ_without_services_reads_but_names_no_audience() {
        let code = GOOD
            .replace("service(\"s1\");", "")
            .replace("service(\"s2\");", "");
        assert!(read(&token(&code)).unwrap().services.is_empty());
    }
}
