//! Admin credentials: the *admin writs* with which admins, approvers and auditors authenticate to
//! the broker's admin routes. Pure domain: no HTTP, no SQL.
//!
//! An admin writ is a Biscuit token signed by the broker's root key (the same key ring as agent
//! writs). Its authority block:
//! ```text
//! writ_admin(1);
//! writ_id("ad_<32 hex>"); principal("alice@example.com");
//! issued_at(<date>); expires_at(<date>);
//! role("admin");                                 // one fact per role
//! check if time($t), $t <= <expires_at>;
//! ```
//! It deliberately carries no `writ(..)`, `service(..)` or `right(..)` fact, so a downstream
//! verifier (which requires `writ(1)` and rights) never accepts one; and the admin verifier
//! requires `writ_admin(1)` in the authority block and refuses any `writ(..)` there, so an agent
//! writ never passes for an admin credential. Trusted values are read from the authority block
//! only: facts a holder appends in later blocks never count, while the checks of those blocks
//! still apply (a holder can only restrict, e.g. shorten the expiry).
//!
//! Roles are not hierarchical: `admin` does not imply `approver` or `auditor`; a principal gets
//! every role it needs explicitly.

mod credential;
mod mint;
mod principal;
mod role;

pub use credential::{
    AdminCredential, CredentialError, MAX_ADMIN_CREDENTIAL_LEN, role_names, verify_admin_writ,
};
pub use mint::{
    AdminMintError, DEFAULT_ADMIN_TTL, MAX_ADMIN_TTL, MintedAdminWrit, mint_admin_writ,
    new_admin_writ_id,
};
pub use principal::{MAX_PRINCIPAL_LEN, Principal, PrincipalError};
pub use role::{Role, RoleError};

/// The admin writ format version in `writ_admin(1)`.
pub const ADMIN_FORMAT_VERSION: i64 = 1;
