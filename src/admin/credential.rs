//! Verifying admin writs: from a presented token to an [`AdminCredential`], or a refusal with a
//! stable code.
//!
//! Trusted values (`writ_id`, `principal`, `role`, `expires_at`) are read with
//! [`Authorizer::query`], which sees only the authority block and the authorizer: a holder may
//! append blocks whose checks restrict the credential (they are enforced), but no fact of theirs
//! ever counts. A `role` this broker does not know refuses the whole credential rather than being
//! skipped: a token with a role we cannot interpret was not minted by this version of the broker,
//! and guessing at what its issuer meant is how privileges leak.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use biscuit_auth::builder::{AuthorizerBuilder, date, fact};
use biscuit_auth::error::{Format, Token};
use biscuit_auth::{Authorizer, AuthorizerLimits, Biscuit, PublicKey};

use super::{ADMIN_FORMAT_VERSION, Principal, Role};
use crate::error::{DomainError, ErrorCode, codes};
use crate::keys::KeyRing;
use crate::time::unix;

/// Longest token accepted, in bytes of base64: an admin writ is well under 1 KiB, and a few
/// attenuation blocks still fit. Checked before any decoding or signature work.
pub const MAX_ADMIN_CREDENTIAL_LEN: usize = 16 * 1024;

/// The most blocks (authority plus attenuations) an admin writ may have: each costs a
/// signature check, and anyone holding any writ could otherwise make refusals expensive.
pub const MAX_ADMIN_CREDENTIAL_BLOCKS: usize = 8;

/// Explicit run limits (biscuit's default of 1 ms fails valid tokens under load). Set on the
/// builder: `authorize_with_limits` ignores them during fact generation in biscuit-auth 6.0.0.
/// Facts and iterations bound the work; the time is a backstop, measured on the wall clock, so
/// it is generous: a thread preempted on a loaded machine must not turn a valid admin writ away.
const LIMITS: AuthorizerLimits = AuthorizerLimits {
    max_facts: 1000,
    max_iterations: 100,
    max_time: Duration::from_millis(100),
};

/// The authorizer's policies. Without `trusting`, they see the authority block and the
/// authorizer only. An agent writ (`writ(1)`) is refused even if it somehow also said
/// `writ_admin(1)`.
const POLICIES: &str = r#"
    deny if writ($version);
    allow if writ_admin(1);
"#;

/// A verified admin writ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCredential {
    pub writ_id: String,
    pub principal: Principal,
    pub roles: BTreeSet<Role>,
    /// As minted; an attenuation block may have restricted it further.
    pub expires_at: SystemTime,
    /// Hex revocation ids of every block, authority first: revoking any of them refuses this
    /// credential.
    pub revocation_ids: Vec<String>,
    pub root_key_id: u32,
}

impl AdminCredential {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Refuses unless the credential carries one of `roles` (roles are not hierarchical).
    pub fn require(&self, roles: &'static [Role]) -> Result<(), CredentialError> {
        if roles.iter().any(|role| self.has(*role)) {
            Ok(())
        } else {
            Err(CredentialError::RoleMissing { required: roles })
        }
    }
}

/// Why an admin credential was refused. Texts are fixed: they never echo token content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the admin credential is malformed: {reason}")]
    Malformed { reason: &'static str },
    /// Its signature or key does not verify: anyone could have sent it.
    #[error("the admin credential is not valid: {reason}")]
    Unverified { reason: &'static str },
    /// Signed by the broker, but not a valid admin writ (an agent's writ, say).
    #[error("the admin credential is not valid: {reason}")]
    Invalid { reason: &'static str },
    #[error("the admin credential has expired")]
    Expired,
    #[error("the admin credential lacks the {} role", role_names(required))]
    RoleMissing { required: &'static [Role] },
}

impl CredentialError {
    /// Whether the credential's signature had verified when it was refused: only then does the
    /// refusal say anything about who sent it.
    pub fn after_signature(&self) -> bool {
        !matches!(
            self,
            CredentialError::Malformed { .. } | CredentialError::Unverified { .. }
        )
    }
}

impl DomainError for CredentialError {
    fn code(&self) -> ErrorCode {
        match self {
            CredentialError::Malformed { .. } => codes::ADMIN_CREDENTIAL_MALFORMED,
            CredentialError::Unverified { .. } | CredentialError::Invalid { .. } => {
                codes::ADMIN_CREDENTIAL_INVALID
            }
            CredentialError::Expired => codes::ADMIN_CREDENTIAL_EXPIRED,
            CredentialError::RoleMissing { .. } => codes::ADMIN_ROLE_MISSING,
        }
    }
}

/// `admin`, or `admin or auditor`.
pub fn role_names(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|role| role.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

fn malformed(reason: &'static str) -> CredentialError {
    CredentialError::Malformed { reason }
}

fn unverified(reason: &'static str) -> CredentialError {
    CredentialError::Unverified { reason }
}

fn invalid(reason: &'static str) -> CredentialError {
    CredentialError::Invalid { reason }
}

/// Verifies `token` at `now` against the published keys of `ring`.
pub fn verify_admin_writ(
    ring: &KeyRing,
    token: &str,
    now: SystemTime,
) -> Result<AdminCredential, CredentialError> {
    if token.len() > MAX_ADMIN_CREDENTIAL_LEN {
        return Err(malformed("the token is too large"));
    }
    let blocks = biscuit_auth::UnverifiedBiscuit::from_base64(token)
        .map_err(|error| parse_error(&error))?
        .block_count();
    if blocks > MAX_ADMIN_CREDENTIAL_BLOCKS {
        return Err(unverified("too many blocks"));
    }
    let biscuit = Biscuit::from_base64(token, |kid| root_key(ring, kid, now))
        .map_err(|error| parse_error(&error))?;
    let mut authorizer = authorizer(&biscuit, now)?;
    let values = read_values(&mut authorizer)?;
    // The authority block's expiry check would refuse this too; comparing first only lets the
    // refusal say why. Dates in tokens are whole seconds, as is `time(now)`.
    if unix(now) > unix(values.expires_at) {
        return Err(CredentialError::Expired);
    }
    authorizer
        .authorize()
        .map_err(|_| invalid("a check of the token failed"))?;
    Ok(AdminCredential {
        writ_id: values.writ_id,
        principal: values.principal,
        roles: values.roles,
        expires_at: values.expires_at,
        revocation_ids: biscuit
            .revocation_identifiers()
            .iter()
            .map(hex::encode)
            .collect(),
        // Always present: `root_key` refused tokens without one.
        root_key_id: biscuit
            .root_key_id()
            .ok_or_else(|| invalid("the token names no root key"))?,
    })
}

/// The public key for the token's `root_key_id`: a key of the ring still published at `now`.
/// A token without a key id, or naming an unknown or withdrawn key, is refused.
fn root_key(ring: &KeyRing, kid: Option<u32>, now: SystemTime) -> Result<PublicKey, Format> {
    kid.and_then(|kid| ring.published_key(kid, now))
        .ok_or(Format::UnknownPublicKey)
}

/// Signature and key failures make a token invalid; anything that cannot be decoded is
/// malformed.
fn parse_error(error: &Token) -> CredentialError {
    match error {
        Token::Format(Format::UnknownPublicKey) => unverified("unknown or retired root key"),
        Token::Format(Format::Signature(_) | Format::SealedSignature) => {
            unverified("the signature does not verify")
        }
        Token::Format(Format::UnknownExternalKey) => unverified("unknown third-party key"),
        Token::Base64(_) => malformed("the token is not base64url"),
        _ => malformed("the token is not a Biscuit"),
    }
}

fn authorizer(biscuit: &Biscuit, now: SystemTime) -> Result<Authorizer, CredentialError> {
    let unbuildable = |_| invalid("the token cannot be evaluated");
    AuthorizerBuilder::new()
        .set_limits(LIMITS)
        .fact(fact("time", &[date(&now)]))
        .map_err(unbuildable)?
        .code(POLICIES)
        .map_err(unbuildable)?
        .build(biscuit)
        .map_err(unbuildable)
}

/// The trusted values of the authority block.
struct AuthorityValues {
    writ_id: String,
    principal: Principal,
    roles: BTreeSet<Role>,
    expires_at: SystemTime,
}

/// Reads the values from the authority block (and the authorizer, which adds only `time`).
/// Anything but exactly one `writ_admin(1)`, `writ_id`, `principal` and `expires_at`, and at
/// least one known role, is not an admin writ of this format.
fn read_values(authorizer: &mut Authorizer) -> Result<AuthorityValues, CredentialError> {
    let versions: Vec<(i64,)> = query(authorizer, "v($v) <- writ_admin($v)")?;
    if versions != [(ADMIN_FORMAT_VERSION,)] {
        return Err(invalid("not an admin writ"));
    }
    let writ_id: String = exactly_one(
        query(authorizer, "v($v) <- writ_id($v)")?,
        "the token has no writ_id",
    )?;
    let principal: String = exactly_one(
        query(authorizer, "v($v) <- principal($v)")?,
        "the token has no principal",
    )?;
    let principal =
        Principal::parse(&principal).map_err(|_| invalid("the principal is not valid"))?;
    // Bounded in the query: biscuit converts a date to `SystemTime` with `UNIX_EPOCH + secs`,
    // which panics past what `SystemTime` holds; a date beyond year 9999 is no expiry here.
    let expires_at: SystemTime = exactly_one(
        query(
            authorizer,
            "v($v) <- expires_at($v), $v <= 9999-12-31T23:59:59Z",
        )?,
        "the token has no expires_at",
    )?;
    let names: Vec<(String,)> = query(authorizer, "v($v) <- role($v)")?;
    let roles = names
        .iter()
        .map(|(name,)| name.parse::<Role>())
        .collect::<Result<BTreeSet<Role>, _>>()
        .map_err(|_| invalid("the token carries an unknown role"))?;
    if roles.is_empty() {
        return Err(invalid("the token carries no role"));
    }
    Ok(AuthorityValues {
        writ_id,
        principal,
        roles,
        expires_at,
    })
}

/// Runs a query over the authority block and the authorizer (never `query_all`: that would
/// return facts appended by the holder). A value of the wrong type is refused.
fn query<T>(authorizer: &mut Authorizer, rule: &'static str) -> Result<Vec<T>, CredentialError>
where
    T: TryFrom<biscuit_auth::builder::Fact, Error = Token>,
{
    authorizer.query(rule).map_err(|error| match error {
        Token::RunLimit(_) => invalid("the token exceeds the evaluation limits"),
        _ => invalid("a value of the token has the wrong type"),
    })
}

/// The single value of a query; several different values are refused (identical facts are
/// one fact in Datalog).
fn exactly_one<T>(values: Vec<(T,)>, missing: &'static str) -> Result<T, CredentialError> {
    let mut values = values.into_iter();
    match (values.next(), values.next()) {
        (Some((value,)), None) => Ok(value),
        (None, _) => Err(invalid(missing)),
        (Some(_), Some(_)) => Err(invalid("a value of the token is repeated")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;

    use biscuit_auth::KeyPair;
    use biscuit_auth::builder::BlockBuilder;
    use tempfile::TempDir;

    use super::super::{DEFAULT_ADMIN_TTL, MintedAdminWrit, mint_admin_writ};
    use super::*;
    use crate::keys::{KeyDir, SigningKey};

    /// A key ring in a temporary directory (kept alive with it).
    fn ring() -> (TempDir, KeyDir, KeyRing) {
        let temp = tempfile::tempdir().unwrap();
        let dir = KeyDir::open_or_init(&temp.path().join("keys")).unwrap();
        let ring = dir.load().unwrap();
        (temp, dir, ring)
    }

    fn mint(key: &SigningKey, roles: &[Role], now: SystemTime) -> MintedAdminWrit {
        let principal = Principal::parse("alice@example.com").unwrap();
        let roles = roles.iter().copied().collect();
        mint_admin_writ(key, &principal, &roles, now, DEFAULT_ADMIN_TTL).unwrap()
    }

    fn append(token: &str, ring: &KeyRing, block: BlockBuilder) -> String {
        let public = ring.active.key_pair.public();
        let token = Biscuit::from_base64(token, public).unwrap();
        token.append(block).unwrap().to_base64().unwrap()
    }

    fn is_invalid(result: Result<AdminCredential, CredentialError>) -> bool {
        matches!(
            result,
            Err(CredentialError::Invalid { .. } | CredentialError::Unverified { .. })
        )
    }

    /// An admin-looking token signed by `key`, with the standard values and `extra` Datalog
    /// (static text in these tests, never built from input).
    fn raw_token(key: &SigningKey, now: SystemTime, extra: &str) -> String {
        let params = HashMap::from([("expires_at".to_owned(), date(&(now + DEFAULT_ADMIN_TTL)))]);
        Biscuit::builder()
            .code_with_params(
                r#"writ_id("ad_00"); expires_at({expires_at});
                   check if time($t), $t <= {expires_at};"#,
                params,
                HashMap::new(),
            )
            .unwrap()
            .code(extra)
            .unwrap()
            .root_key_id(key.kid)
            .build(&key.key_pair)
            .unwrap()
            .to_base64()
            .unwrap()
    }

    #[test]
    fn expiries_past_what_system_time_holds_are_refused_not_panics() {
        let (_temp, _dir, ring) = ring();
        let now = SystemTime::now();
        for secs in [u64::MAX, 1 << 63, 253_402_300_800] {
            let token = Biscuit::builder()
                .code_with_params(
                    r#"writ_admin(1); writ_id("ad_00"); principal("alice@example.com");
                       role("admin"); expires_at({expires_at});"#,
                    HashMap::from([(
                        "expires_at".to_owned(),
                        biscuit_auth::builder::Term::Date(secs),
                    )]),
                    HashMap::new(),
                )
                .unwrap()
                .root_key_id(ring.active.kid)
                .build(&ring.active.key_pair)
                .unwrap()
                .to_base64()
                .unwrap();
            assert!(is_invalid(verify_admin_writ(&ring, &token, now)), "{secs}");
        }
    }

    #[test]
    fn a_minted_admin_writ_verifies_with_its_principal_and_roles() {
        let (_temp, _dir, ring) = ring();
        let now = SystemTime::now();
        let minted = mint(&ring.active, &[Role::Admin, Role::Approver], now);
        let credential = verify_admin_writ(&ring, &minted.token, now).unwrap();
        assert_eq!(credential.writ_id, minted.writ_id);
        assert_eq!(credential.principal.as_str(), "alice@example.com");
        assert_eq!(
            credential.roles,
            BTreeSet::from([Role::Admin, Role::Approver])
        );
        assert_eq!(credential.expires_at, minted.expires_at);
        assert_eq!(credential.revocation_ids, vec![minted.revocation_id]);
        assert_eq!(credential.root_key_id, ring.active.kid);
        assert_eq!(credential.require(&[Role::Admin]), Ok(()));
        assert_eq!(credential.require(&[Role::Approver]), Ok(()));
        assert_eq!(credential.require(&[Role::Auditor, Role::Admin]), Ok(()));
        let missing = credential.require(&[Role::Auditor]).unwrap_err();
        assert_eq!(
            missing,
            CredentialError::RoleMissing {
                required: &[Role::Auditor]
            }
        );
        assert_eq!(missing.code().name, "admin_role_missing");
        assert_eq!(
            missing.to_string(),
            "the admin credential lacks the auditor role"
        );
        let auditor = AdminCredential {
            roles: BTreeSet::from([Role::Auditor]),
            ..credential
        };
        assert_eq!(
            auditor
                .require(&[Role::Admin, Role::Approver])
                .unwrap_err()
                .to_string(),
            "the admin credential lacks the admin or approver role"
        );
    }

    #[test]
    fn an_admin_writ_expires_at_its_expiry() {
        let (_temp, _dir, ring) = ring();
        let now = SystemTime::now();
        let minted = mint(&ring.active, &[Role::Auditor], now);
        assert!(verify_admin_writ(&ring, &minted.token, minted.expires_at).is_ok());
        let later = minted.expires_at + Duration::from_secs(1);
        let error = verify_admin_writ(&ring, &minted.token, later).unwrap_err();
        assert_eq!(error, CredentialError::Expired);
        assert_eq!(error.code().name, "admin_credential_expired");
    }

    #[test]
    fn a_time_fact_appended_by_the_holder_does_not_revive_an_expired_writ() {
        let (_temp, _dir, ring) = ring();
        let now = SystemTime::now();
        let minted = mint(&ring.active, &[Role::Admin], now);
        let block = BlockBuilder::new()
            .fact(fact("time", &[date(&now)]))
            .unwrap();
        let token = append(&minted.token, &ring, block);
        let later = minted.expires_at + Duration::from_secs(60);
        assert_eq!(
            verify_admin_writ(&ring, &token, later),
            Err(CredentialError::Expired)
        );
    }

    #[test]
    fn a_writ_signed_by_a_key_outside_the_ring_is_invalid() {
        let (_temp_a, _dir_a, signer) = ring();
        let (_temp_b, _dir_b, other) = ring();
        let now = SystemTime::now();
        // Same key id (1), different key: the signature fails.
        let minted = mint(&signer.active, &[Role::Admin], now);
        let error = verify_admin_writ(&other, &minted.token, now).unwrap_err();
        assert!(
            matches!(error, CredentialError::Unverified { .. }),
            "{error:?}"
        );
        assert!(!error.after_signature());
        assert_eq!(error.code().name, "admin_credential_invalid");
        // An unknown key id.
        let stranger = SigningKey {
            kid: 99,
            key_pair: KeyPair::new(),
        };
        let minted = mint(&stranger, &[Role::Admin], now);
        assert!(is_invalid(verify_admin_writ(&other, &minted.token, now)));
    }

    #[test]
    fn a_token_without_a_root_key_id_is_invalid() {
        let (_temp, _dir, ring) = ring();
        let token = Biscuit::builder()
            .code("writ_admin(1);")
            .unwrap()
            .build(&ring.active.key_pair)
            .unwrap()
            .to_base64()
            .unwrap();
        assert!(is_invalid(verify_admin_writ(
            &ring,
            &token,
            SystemTime::now()
        )));
    }

    #[test]
    fn a_retired_key_verifies_until_its_publication_ends() {
        let (_temp, dir, ring) = ring();
        let now = SystemTime::now();
        let minted = mint(&ring.active, &[Role::Admin], now);
        let retain = Duration::from_secs(600);
        dir.rotate(retain, now).unwrap();
        let rotated = dir.load().unwrap();
        assert_ne!(rotated.active.kid, minted.root_key_id);
        assert!(verify_admin_writ(&rotated, &minted.token, now).is_ok());
        // Still within the writ's hour, but the key is no longer published.
        let after = now + retain + Duration::from_secs(2);
        assert!(is_invalid(verify_admin_writ(
            &rotated,
            &minted.token,
            after
        )));
    }

    #[test]
    fn tampered_and_garbage_tokens_are_refused() {
        let (_temp, _dir, ring) = ring();
        let now = SystemTime::now();
        let minted = mint(&ring.active, &[Role::Auditor], now);
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE, &minted.token)
                .unwrap();
        for position in (0..bytes.len()).step_by(7) {
            let mut tampered = bytes.clone();
            tampered[position] ^= 0x01;
            let token =
                base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE, &tampered);
            let error = verify_admin_writ(&ring, &token, now).unwrap_err();
            assert!(
                matches!(
                    error,
                    CredentialError::Invalid { .. }
                        | CredentialError::Unverified { .. }
                        | CredentialError::Malformed { .. }
                ),
                "byte {position}: {error:?}"
            );
        }
        for garbage in ["", "not a token!", "AAAA", "eyJhbGciOiJub25lIn0.e30."] {
            let error = verify_admin_writ(&ring, garbage, now).unwrap_err();
            assert_eq!(
                error.code().name,
                "admin_credential_malformed",
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn an_oversized_token_is_malformed_before_parsing() {
        let (_temp, _dir, ring) = ring();
        let now = SystemTime::now();
        let huge = "A".repeat(MAX_ADMIN_CREDENTIAL_LEN + 1);
        let error = verify_admin_writ(&ring, &huge, now).unwrap_err();
        assert_eq!(error, malformed("the token is too large"));
        // A genuine writ padded past the limit by an attenuation block.
        let minted = mint(&ring.active, &[Role::Admin], now);
        let padding = "x".repeat(MAX_ADMIN_CREDENTIAL_LEN);
        let block = BlockBuilder::new()
            .fact(fact("note", &[biscuit_auth::builder::string(&padding)]))
            .unwrap();
        let token = append(&minted.token, &ring, block);
        assert_eq!(
            verify_admin_writ(&ring, &token, now)
                .unwrap_err()
                .code()
                .name,
            "admin_credential_malformed"
        );
    }

    #[test]
    fn too_many_blocks_are_refused_and_the_limit_itself_is_accepted() {
        let (_temp, _dir, ring) = ring();
        let now = SystemTime::now();
        let mut token = mint(&ring.active, &[Role::Admin], now).token;
        for _ in 1..MAX_ADMIN_CREDENTIAL_BLOCKS {
            token = append(&token, &ring, BlockBuilder::new());
        }
        assert!(
            verify_admin_writ(&ring, &token, now).is_ok(),
            "8 blocks verify"
        );
        let one_more = append(&token, &ring, BlockBuilder::new());
        assert_eq!(
            verify_admin_writ(&ring, &one_more, now).unwrap_err(),
            unverified("too many blocks")
        );
    }

    #[test]
    fn an_agent_writ_is_not_an_admin_credential() {
        let (_temp, _dir, ring) = ring();
        let now = SystemTime::now();
        let writ_id = crate::mint::new_writ_id().unwrap();
        let agent = crate::mint::mint(
            &ring.active,
            &crate::mint::WritContents {
                writ_id: &writ_id,
                agent: "alice@example.com",
                task: "deploy",
                rights: &[],
                services: &[],
                issued_at: now,
                expires_at: now + DEFAULT_ADMIN_TTL,
            },
        )
        .unwrap();
        assert!(is_invalid(verify_admin_writ(&ring, &agent.token, now)));
        // The holder appends what an admin writ would say: appended facts never count.
        let block = BlockBuilder::new()
            .code(r#"writ_admin(1); writ_id("ad_00"); principal("x"); role("admin");"#)
            .unwrap()
            .fact(fact("expires_at", &[date(&(now + DEFAULT_ADMIN_TTL))]))
            .unwrap();
        let forged = append(&agent.token, &ring, block);
        assert_eq!(
            verify_admin_writ(&ring, &forged, now),
            Err(invalid("not an admin writ"))
        );
    }

    #[test]
    fn a_role_appended_by_the_holder_does_not_count() {
        let (_temp, _dir, ring) = ring();
        let now = SystemTime::now();
        let minted = mint(&ring.active, &[Role::Auditor], now);
        let block = BlockBuilder::new()
            .code(r#"role("admin"); principal("root"); writ_id("ad_11");"#)
            .unwrap();
        let token = append(&minted.token, &ring, block);
        let credential = verify_admin_writ(&ring, &token, now).unwrap();
        assert_eq!(credential.roles, BTreeSet::from([Role::Auditor]));
        assert_eq!(credential.principal.as_str(), "alice@example.com");
        assert_eq!(credential.writ_id, minted.writ_id);
        assert_eq!(credential.revocation_ids.len(), 2);
        assert_eq!(
            credential.require(&[Role::Admin]),
            Err(CredentialError::RoleMissing {
                required: &[Role::Admin]
            })
        );
    }

    #[test]
    fn an_attenuated_expiry_applies() {
        let (_temp, _dir, ring) = ring();
        let now = SystemTime::now();
        let minted = mint(&ring.active, &[Role::Admin], now);
        let cutoff = now + Duration::from_secs(300);
        let block = BlockBuilder::new()
            .code_with_params(
                "check if time($t), $t <= {cutoff};",
                HashMap::from([("cutoff".to_owned(), date(&cutoff))]),
                HashMap::new(),
            )
            .unwrap();
        let token = append(&minted.token, &ring, block);
        assert!(verify_admin_writ(&ring, &token, now).is_ok());
        let after = cutoff + Duration::from_secs(60);
        assert!(verify_admin_writ(&ring, &minted.token, after).is_ok());
        assert_eq!(
            verify_admin_writ(&ring, &token, after),
            Err(invalid("a check of the token failed"))
        );
    }

    #[test]
    fn an_unknown_role_refuses_the_whole_credential() {
        let (_temp, _dir, ring) = ring();
        let now = SystemTime::now();
        for roles in [r#"role("superuser");"#, r#"role("admin"); role("root");"#] {
            let extra = format!("writ_admin(1); principal(\"alice\"); {roles}");
            let token = raw_token(&ring.active, now, &extra);
            assert_eq!(
                verify_admin_writ(&ring, &token, now),
                Err(invalid("the token carries an unknown role")),
                "{roles}"
            );
        }
        let token = raw_token(
            &ring.active,
            now,
            r#"writ_admin(1); principal("alice"); role("admin");"#,
        );
        assert!(verify_admin_writ(&ring, &token, now).is_ok());
    }

    #[test]
    fn missing_repeated_or_mistyped_values_are_invalid() {
        let (_temp, _dir, ring) = ring();
        let now = SystemTime::now();
        for extra in [
            r#"principal("alice"); role("admin");"#,
            r#"writ_admin(2); principal("alice"); role("admin");"#,
            r#"writ_admin("1"); principal("alice"); role("admin");"#,
            r#"writ_admin(1); writ_admin(2); principal("alice"); role("admin");"#,
            r#"writ_admin(1); role("admin");"#,
            r#"writ_admin(1); principal("alice"); principal("bob"); role("admin");"#,
            r#"writ_admin(1); principal("alice"); writ_id("ad_01"); role("admin");"#,
            r#"writ_admin(1); principal(42); role("admin");"#,
            r#"writ_admin(1); principal("a b"); role("admin");"#,
            r#"writ_admin(1); principal("alice");"#,
            r#"writ_admin(1); principal("alice"); role(1);"#,
            r#"writ_admin(1); principal("alice"); role("admin"); writ(1);"#,
        ] {
            let token = raw_token(&ring.active, now, extra);
            let result = verify_admin_writ(&ring, &token, now);
            assert!(is_invalid(result.clone()), "{extra}: {result:?}");
        }
    }

    #[test]
    fn refusals_never_echo_token_content() {
        let (_temp, _dir, ring) = ring();
        let now = SystemTime::now();
        let minted = mint(&ring.active, &[Role::Admin], now);
        let later = minted.expires_at + Duration::from_secs(1);
        let mut tampered = minted.token.clone();
        tampered.insert(10, '!');
        for error in [
            verify_admin_writ(&ring, &minted.token, later).unwrap_err(),
            verify_admin_writ(&ring, &tampered, now).unwrap_err(),
        ] {
            let text = error.to_string();
            assert!(!text.contains(&minted.writ_id), "{text}");
            assert!(!text.contains("alice"), "{text}");
            assert!(!text.contains(&minted.token[..16]), "{text}");
        }
    }
}
