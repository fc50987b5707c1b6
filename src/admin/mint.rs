//! Minting admin writs: the authority block of the admin format (see the module above), signed
//! with the active root key. Every value enters as a Datalog parameter, never by formatting text.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use biscuit_auth::Biscuit;
use biscuit_auth::builder::{Term, date, fact, string};

use super::{ADMIN_FORMAT_VERSION, Principal, Role};
use crate::error::{DomainError, ErrorCode, codes};
use crate::id::{self, RandomSourceFailed};
use crate::keys::SigningKey;
use crate::time::unix;

/// The longest lifetime of an admin writ: a stolen one is useful for a day at most.
pub const MAX_ADMIN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The lifetime of an admin writ when none is asked for.
pub const DEFAULT_ADMIN_TTL: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum AdminMintError {
    #[error("an admin writ needs at least one role")]
    NoRoles,
    #[error("an admin writ lives at least one second")]
    TtlTooShort,
    #[error("an admin writ lives at most {max}s; {asked}s was asked for", max = MAX_ADMIN_TTL.as_secs())]
    TtlTooLong { asked: u64 },
    #[error("could not build the admin writ: {0}")]
    Build(#[from] biscuit_auth::error::Token),
    #[error(transparent)]
    Random(#[from] RandomSourceFailed),
}

impl DomainError for AdminMintError {
    fn code(&self) -> ErrorCode {
        match self {
            AdminMintError::NoRoles
            | AdminMintError::TtlTooShort
            | AdminMintError::TtlTooLong { .. } => codes::INVALID_REQUEST,
            AdminMintError::Build(_) | AdminMintError::Random(_) => codes::MINT_FAILED,
        }
    }
}

/// A signed admin writ.
#[derive(Debug, Clone)]
pub struct MintedAdminWrit {
    /// The admin writ itself (base64url): a bearer credential, never logged or stored.
    pub token: String,
    pub writ_id: String,
    /// Hex revocation id of the authority block; revoking it revokes every attenuation.
    pub revocation_id: String,
    pub root_key_id: u32,
    /// Whole seconds, as written in the token.
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
}

/// A fresh admin writ id: `ad_` and 128 random bits in hex (the prefix tells it from an agent
/// writ's `wr_` id in logs and revocation lists).
pub fn new_admin_writ_id() -> Result<String, AdminMintError> {
    Ok(id::new_id(id::ADMIN_WRIT)?)
}

const AUTHORITY: &str = r#"
    writ_admin({version});
    writ_id({writ_id}); principal({principal});
    issued_at({issued_at}); expires_at({expires_at});
    check if time($t), $t <= {expires_at};
"#;

/// The lifetime in whole seconds (a token holds dates in seconds), within the allowed bounds.
fn checked_ttl(ttl: Duration) -> Result<Duration, AdminMintError> {
    if ttl > MAX_ADMIN_TTL {
        return Err(AdminMintError::TtlTooLong {
            asked: ttl.as_secs(),
        });
    }
    match ttl.as_secs() {
        0 => Err(AdminMintError::TtlTooShort),
        secs => Ok(Duration::from_secs(secs)),
    }
}

pub fn mint_admin_writ(
    key: &SigningKey,
    principal: &Principal,
    roles: &BTreeSet<Role>,
    issued_at: SystemTime,
    ttl: Duration,
) -> Result<MintedAdminWrit, AdminMintError> {
    if roles.is_empty() {
        return Err(AdminMintError::NoRoles);
    }
    let issued_at = UNIX_EPOCH + Duration::from_secs(unix(issued_at));
    let expires_at = issued_at + checked_ttl(ttl)?;
    let writ_id = new_admin_writ_id()?;
    let params = HashMap::from([
        ("version".to_owned(), Term::Integer(ADMIN_FORMAT_VERSION)),
        ("writ_id".to_owned(), string(&writ_id)),
        ("principal".to_owned(), string(principal.as_str())),
        ("issued_at".to_owned(), date(&issued_at)),
        ("expires_at".to_owned(), date(&expires_at)),
    ]);
    let mut builder = Biscuit::builder()
        .code_with_params(AUTHORITY, params, HashMap::new())?
        .root_key_id(key.kid);
    for role in roles {
        builder = builder.fact(fact("role", &[string(role.as_str())]))?;
    }
    let token = builder.build(&key.key_pair)?;
    Ok(MintedAdminWrit {
        token: token.to_base64()?,
        writ_id,
        revocation_id: crate::mint::authority_revocation_id(&token),
        root_key_id: key.kid,
        issued_at,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key() -> SigningKey {
        SigningKey {
            kid: 7,
            key_pair: biscuit_auth::KeyPair::new(),
        }
    }

    fn alice() -> Principal {
        Principal::parse("alice@example.com").unwrap()
    }

    #[test]
    fn the_authority_block_has_the_documented_facts() {
        let key = key();
        let issued = UNIX_EPOCH + Duration::from_millis(1_700_000_000_750);
        let roles = BTreeSet::from([Role::Admin, Role::Auditor]);
        let minted = mint_admin_writ(&key, &alice(), &roles, issued, DEFAULT_ADMIN_TTL).unwrap();
        assert_eq!(minted.root_key_id, 7);
        assert!(minted.writ_id.starts_with("ad_") && minted.writ_id.len() == 35);
        assert_eq!(
            minted.issued_at,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert_eq!(minted.expires_at, minted.issued_at + DEFAULT_ADMIN_TTL);
        let token = Biscuit::from_base64(&minted.token, key.key_pair.public()).unwrap();
        assert_eq!(token.root_key_id(), Some(7));
        assert_eq!(
            hex::encode(&token.revocation_identifiers()[0]),
            minted.revocation_id
        );
        let source = token.print_block_source(0).unwrap();
        for expected in [
            "writ_admin(1);",
            &format!("writ_id(\"{}\");", minted.writ_id),
            "principal(\"alice@example.com\");",
            "role(\"admin\");",
            "role(\"auditor\");",
            "check if time($t), $t <= 2023-11-14T23:13:20Z;",
        ] {
            assert!(source.contains(expected), "{expected} not in {source}");
        }
        for absent in ["writ(", "service(", "right(", "approver"] {
            assert!(!source.contains(absent), "{absent} in {source}");
        }
    }

    #[test]
    fn no_roles_and_out_of_range_lifetimes_are_refused() {
        let key = key();
        let now = SystemTime::now();
        let admin = BTreeSet::from([Role::Admin]);
        assert!(matches!(
            mint_admin_writ(&key, &alice(), &BTreeSet::new(), now, DEFAULT_ADMIN_TTL),
            Err(AdminMintError::NoRoles)
        ));
        for short in [Duration::ZERO, Duration::from_millis(999)] {
            assert!(matches!(
                mint_admin_writ(&key, &alice(), &admin, now, short),
                Err(AdminMintError::TtlTooShort)
            ));
        }
        assert!(matches!(
            mint_admin_writ(&key, &alice(), &admin, now, MAX_ADMIN_TTL + Duration::from_secs(1)),
            Err(AdminMintError::TtlTooLong { asked }) if asked == MAX_ADMIN_TTL.as_secs() + 1
        ));
        assert!(mint_admin_writ(&key, &alice(), &admin, now, MAX_ADMIN_TTL).is_ok());
    }
}
