//! Settings the broker and its commands refuse before they can do harm: durations out of their
//! documented range, a dev issuer key others may read, a key rotation that would retire a key
//! before the writs it signed have expired.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{TestBroker, WRIT};

/// Runs `writ <args>` in `dir` and expects it to exit by itself within 15 s (a broker that starts
/// instead is killed and the test fails).
fn writ_exits(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(WRIT)
        .current_dir(dir)
        .args(args)
        .env_remove("WRIT_KEY_DIR")
        .env_remove("WRIT_DATABASE_URL")
        .env_remove("WRIT_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "writ {args:?} kept running:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const POLICY: &str = "[[policy]]\nname = \"p\"\nissuer = \"k8s\"\nresources = [\"orders/*\"]\n\
                      operations = [\"read\"]\nservices = [\"orders-api\"]\nmax_ttl = \"5m\"\n";

/// A configuration with one issuer (nothing listens on port 9) and `extra` lines: the top-level
/// ones before the issuer table, `issuer_extra` inside it.
fn write_config(dir: &Path, extra: &str, issuer_extra: &str) -> String {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/p.toml"), POLICY).unwrap();
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{db}\"\nkey_dir = \"{keys}\"\n\
         policy_dir = \"{policies}\"\n{extra}\n\
         [[issuer]]\nname = \"k8s\"\nissuer = \"http://127.0.0.1:9\"\naudience = \"writ\"\n\
         agent = \"k8s:{{sub}}\"\n{issuer_extra}\n",
        db = dir.join("writ.db").display(),
        keys = dir.join("keys").display(),
        policies = dir.join("policies").display(),
    );
    let path = dir.join("writ.toml");
    std::fs::write(&path, config).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn serve_refuses_durations_out_of_their_range_by_name() {
    for (extra, issuer_extra, expected) in [
        (
            "",
            "jwks_refresh = \"0s\"",
            "issuer \"k8s\": jwks_refresh = \"0s\" is out of range: it must be between 30s and 1day",
        ),
        (
            "",
            "jwks_refresh = \"30days\"",
            "jwks_refresh = \"30days\" is out of range",
        ),
        (
            "",
            "jwks_min_refetch_interval = \"0s\"",
            "issuer \"k8s\": jwks_min_refetch_interval = \"0s\" is out of range: it must be between 1s and 5m",
        ),
        (
            "",
            "jwks_min_refetch_interval = \"1h\"",
            "jwks_min_refetch_interval = \"1h\" is out of range",
        ),
        (
            "max_ttl = \"5s\"",
            "",
            "max_ttl = \"5s\" is out of range: it must be between 10s and 1h",
        ),
        (
            "clock_skew = \"10m\"",
            "",
            "clock_skew = \"10m\" is out of range: it must be between 0s and 5m",
        ),
        (
            "revocation_poll = \"0s\"",
            "",
            "revocation_poll = \"0s\" is out of range: it must be between 100ms and 1m",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), extra, issuer_extra);
        let output = writ_exits(dir.path(), &["serve", "--config", &config]);
        assert!(!output.status.success(), "{output:?}");
        assert!(
            stderr(&output).contains(expected),
            "expected {expected:?} in:\n{}",
            stderr(&output)
        );
        assert!(
            !dir.path().join("writ.db").exists(),
            "refused before anything was created"
        );
    }
    // The defaults and the range's ends start.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "",
        "jwks_refresh = \"30s\"\njwks_min_refetch_interval = \"1s\"",
    );
    let server = crate::helpers::ServeProcess::start(dir.path(), "serve", &["--config", &config]);
    drop(server);
}

#[tokio::test]
async fn key_rotation_keeps_the_retired_key_as_long_as_writs_it_signed_live() {
    let broker = TestBroker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_dir = broker.key_dir();
    let key_dir = key_dir.to_str().unwrap();
    let files = [
        "--key-dir",
        key_dir,
        "--database-url",
        broker.database_url.as_str(),
    ];
    let rotate = |retain: &str, extra: &[&str]| {
        writ_exits(
            dir.path(),
            &[
                &["keys", "rotate", "--retain-for", retain][..],
                &files,
                extra,
            ]
            .concat(),
        )
    };
    for (retain, expected) in [
        (
            "6s",
            "--retain-for 6s is out of range: it must be between 1h 5m",
        ),
        ("1h", "--retain-for 1h is out of range"),
        ("8days", "--retain-for 8days is out of range"),
    ] {
        let refused = rotate(retain, &[]);
        assert!(!refused.status.success(), "{refused:?}");
        assert!(stderr(&refused).contains(expected), "{}", stderr(&refused));
    }
    // With the broker's configuration (max_ttl 10m, clock_skew 30s), down to 10m 30s.
    let config = dir.path().join("writ.toml");
    std::fs::write(&config, "max_ttl = \"10m\"\nclock_skew = \"30s\"\n").unwrap();
    let config = config.to_str().unwrap();
    let refused = rotate("10m", &["--config", config]);
    assert!(
        stderr(&refused).contains("--retain-for 10m is out of range: it must be between 10m 30s"),
        "{}",
        stderr(&refused)
    );
    let listed = writ_exits(dir.path(), &["keys", "list", "--key-dir", key_dir]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).starts_with("1\tactive"),
        "nothing was rotated: {listed:?}"
    );
    let rotated = rotate("10m30s", &["--config", config]);
    assert!(rotated.status.success(), "{rotated:?}");
    assert!(String::from_utf8_lossy(&rotated.stdout).contains("key 2 is now active"));
    broker.stop().await;
}

/// The dev issuer's key signs identities a dev broker trusts: like a root key, it is refused when
/// group or others may read it, by `writ dev token` and by `writ serve --dev`.
#[test]
fn a_dev_issuer_key_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_dir = dir.path().join("keys");
    // A broker's key directory, as `writ serve --dev` leaves it.
    writ::keys::KeyDir::open_or_init(&key_dir).unwrap();
    let key_dir = key_dir.to_str().unwrap();
    let token = |dir: &Path| {
        writ_exits(
            dir,
            &["dev", "token", "--subject", "a", "--key-dir", key_dir],
        )
    };
    assert!(token(dir.path()).status.success());
    let key = dir.path().join("keys/dev-issuer.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let refused = token(dir.path());
        assert!(!refused.status.success(), "mode {mode:o}: {refused:?}");
        assert!(refused.stdout.is_empty(), "no token printed");
        assert!(
            stderr(&refused).contains("accessible to other users")
                && stderr(&refused).contains("chmod 600"),
            "{}",
            stderr(&refused)
        );
    }
    let serve = writ_exits(
        dir.path(),
        &[
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--key-dir",
            key_dir,
        ],
    );
    assert!(!serve.status.success(), "{serve:?}");
    assert!(
        stderr(&serve).contains("dev-issuer.pem") && stderr(&serve).contains("chmod 600"),
        "{}",
        stderr(&serve)
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(token(dir.path()).status.success());
}
