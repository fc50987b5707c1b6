//! writ-verify
