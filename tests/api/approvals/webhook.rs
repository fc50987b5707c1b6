//! The approvers' webhook against a real receiver on loopback: signed, retried, audited.
