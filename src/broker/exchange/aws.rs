//! The AWS exchange: a writ's rights within an IAM role become an STS session scoped by a
//! session policy that ends with the writ.

use writ_verify::{Denial, Grant, ResourcePattern, RightResource};

use super::{ExchangeError, Exchanged, Issued, unix_seconds};
use crate::broker::Broker;
use crate::exchange::aws::{
    AssumeRequest, AwsExchange, AwsExchangeError, AwsRoleConfig, policy as aws_policy,
};
use crate::exchange::{Credential, ExchangeKind, ExchangeRecord, UpstreamError, scope_hash};
use crate::store::RightRecord;

/// Most rights one AWS exchange may ask for (a session policy holds at most 2048 characters
/// anyway).
pub const MAX_AWS_RIGHTS: usize = 32;

impl Broker {
    /// Exchanges `writ` for AWS credentials of the role `name`, with a session policy granting
    /// `rights` (each must be granted by the writ whole, attenuations included), or, when no
    /// rights are asked, every right of the writ within the role's resources that the writ
    /// still grants.
    pub async fn exchange_aws(
        &self,
        writ: &str,
        name: &str,
        rights: Option<Vec<RightRecord>>,
    ) -> Result<Exchanged, ExchangeError> {
        let result = self.exchange_aws_unrecorded(writ, name, rights).await;
        if let Err(error) = &result {
            self.record_refusal(writ, error).await;
        }
        result
    }

    async fn exchange_aws_unrecorded(
        &self,
        writ: &str,
        name: &str,
        rights: Option<Vec<RightRecord>>,
    ) -> Result<Exchanged, ExchangeError> {
        let (aws, role) = self.exchanges.aws_role(name)?;
        let (grant, granted) = match rights {
            Some(rights) => self.aws_rights_asked(writ, role, &rights).await?,
            None => self.aws_rights_held(writ, role).await?,
        };
        let expires_at = grant.expires_at;
        aws_policy::session_policy_in(role.partition(), &granted, expires_at)
            .map_err(|error| ExchangeError::Scope(error.to_string()))?;
        let scope = scope_hash(
            &granted
                .iter()
                .map(|(pattern, operation)| format!("{pattern} {operation}"))
                .collect::<Vec<_>>(),
        );
        self.exchange_once(&grant, ExchangeKind::Aws, name, scope, |record| {
            assume_role(aws, name, record, granted)
        })
        .await
    }

    /// Each right asked must lie within the role's resources and be granted whole by the writ.
    async fn aws_rights_asked(
        &self,
        writ: &str,
        role: &AwsRoleConfig,
        rights: &[RightRecord],
    ) -> Result<(Grant, Vec<(ResourcePattern, String)>), ExchangeError> {
        let mut asked = Vec::new();
        for right in rights {
            let pattern = ResourcePattern::parse(&right.resource)
                .map_err(|error| ExchangeError::Scope(format!("{}: {error}", right.resource)))?;
            for operation in &right.operations {
                asked.push((pattern.clone(), operation.clone()));
            }
        }
        asked.sort();
        asked.dedup();
        if asked.is_empty() || asked.len() > MAX_AWS_RIGHTS {
            return Err(ExchangeError::Scope(format!(
                "ask for 1 to {MAX_AWS_RIGHTS} rights (resource and operation pairs)"
            )));
        }
        if let Some((pattern, _)) = asked.iter().find(|right| {
            aws_policy::within_role(&role.resources, &[(*right).clone()]) != [(*right).clone()]
        }) {
            return Err(ExchangeError::Scope(format!(
                "{pattern} is not within the resources AWS role {:?} serves",
                role.name
            )));
        }
        let mut grant = None;
        for (pattern, operation) in &asked {
            grant = Some(self.verify_presented(writ, pattern, operation).await?);
        }
        let grant = grant.ok_or_else(|| ExchangeError::Scope("no rights asked".into()))?;
        Ok((grant, asked))
    }

    /// The writ's own rights within the role's resources, each kept if the writ (attenuations
    /// included) still grants it whole. The authority block's rights are read only after the
    /// writ verified: they are then the ones the broker signed.
    async fn aws_rights_held(
        &self,
        writ: &str,
        role: &AwsRoleConfig,
    ) -> Result<(Grant, Vec<(ResourcePattern, String)>), ExchangeError> {
        let first = role
            .resources
            .first()
            .ok_or_else(|| ExchangeError::Scope("the role serves no resources".into()))?;
        let signed = match writ_verify::inspect(writ) {
            Ok(inspection) => inspection.rights,
            Err(_) => Vec::new(),
        };
        let held: Vec<(ResourcePattern, String)> = signed
            .iter()
            .filter_map(|right| {
                let text = match &right.resource {
                    RightResource::Exact(resource) => resource.clone(),
                    RightResource::Prefix(prefix) => format!("{prefix}*"),
                };
                Some((ResourcePattern::parse(&text).ok()?, right.operation.clone()))
            })
            .collect();
        let candidates = aws_policy::within_role(&role.resources, &held);
        let mut granted = Vec::new();
        let mut grant = None;
        let mut first_refusal = None;
        for (pattern, operation) in candidates {
            match self.verify_presented(writ, &pattern, &operation).await {
                Ok(verified) => {
                    grant = Some(verified);
                    granted.push((pattern, operation));
                }
                Err(error) => {
                    first_refusal.get_or_insert(error);
                }
            }
        }
        match (grant, first_refusal) {
            (Some(grant), _) => Ok((grant, granted)),
            (None, Some(refusal)) => Err(refusal),
            // Nothing of the role's in the writ: verify it anyway, so that a writ that does
            // not verify is refused as such, and one that does is told it grants nothing here.
            (None, None) => Err(self
                .verify_presented(writ, first, "read")
                .await
                .err()
                .unwrap_or(ExchangeError::Writ(Denial::NotPermitted))),
        }
    }
}

pub(super) fn aws_error(error: AwsExchangeError) -> UpstreamError {
    let detail = error.to_string();
    match error {
        AwsExchangeError::Unavailable { .. } => UpstreamError::Unreachable {
            upstream: "AWS",
            detail,
        },
        _ => UpstreamError::Refused {
            upstream: "AWS",
            detail,
        },
    }
}

/// Assumes the AWS role `name` for the reserved exchange `record`, granting `granted`, and
/// answers the credentials in the `credential_process` format. The expiration told to the
/// caller is the writ's: the session policy denies everything after it, even while STS still
/// holds the session (STS's minimum is 15 minutes).
async fn assume_role(
    aws: &AwsExchange,
    name: &str,
    record: ExchangeRecord,
    granted: Vec<(ResourcePattern, String)>,
) -> Result<Issued, UpstreamError> {
    let request = AssumeRequest {
        writ_id: record.writ_id.clone(),
        task: record.task.clone(),
        agent: record.agent.clone(),
        rights: granted,
        writ_expires_at: crate::time::from_unix_seconds(record.writ_expires_at),
    };
    let issued = aws.assume(name, &request).await.map_err(aws_error)?;
    let mut credential = serde_json::Map::new();
    credential.insert("Version".into(), 1.into());
    credential.insert("AccessKeyId".into(), issued.access_key_id.clone().into());
    credential.insert(
        "SecretAccessKey".into(),
        issued.secret_access_key.clone().into(),
    );
    credential.insert("SessionToken".into(), issued.session_token.clone().into());
    credential.insert(
        "Expiration".into(),
        crate::time::rfc3339(unix_seconds(issued.expiration)).into(),
    );
    Ok(Issued {
        handle: issued.assumed_role_arn.clone().unwrap_or_default(),
        credential: Credential(credential),
        expires_at: unix_seconds(issued.sts_expiration),
    })
}
