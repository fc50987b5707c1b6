//! Taking back what revoked writs were exchanged for, and keeping the upstreams tidy: leases
//! of unfinished exchanges revoked, AWS deny statements added, kept and removed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::future::join_all;
use serde_json::json;
use writ_verify::{RevocationView, WritIdentity};

use super::{ExchangeError, exchange_event, unix_seconds};
use crate::audit::{Outcome, actions};
use crate::broker::Broker;
use crate::error::DomainError;
use crate::exchange::{ExchangeKind, ExchangeRecord};
use crate::store::{LiveExchange, StoreError};

/// Withdrawals in flight at once in one pass.
pub const WITHDRAW_CONCURRENCY: usize = 16;

/// A reservation this old that never finished is taken to be abandoned (an exchange is cut
/// off far sooner: Vault's and AWS's own timeouts are seconds).
pub const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

/// How often the withdrawal pass runs without a revocation to wake it (retries, AWS deny
/// statements that are no longer needed).
pub const WITHDRAW_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

impl Broker {
    /// Runs [`withdraw_revoked`](Self::withdraw_revoked) whenever the revocation view changes,
    /// and every [`WITHDRAW_RETRY`] regardless (to retry what failed), until aborted.
    pub async fn keep_withdrawing(self: Arc<Self>) {
        let mut changed = self.revocations.subscribe();
        loop {
            match self.withdraw_revoked().await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "revoked writs' credentials taken back"),
                Err(error) => {
                    tracing::warn!(%error, "revoked writs' credentials not taken back yet")
                }
            }
            // Either wakes the next pass; a closed channel leaves the timer.
            let _ = tokio::time::timeout(WITHDRAW_RETRY, changed.changed()).await;
        }
    }

    /// Every [`WITHDRAW_RETRY`], until aborted: closes exchanges the broker never finished
    /// ([`close_abandoned`](Self::close_abandoned)) and keeps AWS deny statements as they must
    /// be. Apart from [`keep_withdrawing`](Self::keep_withdrawing), so that an upstream out
    /// of reach here never delays a revocation there.
    pub async fn keep_tidy(self: Arc<Self>) {
        let mut tick = tokio::time::interval(WITHDRAW_RETRY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = self.close_abandoned().await {
                tracing::warn!(%error, "unfinished exchanges not closed yet");
            }
            if let Err(error) = self.maintain_aws_denies().await {
                tracing::warn!(%error, "AWS deny statements not maintained yet");
            }
        }
    }

    /// Takes back what exchanges reserved more than [`ABANDONED_AFTER`] ago and never
    /// finished (the broker stopped between asking the upstream and recording the answer): a
    /// Vault lease whose id was recorded is revoked and the reservation dropped; an AWS
    /// reservation is closed as withdrawn, every session of its writ denied on the role until
    /// the longest session STS could have issued has ended. A Vault lease whose id was never
    /// recorded cannot be found: it ends with its own TTL, and the log says so.
    async fn close_abandoned(&self) -> Result<(), StoreError> {
        let now = unix_seconds(SystemTime::now());
        let stale = self
            .store
            .stale_pending_exchanges(now - ABANDONED_AFTER.as_secs() as i64)
            .await?;
        for record in stale {
            let event = exchange_event(&record, actions::EXCHANGE_FAILED, Outcome::Failed)
                .with_reason("exchange_abandoned")
                .with_details(json!({"exchange_id": record.id, "kind": record.kind.as_str(), "target": record.target}));
            match record.kind {
                ExchangeKind::Vault => {
                    match (&record.handle, self.exchanges.vault_role(&record.target)) {
                        (Some(lease), Ok((vault, _))) => {
                            if let Err(error) = vault.client.revoke_lease(lease).await {
                                tracing::warn!(exchange = %record.id, %error, "an unfinished exchange's lease not revoked yet");
                                continue;
                            }
                        }
                        _ => {
                            tracing::error!(exchange = %record.id, "an unfinished Vault exchange left no lease id; its lease ends with its own TTL")
                        }
                    }
                    self.store.abandon_exchange(&record.id, event).await?;
                }
                ExchangeKind::Aws => {
                    let Ok((aws, role)) = self.exchanges.aws_role(&record.target) else {
                        continue;
                    };
                    let until = record.created_at
                        + i64::try_from(role.max_session.as_secs()).unwrap_or(i64::MAX / 2);
                    if let Err(error) = aws
                        .deny_writ(
                            &record.target,
                            &record.writ_id,
                            crate::time::from_unix_seconds(until),
                        )
                        .await
                    {
                        tracing::warn!(exchange = %record.id, %error, "an unfinished exchange's sessions not denied yet");
                        continue;
                    }
                    self.store
                        .close_abandoned_exchange(&record.id, now, until, event)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// One pass of taking back what revoked writs were exchanged for: every live exchange whose
    /// writ, task or agent the revocation view revokes is withdrawn upstream and recorded; a
    /// failure is recorded (the first one audited) and retried on the next pass.
    pub async fn withdraw_revoked(&self) -> Result<usize, StoreError> {
        let verifier = match self.exchange_verifier().await {
            Ok(verifier) => verifier,
            Err(_) => return Ok(0),
        };
        let now = SystemTime::now();
        let mut withdrawn = 0;
        let mut after = String::new();
        loop {
            let page = self.store.live_exchanges(unix_seconds(now), &after).await?;
            let Some(last) = page.last() else { break };
            after = last.record.id.clone();
            let full = page.len() == crate::store::EXCHANGE_PAGE as usize;
            // Concurrently, so that one upstream out of reach (each call cut off after seconds)
            // does not hold back what the others can take back now.
            let revoked: Vec<ExchangeRecord> = page
                .into_iter()
                .filter(|live| is_revoked(&verifier.view, live))
                .map(|live| live.record)
                .collect();
            for batch in revoked.chunks(WITHDRAW_CONCURRENCY) {
                let results = join_all(batch.iter().map(|record| self.withdraw(record))).await;
                for result in results {
                    withdrawn += usize::from(result?);
                }
            }
            if !full {
                break;
            }
        }
        Ok(withdrawn)
    }

    /// Keeps each AWS role's deny statements as the withdrawn exchanges need them: a statement
    /// whose credentials have expired is removed; one still needed but missing (another replica
    /// wrote the policy at the same moment: IAM has no check-and-set) is written again.
    async fn maintain_aws_denies(&self) -> Result<(), StoreError> {
        let Some(aws) = &self.exchanges.aws else {
            return Ok(());
        };
        let now = unix_seconds(SystemTime::now());
        let withdrawn = self.store.aws_denies().await?;
        let mut roles: BTreeMap<&str, (Vec<&ExchangeRecord>, Vec<String>)> = BTreeMap::new();
        for record in &withdrawn {
            let (ended, needed) = roles.entry(record.target.as_str()).or_default();
            match record.deny_until.unwrap_or(record.expires_at) <= now {
                true => ended.push(record),
                false => needed.push(record.writ_id.clone()),
            }
        }
        for (role, (ended, needed)) in roles {
            if !ended.is_empty() {
                match aws.prune_denies(role, SystemTime::now()).await {
                    Ok(()) => {
                        for record in ended {
                            self.store.record_deny_removed(&record.id, now).await?;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(role, %error, "expired AWS deny statements not removed yet")
                    }
                }
            }
            if needed.is_empty() {
                continue;
            }
            let missing = match aws.missing_denies(role, &needed).await {
                Ok(missing) => missing,
                Err(error) => {
                    tracing::warn!(role, %error, "AWS deny statements not checked");
                    continue;
                }
            };
            for writ_id in missing {
                let until = withdrawn
                    .iter()
                    .filter(|record| record.writ_id == writ_id && record.target == role)
                    .filter_map(|record| record.deny_until)
                    .max()
                    .unwrap_or(now);
                tracing::warn!(
                    role,
                    writ_id,
                    "an AWS deny statement was lost; writing it again"
                );
                if let Err(error) = aws
                    .deny_writ(role, &writ_id, crate::time::from_unix_seconds(until))
                    .await
                {
                    tracing::warn!(role, %error, "an AWS deny statement could not be written again");
                }
            }
        }
        Ok(())
    }

    async fn withdraw(&self, record: &ExchangeRecord) -> Result<bool, StoreError> {
        let now = unix_seconds(SystemTime::now());
        match self.take_back(record).await {
            Ok(deny_until) => {
                let event = exchange_event(record, actions::EXCHANGE_WITHDRAWN, Outcome::Success)
                    .with_details(json!({"exchange_id": record.id, "kind": record.kind.as_str(), "target": record.target}));
                self.store
                    .record_exchange_withdrawn(&record.id, now, deny_until, event)
                    .await
            }
            Err(error) => {
                tracing::warn!(exchange = %record.id, %error, "a revoked writ's credential could not be taken back yet; retrying");
                let event = record.withdraw_error.is_none().then(|| {
                    exchange_event(record, actions::EXCHANGE_WITHDRAW_FAILED, Outcome::Failed)
                        .with_reason(ExchangeError::Upstream(error.clone()).code().name)
                });
                self.store
                    .record_withdraw_failure(&record.id, &error.to_string(), event)
                    .await?;
                Ok(false)
            }
        }
    }
}

fn is_revoked(view: &RevocationView, live: &LiveExchange) -> bool {
    let revocation_ids = [live.writ_revocation_id.clone()];
    let identity = WritIdentity {
        writ_id: &live.record.writ_id,
        agent: &live.record.agent,
        task: &live.record.task,
        issued_at: crate::time::from_unix_seconds(live.writ_issued_at),
        revocation_ids: &revocation_ids,
    };
    view.is_revoked(&identity).is_some()
}
