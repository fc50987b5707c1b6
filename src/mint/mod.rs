//! Minting writs: the authority block of the writ format, signed by the active root key.
//!
//! This is the contract every verifier relies on (see the `writ-verify` crate):
//! ```text
//! writ(1); writ_id(..); agent(..); task(..); issued_at(..); expires_at(..);
//! service(..);                                   // one per service that may accept it
//! right("orders/42", "read");                    // exact grants
//! right($r, "read") <- resource($r), $r.starts_with("reports/");   // prefix grants
//! check if time($t), $t <= <expires_at>;
//! check if audience($a), service($a);
//! ```
//! An **elevated writ** (issued when humans approve a request) is the same authority block
//! followed by a third-party block signed by the broker's approval key, a key apart from the
//! root keys. It carries only facts:
//! ```text
//! approval("ap_…", "<approver>", <decided_at>);   // one per approving human
//! approved_writ("wr_…");                          // bound to this writ (and, by its signature,
//!                                                 // to this token's authority block)
//! approved_right("orders/42", "delete");          // exact rights approved
//! approved_prefix("reports/", "delete");          // prefix rights approved ("reports/*")
//! ```
//! A verifier told that an operation requires approval trusts these facts only from the approval
//! key, so a writ a misconfigured policy let the root key grant still lacks them.
//!
//! Every value enters as a Datalog parameter, never by formatting text: task names, resources and
//! agent identities are attacker-controlled.

use std::collections::HashMap;
use std::time::SystemTime;

use biscuit_auth::Biscuit;
use biscuit_auth::builder::{BiscuitBuilder, BlockBuilder};
use biscuit_auth::builder::{Term, date, fact, string};

use crate::error::{DomainError, ErrorCode, codes};
use crate::id::{self, RandomSourceFailed};
use crate::keys::SigningKey;
use crate::policy::{RequestedRight, ResourcePattern, ServiceName};

/// The writ format version in `writ(1)`.
pub const FORMAT_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("could not build the writ: {0}")]
    Build(#[from] biscuit_auth::error::Token),
    #[error(transparent)]
    Random(#[from] RandomSourceFailed),
}

impl DomainError for MintError {
    fn code(&self) -> ErrorCode {
        codes::MINT_FAILED
    }
}

/// Everything that goes into a writ's authority block.
#[derive(Debug, Clone)]
pub struct WritContents<'a> {
    pub writ_id: &'a str,
    pub agent: &'a str,
    pub task: &'a str,
    pub rights: &'a [RequestedRight],
    pub services: &'a [ServiceName],
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
}

/// A signed writ.
#[derive(Debug, Clone)]
pub struct MintedWrit {
    /// The writ itself (base64url): a bearer credential, never logged or stored.
    pub token: String,
    pub root_key_id: u32,
    /// Hex revocation id of the authority block.
    pub revocation_id: String,
}

/// A fresh writ id: `wr_` and 128 random bits in hex.
pub fn new_writ_id() -> Result<String, MintError> {
    Ok(id::new_id(id::WRIT)?)
}

const AUTHORITY: &str = r#"
    writ({version});
    writ_id({writ_id}); agent({agent}); task({task});
    issued_at({issued_at}); expires_at({expires_at});
    check if time($t), $t <= {expires_at};
    check if audience($a), service($a);
"#;

const PREFIX_RULE: &str = r#"right($r, {operation}) <- resource($r), $r.starts_with({prefix});"#;

/// Adds `right(resource, operation)` for an exact resource, or the rule deriving it for every
/// resource under a prefix.
fn grant(
    builder: BiscuitBuilder,
    resource: &ResourcePattern,
    operation: &str,
) -> Result<BiscuitBuilder, MintError> {
    let builder = match (resource.exact(), resource.prefix()) {
        (Some(exact), _) => builder.fact(fact("right", &[string(exact), string(operation)]))?,
        (None, Some(prefix)) => builder.code_with_params(
            PREFIX_RULE,
            HashMap::from([
                ("operation".to_owned(), string(operation)),
                ("prefix".to_owned(), string(prefix)),
            ]),
            HashMap::new(),
        )?,
        (None, None) => builder,
    };
    Ok(builder)
}

pub fn mint(key: &SigningKey, contents: &WritContents<'_>) -> Result<MintedWrit, MintError> {
    finish(key, authority(key, contents)?)
}

/// Human approval of an elevated writ: the request and who approved it when.
#[derive(Debug, Clone)]
pub struct Evidence<'a> {
    pub request_id: &'a str,
    /// Each approving principal and the time of their decision.
    pub approvals: Vec<(&'a str, SystemTime)>,
}

/// Mints an elevated writ: the writ of `contents`, then the approval evidence signed by
/// `approval_key`.
pub fn mint_elevated(
    key: &SigningKey,
    approval_key: &SigningKey,
    contents: &WritContents<'_>,
    evidence: &Evidence<'_>,
) -> Result<MintedWrit, MintError> {
    let token = authority(key, contents)?;
    let block = evidence_block(contents, evidence)?;
    let signed = token
        .third_party_request()?
        .create_block(&approval_key.key_pair.private(), block)?;
    let token = token.append_third_party(approval_key.key_pair.public(), signed)?;
    finish(key, token)
}

fn evidence_block(
    contents: &WritContents<'_>,
    evidence: &Evidence<'_>,
) -> Result<BlockBuilder, MintError> {
    let mut block = BlockBuilder::new().fact(fact("approved_writ", &[string(contents.writ_id)]))?;
    for (approver, decided_at) in &evidence.approvals {
        block = block.fact(fact(
            "approval",
            &[
                string(evidence.request_id),
                string(approver),
                date(decided_at),
            ],
        ))?;
    }
    for right in contents.rights {
        for operation in &right.operations {
            let approved = match (right.resource.exact(), right.resource.prefix()) {
                (Some(exact), _) => fact(
                    "approved_right",
                    &[string(exact), string(operation.as_str())],
                ),
                (None, Some(prefix)) => fact(
                    "approved_prefix",
                    &[string(prefix), string(operation.as_str())],
                ),
                (None, None) => continue,
            };
            block = block.fact(approved)?;
        }
    }
    Ok(block)
}

fn authority(key: &SigningKey, contents: &WritContents<'_>) -> Result<Biscuit, MintError> {
    let params = HashMap::from([
        ("version".to_owned(), Term::Integer(FORMAT_VERSION)),
        ("writ_id".to_owned(), string(contents.writ_id)),
        ("agent".to_owned(), string(contents.agent)),
        ("task".to_owned(), string(contents.task)),
        ("issued_at".to_owned(), date(&contents.issued_at)),
        ("expires_at".to_owned(), date(&contents.expires_at)),
    ]);
    let mut builder = Biscuit::builder()
        .code_with_params(AUTHORITY, params, HashMap::new())?
        .root_key_id(key.kid);
    for service in contents.services {
        builder = builder.fact(fact("service", &[string(service.as_str())]))?;
    }
    for right in contents.rights {
        for operation in &right.operations {
            builder = grant(builder, &right.resource, operation.as_str())?;
        }
    }
    Ok(builder.build(&key.key_pair)?)
}

fn finish(key: &SigningKey, token: Biscuit) -> Result<MintedWrit, MintError> {
    Ok(MintedWrit {
        token: token.to_base64()?,
        root_key_id: key.kid,
        revocation_id: authority_revocation_id(&token),
    })
}

/// The hex revocation id of a token's authority block: revoking it revokes every attenuation.
pub fn authority_revocation_id(token: &Biscuit) -> String {
    token
        .revocation_identifiers()
        .first()
        .map(hex::encode)
        .unwrap_or_default()
}
