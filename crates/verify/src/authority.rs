//! Reading the trusted values of a writ (version, id, agent, task, expiry, services).
//!
//! They are read with `query` over rules scoped `trusting authority`, which sees only the
//! broker-signed authority block and the verifier's own facts. Never `query_all`: that also
//! returns facts a holder appended in later blocks, so a forged `agent("evil")` would come back.

use std::time::SystemTime;

use biscuit_auth::Authorizer;
use biscuit_auth::builder::Rule;
use biscuit_auth::error::Token;

use crate::Denial;

/// The only writ format version this crate understands.
pub(crate) const WRIT_VERSION: i64 = 1;

/// Trusted values of one writ, read once at first sight and cached with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuthorityValues {
    pub(crate) writ_id: String,
    pub(crate) agent: String,
    pub(crate) task: String,
    pub(crate) expires_at: SystemTime,
    pub(crate) services: Vec<String>,
}

/// The queries, parsed once when the verifier is built.
#[derive(Clone, Debug)]
pub(crate) struct Queries {
    version: Rule,
    values: Rule,
    services: Rule,
}

impl Queries {
    pub(crate) fn new() -> Result<Queries, Token> {
        // Constant text: nothing here comes from a token or a request.
        Ok(Queries {
            version: "q($v) <- writ($v) trusting authority".try_into()?,
            values: "q($id, $agent, $task, $exp) <- writ_id($id), agent($agent), task($task), \
                     expires_at($exp) trusting authority"
                .try_into()?,
            services: "q($s) <- service($s) trusting authority".try_into()?,
        })
    }

    /// Reads the values from an authorizer built on the writ (its world already run or not).
    pub(crate) fn read(&self, authorizer: &mut Authorizer) -> Result<AuthorityValues, Denial> {
        let versions: Vec<(i64,)> = authorizer
            .query(self.version.clone())
            .map_err(query_denial)?;
        match versions.as_slice() {
            [(WRIT_VERSION,)] => {}
            [] => return Err(unsupported("no writ(..) version fact")),
            _ => return Err(unsupported("the writ version is not 1")),
        }
        let mut values: Vec<(String, String, String, SystemTime)> = authorizer
            .query(self.values.clone())
            .map_err(query_denial)?;
        // The product of the four facts: exactly one row means each appears exactly once.
        let (writ_id, agent, task, expires_at) = match values.len() {
            1 => values.remove(0),
            0 => return Err(unsupported("writ_id, agent, task or expires_at is missing")),
            _ => {
                return Err(unsupported(
                    "writ_id, agent, task or expires_at is repeated",
                ));
            }
        };
        let services: Vec<(String,)> = authorizer
            .query(self.services.clone())
            .map_err(query_denial)?;
        Ok(AuthorityValues {
            writ_id,
            agent,
            task,
            expires_at,
            services: services.into_iter().map(|(s,)| s).collect(),
        })
    }
}

fn unsupported(reason: &'static str) -> Denial {
    Denial::UnsupportedFormat { reason }
}

fn query_denial(error: Token) -> Denial {
    match error {
        Token::RunLimit(_) => Denial::LimitsExceeded {
            limit: "Datalog run limits",
        },
        // A value of the wrong type, e.g. writ("1") or expires_at("tomorrow").
        Token::ConversionError(_) => unsupported("an authority value has the wrong type"),
        _ => unsupported("the authority values cannot be read"),
    }
}
