//! Claim sets shaped like the workload identity tokens the broker accepts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Seconds since the Unix epoch, as JWT `NumericDate`s are written.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `iss`, `sub`, `aud` (a string), `iat` = `nbf` = now and `exp` = now + `ttl`, in unix seconds.
/// Mutate the result to build edge cases (expired, not yet valid, audience arrays, ...).
pub fn claims_base(iss: &str, sub: &str, aud: &str, ttl: Duration) -> Value {
    let now = now_unix();
    json!({
        "iss": iss,
        "sub": sub,
        "aud": aud,
        "iat": now,
        "nbf": now,
        "exp": now + ttl.as_secs(),
    })
}

/// A projected service account token: `aud` is an array, identity sits under `kubernetes.io`.
/// UIDs and the pod name are derived from namespace and service account, so they are stable.
pub(crate) fn kubernetes(
    iss: &str,
    namespace: &str,
    service_account: &str,
    audience: &str,
    ttl: Duration,
) -> Value {
    let sub = format!("system:serviceaccount:{namespace}:{service_account}");
    let mut claims = claims_base(iss, &sub, audience, ttl);
    claims["aud"] = json!([audience]);
    claims["kubernetes.io"] = json!({
        "namespace": namespace,
        "serviceaccount": {
            "name": service_account,
            "uid": uuid_from(&format!("serviceaccount/{namespace}/{service_account}")),
        },
        "pod": {
            "name": format!("{service_account}-0"),
            "uid": uuid_from(&format!("pod/{namespace}/{service_account}")),
        },
    });
    claims
}

/// A GitHub Actions OIDC token: `aud` is a string, `sub` is `repo:<repo>:ref:<ref>`.
/// `jti` is unique per token (replay tests need that); everything else is derived from the inputs.
pub(crate) fn github(
    iss: &str,
    repository: &str,
    workflow: &str,
    git_ref: &str,
    audience: &str,
    ttl: Duration,
) -> Value {
    static JTI: AtomicU64 = AtomicU64::new(0);
    let sub = format!("repo:{repository}:ref:{git_ref}");
    let owner = repository.split('/').next().unwrap_or(repository);
    let workflow_file = workflow.to_lowercase().replace(' ', "-");
    let digest = hex(&Sha256::digest(format!("{repository}@{git_ref}")));
    let mut claims = claims_base(iss, &sub, audience, ttl);
    let extra = json!({
        "repository": repository,
        "repository_owner": owner,
        "workflow": workflow,
        "ref": git_ref,
        "ref_type": if git_ref.starts_with("refs/tags/") { "tag" } else { "branch" },
        "sha": &digest[..40],
        "job_workflow_ref": format!("{repository}/.github/workflows/{workflow_file}.yml@{git_ref}"),
        "event_name": "push",
        "run_id": u64::from_str_radix(&digest[..8], 16).unwrap_or(1).to_string(),
        "jti": format!("{}-{}", now_unix(), JTI.fetch_add(1, Ordering::Relaxed)),
    });
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    claims
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A UUID-shaped string derived from `seed` (Kubernetes UIDs are UUIDs).
fn uuid_from(seed: &str) -> String {
    let h = hex(&Sha256::digest(seed));
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
