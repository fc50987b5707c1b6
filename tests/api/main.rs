//! Broker tests through its public surfaces: HTTP, the CLI and the verifier SDK, against real
//! identity issuers on loopback and real SQLite and PostgreSQL databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod cli;
mod examples;
mod helpers;
mod identity;
mod issue;
mod openapi;
mod readme;
mod replicas;
mod revocation;
mod storage;
