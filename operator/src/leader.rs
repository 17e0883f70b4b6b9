//! Leader election over a `coordination.k8s.io/v1` Lease, so two operator
//! replicas can run and only one reconciles.
//!
//! The holder renews the lease every `duration / 3`; a standby takes it
//! over once `renewTime + leaseDurationSeconds` has passed. Every write
//! carries the resourceVersion it read, so two candidates racing for an
//! expired lease cannot both win: the API server refuses the second with
//! 409 Conflict. A holder that cannot renew in time stops reconciling.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::api::{Api, PostParams};

/// What a candidate should do with the lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseStep {
    /// No lease yet: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Another holder let it expire (or released it): take it over.
    TakeOver,
    /// Another holder has it and is alive.
    Held(String),
}

/// Decides what `identity` does with `current` at `now` (pure).
pub fn step(
    current: Option<&LeaseSpec>,
    identity: &str,
    now: Timestamp,
    duration: Duration,
) -> LeaseStep {
    let Some(spec) = current else {
        return LeaseStep::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => LeaseStep::Renew,
        None | Some("") => LeaseStep::TakeOver,
        Some(holder) => {
            let lease_seconds = spec
                .lease_duration_seconds
                .map_or(duration.as_secs() as i64, i64::from);
            let expired = spec
                .renew_time
                .as_ref()
                .is_none_or(|renewed| now.duration_since(renewed.0).as_secs() >= lease_seconds);
            if expired {
                LeaseStep::TakeOver
            } else {
                LeaseStep::Held(holder.to_string())
            }
        }
    }
}

/// One replica's handle on the shared lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    /// A lock on lease `name` in `api`'s namespace for `identity`.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        LeaseLock {
            api,
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    /// How often the holder renews.
    pub fn renew_interval(&self) -> Duration {
        self.duration / 3
    }

    /// The lease's duration.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Acquires or renews the lease; `Ok(true)` while this replica holds it.
    /// A write conflict means another replica won the race: `Ok(false)`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let result = match step(spec, &self.identity, now, self.duration) {
            LeaseStep::Held(holder) => {
                tracing::debug!(%holder, "lease held by another replica");
                return Ok(false);
            }
            LeaseStep::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            LeaseStep::Renew | LeaseStep::TakeOver => {
                let mut lease = current.expect("a lease to renew or take over exists");
                let mut spec = lease.spec.take().unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                    tracing::info!(previous = ?spec.holder_identity, "taking over the leader lease");
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(seconds);
                lease.spec = Some(spec);
                // `lease.metadata.resourceVersion` makes this a compare-and-swap.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (on shutdown) so a standby takes over at once
    /// instead of waiting for it to expire.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn lease_steps() {
        assert_eq!(step(None, "a", at(100), DURATION), LeaseStep::Create);
        assert_eq!(
            step(Some(&held_by("a", 90)), "a", at(100), DURATION),
            LeaseStep::Renew
        );
        assert_eq!(
            step(Some(&held_by("b", 90)), "a", at(100), DURATION),
            LeaseStep::Held("b".into())
        );
        assert_eq!(
            step(Some(&held_by("b", 80)), "a", at(100), DURATION),
            LeaseStep::TakeOver
        );
        assert_eq!(
            step(Some(&LeaseSpec::default()), "a", at(100), DURATION),
            LeaseStep::TakeOver
        );
    }
}
