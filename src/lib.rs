//! writ: a credential broker for AI agents.
//!
//! An agent proves who it is with its workload identity (a JWT from Kubernetes, GitHub Actions,
//! SPIFFE or any OIDC issuer) and receives a *writ*: a short-lived Biscuit token scoped to one
//! task, a set of resources and operations, and the services that may accept it. Downstream
//! services verify writs offline with the `writ-verify` crate.
//!
//! The modules follow the path of a request:
//! - [`http`]: the axum surface; thin handlers, errors mapped to problem+json in one place.
//! - [`broker`]: issuance, the one path by which a writ leaves the broker.
//! - [`identity`]: workload tokens in, a verified [`identity::Identity`] out.
//! - [`policy`]: policy files and the pure decision: which identity may ask for what.
//! - [`mint`]: the writ format, signed with the active root key.
//! - [`keys`]: root keys on disk, rotation, the published key set.
//! - [`store`]: durable records behind one trait, SQLite or PostgreSQL.
//! - [`config`], [`app`]: configuration and assembly; [`cli`]: the `writ` command.
//!
//! Domain modules know nothing of HTTP or SQL.

pub mod admin;
pub mod app;
pub mod audit;
pub mod broker;
pub mod cli;
pub mod config;
pub mod http;
pub mod identity;
pub mod keys;
pub mod migrations;
pub mod mint;
pub mod policy;
pub mod revocation;
pub mod store;
