//! writ: a credential broker for AI agents.
//!
//! An agent proves who it is with its workload identity (a JWT from Kubernetes, GitHub Actions,
//! SPIFFE or any OIDC issuer) and receives a *writ*: a short-lived Biscuit token scoped to one
//! task, a set of resources and operations, and the services that may accept it. Downstream
//! services verify writs offline with the `writ-verify` crate.
//!
//! The modules follow the path of a request, each importing only those below it (see
//! `ARCHITECTURE.md` for the map and the pattern a new route follows):
//! - [`http`]: the axum surface: the route table, extractors for who is calling, thin handlers,
//!   errors mapped to problem+json in one place.
//! - [`broker`]: the operations (issuance, admin calls, audit reads), each audited; the one face
//!   the HTTP layer sees.
//! - Domain, free of HTTP and SQL: [`identity`] (workload tokens in, a verified identity out),
//!   [`policy`] (which identity may ask for what), [`mint`] (the writ format), [`admin`] (admin
//!   writs), [`keys`] (root keys and the published key set), [`revocation`] (entries, their
//!   rules and the live view), [`audit`] (the hash-chained log), [`approval`] (human approval
//!   of high-risk requests) and [`login`] (approvers logging in to the approval page).
//! - [`store`]: durable records behind one handle, SQLite or PostgreSQL; it runs the rules it is
//!   given inside its transactions.
//! - Shared by all: [`error`] (every stable error code and its kind), [`time`], [`id`],
//!   [`config`]; [`app`] assembles the broker and [`cli`] is the `writ` command.

pub mod admin;
pub mod app;
pub mod approval;
pub mod audit;
pub mod broker;
pub mod cli;
pub mod config;
pub mod error;
pub mod exchange;
pub mod http;
pub mod id;
pub mod identity;
pub mod keys;
pub mod login;
pub mod migrations;
pub mod mint;
pub mod policy;
pub mod revocation;
pub mod store;
pub mod time;
