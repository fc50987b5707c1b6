//! The Vault/OpenBao exchange: a dynamic secret whose lease is shortened to the writ's
//! remaining life.

use std::time::SystemTime;

use writ_verify::ResourcePattern;

use super::{ExchangeError, Exchanged, Issued, VaultExchange, unix_seconds};
use crate::broker::Broker;
use crate::exchange::{
    Credential, ExchangeKind, ExchangeRecord, UpstreamError, VaultRole, scope_hash,
};
use crate::store::Store;

impl Broker {
    /// Exchanges `writ` for a credential of the Vault role `name`: the writ must grant the
    /// role's operation on its resource.
    pub async fn exchange_vault(&self, writ: &str, name: &str) -> Result<Exchanged, ExchangeError> {
        let result = self.exchange_vault_unrecorded(writ, name).await;
        if let Err(error) = &result {
            self.record_refusal(writ, error).await;
        }
        result
    }

    async fn exchange_vault_unrecorded(
        &self,
        writ: &str,
        name: &str,
    ) -> Result<Exchanged, ExchangeError> {
        let (vault, role) = self.exchanges.vault_role(name)?;
        let pattern = ResourcePattern::parse(&role.resource)
            .map_err(|error| ExchangeError::Scope(error.to_string()))?;
        let grant = self
            .verify_presented(writ, &pattern, &role.operation)
            .await?;
        let scope = scope_hash(&[role.path.as_str()]);
        self.exchange_once(&grant, ExchangeKind::Vault, name, scope, |record| {
            read_vault_credential(&self.store, vault, role, record)
        })
        .await
    }
}

pub(super) fn vault_error(error: crate::vault::VaultError) -> UpstreamError {
    let detail = error.to_string();
    match error.is_unavailable() {
        true => UpstreamError::Unreachable {
            upstream: "Vault",
            detail,
        },
        false => UpstreamError::Refused {
            upstream: "Vault",
            detail,
        },
    }
}

/// Reads a dynamic secret for `role` and bounds its lease by the writ's remaining life: Vault
/// takes no ttl when reading database credentials, but renewing with a smaller increment
/// shortens the lease (and the database user's validity). If the lease cannot be bounded, it
/// is revoked and nothing is answered.
async fn read_vault_credential(
    store: &Store,
    vault: &VaultExchange,
    role: &VaultRole,
    record: ExchangeRecord,
) -> Result<Issued, UpstreamError> {
    let secret = vault
        .client
        .read_dynamic(&role.path)
        .await
        .map_err(vault_error)?;
    let lease = secret.lease_id.clone();
    // Recorded before anything else, so that a broker stopping now leaves a lease it can
    // still revoke; measured after the read, so that the lease ends with the writ, not later.
    let recorded = store.record_pending_handle(&record.id, &lease).await;
    let now = unix_seconds(SystemTime::now());
    let remaining = (record.writ_expires_at - now).max(1);
    let bounded = match recorded {
        Ok(true) => bound_lease(vault, &secret, remaining).await,
        Ok(false) | Err(_) => Err(UpstreamError::Refused {
            upstream: "Vault",
            detail: "the lease could not be recorded".into(),
        }),
    };
    let granted = match bounded {
        Ok(granted) => granted,
        Err(error) => {
            if let Err(undo) = vault.client.revoke_lease(&lease).await {
                tracing::error!(%undo, "a lease that outlived its writ could not be revoked");
            }
            return Err(error);
        }
    };
    let expires_at = now + granted;
    let mut credential = serde_json::Map::new();
    credential.insert("exchange_id".into(), record.id.into());
    credential.insert("lease_duration".into(), granted.into());
    credential.insert("expires_at".into(), crate::time::rfc3339(expires_at).into());
    credential.insert(
        "data".into(),
        serde_json::Value::Object(secret.data.clone()),
    );
    Ok(Issued {
        handle: lease,
        credential: Credential(credential),
        expires_at,
    })
}

/// Shortens the lease of `secret` to at most `remaining` seconds; answers the seconds granted.
async fn bound_lease(
    vault: &VaultExchange,
    secret: &crate::vault::DynamicSecret,
    remaining: i64,
) -> Result<i64, UpstreamError> {
    let current = i64::try_from(secret.lease_duration.as_secs()).unwrap_or(i64::MAX);
    if current <= remaining {
        return Ok(current);
    }
    let increment = std::time::Duration::from_secs(u64::try_from(remaining).unwrap_or(1));
    let granted = vault
        .client
        .renew_lease(&secret.lease_id, increment)
        .await
        .map_err(vault_error)?;
    let granted = i64::try_from(granted.as_secs()).unwrap_or(i64::MAX);
    if granted > remaining {
        return Err(UpstreamError::Refused {
            upstream: "Vault",
            detail: format!(
                "the lease could not be shortened to {remaining}s (granted {granted}s)"
            ),
        });
    }
    Ok(granted)
}
