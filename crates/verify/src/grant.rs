//! What a successful authorization tells the service.
//!
//! Every value here was read from the writ's authority block (signed by the broker) or, for the
//! approval evidence, from the block a trusted approval key signed; never from a block a holder
//! appended, so it can be logged and used for audit.

use std::time::SystemTime;

use crate::ApprovalEvidence;

/// The outcome of a successful [`Verifier::authorize`](crate::Verifier::authorize): who holds the
/// writ and for which task. Values come only from the broker-signed authority block, and the
/// approval evidence from the block signed by a trusted approval key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The writ's id (`wr_...`), stable across attenuations of the same writ.
    pub writ_id: String,
    /// The agent the broker issued the writ to.
    pub agent: String,
    /// The task the writ was issued for.
    pub task: String,
    /// When the writ stops being valid: its `expires_at` as issued, or the earlier time limit an
    /// attenuation block set (`check if time($t), $t <= ...`), whichever comes first.
    pub expires_at: SystemTime,
    /// Number of attenuation blocks appended after the authority block (an elevated writ's
    /// approval block is not one).
    pub attenuation_depth: usize,
    /// Id of the broker key that signed the authority block.
    pub root_key_id: u32,
    /// The human approval of this request: `Some` exactly when the verifier
    /// [requires approval](crate::VerifierBuilder::require_approval_for) for the request's
    /// operation (a request without evidence covering it is refused). `None` for other
    /// operations, even on an elevated writ: the evidence was not checked against them.
    pub approval: Option<ApprovalEvidence>,
    /// The revocation id of every block of the writ (`Biscuit::revocation_identifiers`),
    /// lowercase hex, the authority block's first: what a service that keeps its own
    /// revocation list (the broker does) checks, whatever the verifier's own
    /// [revocation view](crate::VerifierBuilder::revocation_feed). Revoking the authority
    /// block's id revokes every attenuation of the writ. Read from the verified token, not
    /// from anything a block states.
    pub revocation_ids: Vec<String>,
}
