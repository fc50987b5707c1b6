//! Root keys kept in Vault (`[keys] store = "vault"`), against a real OpenBao dev server: `writ
//! serve` creates them there and publishes them, `writ keys rotate` rotates them with
//! check-and-set, the running broker picks the new key up, and nothing lands in the key
//! directory.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use writ_testkit::{OpenBao, TestIssuer};

use crate::helpers::{ServeProcess, client, process_config, writ_command};

/// The broker's configuration in `dir`, keeping its keys in `bao` under `secret/writ/keys`.
fn vault_config(dir: &Path, bao: &OpenBao, kubernetes: &TestIssuer, github: &TestIssuer) -> String {
    use std::os::unix::fs::PermissionsExt;
    let token_file = dir.join("vault-token");
    std::fs::write(&token_file, bao.root_token()).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let database_url = format!("sqlite://{}", dir.join("writ.db").display());
    let config = process_config(dir, &database_url, kubernetes, github);
    format!(
        "{config}\n[vault]\naddress = \"{}\"\ntoken_file = \"{}\"\ntimeout = \"5s\"\n\n\
         [keys]\nstore = \"vault\"\n",
        bao.address(),
        token_file.display()
    )
}

fn writ(dir: &Path, args: &[&str]) -> Output {
    writ_command(dir).args(args).output().unwrap()
}

async fn published_kids(url: &str) -> Vec<u64> {
    let set: Value = client()
        .get(format!("{url}/.well-known/writ-keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_keys_in_vault_are_served_rotated_and_never_written_to_disk() {
    let bao = OpenBao::start().await;
    let kubernetes = TestIssuer::start().await;
    let github = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("writ.toml");
    std::fs::write(
        &config_path,
        vault_config(dir.path(), &bao, &kubernetes, &github),
    )
    .unwrap();
    let config = config_path.to_str().unwrap();

    let broker = ServeProcess::start(dir.path(), "vault-broker", &["--config", config]);
    assert_eq!(published_kids(&broker.url).await, vec![1]);
    // The keys are in the secret, the served one among them.
    let secret = bao.api("GET", "secret/data/writ/keys", None).await;
    let document = &secret["data"]["data"];
    assert_eq!(document["active"], 1);
    assert!(
        document["private_keys"]["root-1"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert!(document["private_keys"]["approval-1"].is_string());
    let served: Value = client()
        .get(format!("{}/.well-known/writ-keys", broker.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        served["keys"][0]["public_key"],
        document["keys"][0]["public_key"]
    );
    assert_eq!(
        served["approval_keys"][0]["public_key"],
        document["approval"]["public_key"]
    );

    // Rotation against the same secret, audited in the broker's database.
    let rotated = writ(dir.path(), &["keys", "rotate", "--config", config]);
    assert!(rotated.status.success(), "{rotated:?}");
    assert!(
        String::from_utf8_lossy(&rotated.stdout).starts_with("key 2 is now active"),
        "{rotated:?}"
    );
    // The running broker publishes the new key (beside the retired one) within seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let kids = published_kids(&broker.url).await;
        if kids == vec![1, 2] {
            break;
        }
        assert!(Instant::now() < deadline, "still publishing {kids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = writ(dir.path(), &["keys", "list", "--config", config]);
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("1\tretired"), "{listed}");
    assert!(listed.contains("2\tactive"), "{listed}");
    // An admin writ can be bootstrapped from the keys in Vault.
    let bootstrap = writ(
        dir.path(),
        &[
            "admin",
            "bootstrap",
            "--config",
            config,
            "--principal",
            "alice@example.com",
        ],
    );
    assert!(bootstrap.status.success(), "{bootstrap:?}");
    let inspected = writ(
        dir.path(),
        &["inspect", String::from_utf8_lossy(&bootstrap.stdout).trim()],
    );
    let inspected = String::from_utf8_lossy(&inspected.stdout);
    assert!(inspected.contains("root key     2\n"), "{inspected}");
    // Naming a key directory as well is refused: which store was meant is unclear.
    let both = writ(
        dir.path(),
        &["keys", "rotate", "--config", config, "--key-dir", "keys"],
    );
    assert!(!both.status.success());
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("keeps the keys in Vault"),
        "{both:?}"
    );

    // No private key ever touched the disk or the log.
    assert!(
        !dir.path().join("keys").exists(),
        "the key directory was created"
    );
    let secret = bao.api("GET", "secret/data/writ/keys", None).await;
    let log = std::fs::read_to_string(dir.path().join("vault-broker.log")).unwrap();
    for pem in secret["data"]["data"]["private_keys"]
        .as_object()
        .unwrap()
        .values()
    {
        let body = pem.as_str().unwrap().lines().nth(1).unwrap();
        assert!(!log.contains(body), "a private key is in the broker's log");
        for entry in walk(dir.path()) {
            let text = std::fs::read(&entry).unwrap();
            assert!(
                !String::from_utf8_lossy(&text).contains(body),
                "a private key is in {}",
                entry.display()
            );
        }
    }
    assert!(
        !log.contains(bao.root_token()),
        "the Vault token is in the log"
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_never_lose_a_key() {
    let bao = OpenBao::start().await;
    let kubernetes = TestIssuer::start().await;
    let github = TestIssuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("writ.toml");
    std::fs::write(
        &config_path,
        vault_config(dir.path(), &bao, &kubernetes, &github),
    )
    .unwrap();
    let config = config_path.to_str().unwrap().to_owned();
    // The broker creates the keys and the database the rotations are audited in.
    let broker = ServeProcess::start(dir.path(), "vault-broker", &["--config", &config]);

    let rotations: Vec<_> = (0..6)
        .map(|_| {
            let mut command = writ_command(dir.path());
            command
                .args(["keys", "rotate", "--config", &config])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    let mut won = Vec::new();
    let mut lost = 0;
    for rotation in rotations {
        let output = rotation.wait_with_output().unwrap();
        if output.status.success() {
            won.push(String::from_utf8_lossy(&output.stdout).into_owned());
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("changed while this command ran"),
                "a rotation failed otherwise: {stderr}"
            );
            lost += 1;
        }
    }
    assert!(!won.is_empty());
    println!("{lost} of 6 concurrent rotations lost the check-and-set race");
    // Every rotation that said it made a key made one that is still there: kids 1 to 1 + won.
    let secret = bao.api("GET", "secret/data/writ/keys", None).await;
    let document = &secret["data"]["data"];
    let kids: Vec<u64> = document["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=1 + won.len() as u64).collect();
    assert_eq!(kids, expected, "{lost} rotations lost: {won:?}");
    assert_eq!(document["active"], 1 + won.len() as u64);
    assert_eq!(
        document["private_keys"].as_object().unwrap().len(),
        kids.len() + 1,
        "one private key per root key, and the approval key"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while published_kids(&broker.url).await != expected {
        assert!(Instant::now() < deadline, "the broker missed a rotation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
