//! The schema migrations under `migrations/`, embedded in the binary, one set per database.
//!
//! Built with sqlx's runtime API rather than its `migrate!` macro: the macro needs sqlx's
//! `macros` feature, which compiles sqlx and the bundled SQLite a second time for the compiler
//! host, minutes of a cold build. Versions, descriptions and checksums are the ones the macro
//! computes (a test compares them with sqlx reading the directories), so databases migrated
//! before stay valid. A new migration file is added to its list below; a test fails until it is.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, SqlSafeStr};

macro_rules! embedded {
    ($database:literal: $($file:literal),+ $(,)?) => {
        &[$((
            $file,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $database, "/", $file)),
        )),+]
    };
}

/// `(file name, SQL)` of `migrations/sqlite`.
pub const SQLITE: &[(&str, &str)] = embedded!("sqlite":
    "0001_writs.sql",
    "0002_audit_revocations.sql",
    "0003_checkpoints_append_only.sql",
    "0004_approvals.sql",
    "0005_policy_hash.sql",
    "0006_exchanges.sql",
);

/// `(file name, SQL)` of `migrations/postgres`.
pub const POSTGRES: &[(&str, &str)] = embedded!("postgres":
    "0001_writs.sql",
    "0002_audit_revocations.sql",
    "0003_checkpoints_append_only.sql",
    "0004_approvals.sql",
    "0005_policy_hash.sql",
    "0006_exchanges.sql",
);

/// The SQLite migrations.
pub fn sqlite() -> Migrator {
    migrator(SQLITE)
}

/// The PostgreSQL migrations.
pub fn postgres() -> Migrator {
    migrator(POSTGRES)
}

/// A migrator for `files`, named `<version>_<description>.sql` as sqlx reads a directory.
fn migrator(files: &[(&str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .filter_map(|(name, sql)| migration(name, sql))
            .collect(),
    )
}

/// One migration as sqlx's directory reader makes it; `None` for a name it would ignore (the
/// tests make sure every listed file is a migration).
fn migration(name: &str, sql: &'static str) -> Option<Migration> {
    let (version, rest) = name.split_once('_')?;
    let version: i64 = version.parse().ok()?;
    let migration_type = MigrationType::from_filename(rest);
    let description = rest
        .trim_end_matches(migration_type.suffix())
        .replace('_', " ");
    Some(Migration::new(
        version,
        Cow::Owned(description),
        migration_type,
        AssertSqlSafe(sql).into_sql_str(),
        sql.starts_with("-- no-transaction"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every file of the directory is listed, and each migration is the one sqlx's directory
    /// reader (what `migrate!` embeds) makes of it: same version, description, type, checksum.
    #[tokio::test]
    async fn the_embedded_migrations_are_the_directories() {
        for (database, embedded) in [("sqlite", sqlite()), ("postgres", postgres())] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(database);
            let read = Migrator::new(dir.as_path()).await.unwrap();
            let describe = |migrator: &Migrator| {
                migrator
                    .iter()
                    .map(|m| {
                        (
                            m.version,
                            m.description.to_string(),
                            m.migration_type,
                            m.checksum.to_vec(),
                            m.no_tx,
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(describe(&embedded), describe(&read), "{database}");
            assert!(!describe(&embedded).is_empty());
        }
        assert_eq!(
            SQLITE.len(),
            std::fs::read_dir("migrations/sqlite").unwrap().count()
        );
        assert_eq!(
            POSTGRES.len(),
            std::fs::read_dir("migrations/postgres").unwrap().count()
        );
    }
}
