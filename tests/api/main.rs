//! Broker tests through its public surfaces: HTTP, the CLI and the verifier SDK, against real
//! identity issuers on loopback and real SQLite and PostgreSQL databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod approvals;
mod audit;
mod browser;
mod cli;
mod crash;
mod examples;
mod exchange_aws;
mod exchange_cli;
mod exchange_vault;
mod hardening;
mod helpers;
mod hostile_inputs;
mod identity;
mod issue;
mod openapi;
mod page;
mod policy;
mod policy_reload;
mod readme;
mod replicas;
mod revocation;
mod settings;
mod storage;
mod vault_keys;
