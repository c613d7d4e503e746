//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` does it,
//! so that of several controller-managers (or schedulers) sharing a cluster exactly one acts.
//!
//! A candidate takes the Lease when it is free or its holder has not renewed it for the lease
//! duration, measured on the candidate's own clock from when it last saw the record change (so
//! clock skew between hosts does not matter). The holder renews every retry period; if it cannot
//! renew within the renew deadline it stops acting and becomes a candidate again. On shutdown it
//! gives the Lease up, so a peer takes over at once instead of after the lease duration.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

/// The flags upstream components take, with upstream's defaults.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "leader_election")]
pub struct Flags {
    /// Take a Lease before acting, so that of several copies of this component only one acts.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a Lease holds after its last renewal before others may take it.
    #[arg(long, default_value = "15s", value_parser = crate::flags::parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps acting while it fails to renew.
    #[arg(long, default_value = "10s", value_parser = crate::flags::parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often candidates try to take the Lease and the leader renews it.
    #[arg(long, default_value = "2s", value_parser = crate::flags::parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// The namespace of the Lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// Who this copy is in the Lease's `holderIdentity`; it must differ between copies.
    /// Default: the host name and a random suffix, as upstream; `ekube server` passes its host
    /// name and its address and port (unique among running servers), so that a server
    /// restarted before its Lease expires takes it back at once.
    #[arg(long)]
    pub leader_elect_identity: Option<String>,
}

impl Default for Flags {
    fn default() -> Self {
        Self {
            leader_elect: true,
            leader_elect_lease_duration: Duration::from_secs(15),
            leader_elect_renew_deadline: Duration::from_secs(10),
            leader_elect_retry_period: Duration::from_secs(2),
            leader_elect_resource_namespace: "kube-system".into(),
            leader_elect_identity: None,
        }
    }
}

impl Flags {
    /// client-go's checks: the leader must step down (renew deadline) before a peer may take
    /// over (lease duration), and get more than one try (with jitter) before that.
    pub fn validate(&self) -> Result<(), String> {
        if self.leader_elect
            && (self.leader_elect_renew_deadline >= self.leader_elect_lease_duration
                || self.leader_elect_renew_deadline.as_secs_f64()
                    <= 1.2 * self.leader_elect_retry_period.as_secs_f64())
        {
            return Err(
                "leader election needs lease duration > renew deadline > 1.2 × retry period".into(),
            );
        }
        Ok(())
    }

    /// An elector for the Lease `name`, or none when `--leader-elect=false`.
    pub fn elector(&self, client: kube::Client, name: &str) -> Option<Elector> {
        self.leader_elect.then(|| Elector {
            api: Api::namespaced(client, &self.leader_elect_resource_namespace),
            name: name.to_string(),
            identity: self
                .leader_elect_identity
                .clone()
                .unwrap_or_else(default_identity),
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
            observed: None,
        })
    }
}

/// `<hostname>_<random>`, client-go's identity.
fn default_identity() -> String {
    let host = crate::flags::node_name(None).unwrap_or_else(|_| "localhost".into());
    format!("{host}_{}", uuid_suffix())
}

fn uuid_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap())
        .collect()
}

/// The record as last seen, and when it was seen to change.
struct Observed {
    holder: String,
    renew_time: Option<String>,
    transitions: i32,
    duration: Duration,
    at: Instant,
}

impl Observed {
    /// How long until another holder's Lease runs out on this copy's clock; `None` when it has
    /// no holder or `identity` holds it.
    fn expires_in(&self, identity: &str) -> Option<Duration> {
        (!self.holder.is_empty() && self.holder != identity)
            .then(|| self.duration.saturating_sub(self.at.elapsed()))
    }
}

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
    observed: Option<Observed>,
}

impl Elector {
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this copy holds the Lease. A candidate tries every retry period, as
    /// client-go's does, and also at the moment the holder's Lease runs out, so a dead
    /// holder is replaced within the lease duration of the last renewal this copy saw, not up
    /// to a retry period later.
    pub async fn acquire(&mut self) {
        loop {
            let attempt = tokio::time::timeout(self.retry_period, self.try_acquire_or_renew());
            match attempt.await {
                Ok(Ok(true)) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    return;
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::debug!(lease = %self.name, error = %e, "taking the lease"),
                Err(_) => tracing::debug!(lease = %self.name, "taking the lease timed out"),
            }
            let expiry = self
                .observed
                .as_ref()
                .and_then(|o| o.expires_in(&self.identity));
            let wait = expiry.map_or(self.retry_period, |left| {
                self.retry_period.min(left + EXPIRY_MARGIN)
            });
            tokio::time::sleep(wait).await;
        }
    }

    /// Renews the Lease every retry period until renewing has failed for the renew deadline;
    /// then returns (leadership is lost and the caller must stop acting). No attempt runs past
    /// the deadline, so a leader stops acting within the renew deadline of its last renewal,
    /// before the lease duration lets a peer take over.
    pub async fn hold(&mut self) {
        let mut renewed = tokio::time::Instant::now();
        loop {
            let deadline = renewed + self.renew_deadline;
            tokio::time::sleep_until(
                (tokio::time::Instant::now() + self.retry_period).min(deadline),
            )
            .await;
            match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => renewed = tokio::time::Instant::now(),
                Ok(Ok(false)) => {
                    tracing::warn!(lease = %self.name, "another holder took the lease");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(lease = %self.name, error = %e, "renewing the lease"),
                Err(_) => tracing::warn!(lease = %self.name, "renewing the lease timed out"),
            }
            if tokio::time::Instant::now() >= renewed + self.renew_deadline {
                tracing::warn!(lease = %self.name, "could not renew the lease in time; stepping down");
                return;
            }
        }
    }

    /// Gives the Lease up if this copy holds it, so a peer need not wait for it to expire.
    pub async fn release(&mut self) {
        let read = tokio::time::timeout(self.retry_period, self.api.get_opt(&self.name));
        let Ok(Ok(Some(mut lease))) = read.await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        let params = PostParams::default();
        let write = self.api.replace(&self.name, &params, &lease);
        match tokio::time::timeout(self.retry_period, write).await {
            Ok(Ok(_)) => tracing::info!(lease = %self.name, "released the lease"),
            Ok(Err(e)) => tracing::debug!(lease = %self.name, error = %e, "releasing the lease"),
            Err(_) => tracing::debug!(lease = %self.name, "releasing the lease timed out"),
        }
    }

    /// One round of client-go's `tryAcquireOrRenew`: `Ok(true)` when this copy holds the Lease
    /// afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let duration = self.lease_duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(true)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        self.observe(&lease);
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if self
            .observed
            .as_ref()
            .and_then(|o| o.expires_in(&self.identity))
            .is_some_and(|left| !left.is_zero())
        {
            return Ok(false);
        }
        if !ours {
            spec.acquire_time = Some(now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(duration);
        spec.renew_time = Some(now());
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(stored) => {
                self.observe(&stored);
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn observe(&mut self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.unwrap_or_default();
        let renew_time = spec.renew_time.map(|t| t.0.to_string());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let unchanged = self.observed.as_ref().is_some_and(|o| {
            o.holder == holder
                && o.renew_time == renew_time
                && o.transitions == transitions
                && o.duration == duration
        });
        if !unchanged {
            self.observed = Some(Observed {
                holder,
                renew_time,
                transitions,
                duration,
                at: Instant::now(),
            });
        }
    }
}

/// How long after the observed expiry a candidate tries, so that its clock has surely passed it.
const EXPIRY_MARGIN: Duration = Duration::from_millis(20);

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Runs `work` while this copy leads (at once when `elector` is none), stepping down when the
/// Lease is lost and standing again, until `shutdown`; then gives the Lease up. `work` is
/// started afresh after each election and dropped (its tasks with it) when leadership is lost.
/// It returns early only with `work`'s own result.
pub async fn run_elected<W, Fut, T>(
    elector: Option<Elector>,
    shutdown: impl Future<Output = ()>,
    mut work: W,
) -> Option<T>
where
    W: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    tokio::pin!(shutdown);
    let Some(mut elector) = elector else {
        return tokio::select! {
            _ = &mut shutdown => None,
            done = work() => Some(done),
        };
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => return None,
            _ = elector.acquire() => {}
        }
        enum Outcome<T> {
            Shutdown,
            Lost,
            Done(T),
        }
        let outcome = tokio::select! {
            _ = &mut shutdown => Outcome::Shutdown,
            _ = elector.hold() => Outcome::Lost,
            done = work() => Outcome::Done(done),
        };
        match outcome {
            Outcome::Lost => continue,
            Outcome::Shutdown => {
                elector.release().await;
                return None;
            }
            Outcome::Done(done) => {
                elector.release().await;
                return Some(done);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(holder: &str, duration: Duration, seen: Duration) -> Observed {
        Observed {
            holder: holder.into(),
            renew_time: None,
            transitions: 0,
            duration,
            at: Instant::now() - seen,
        }
    }

    #[test]
    fn another_holders_lease_runs_out_a_duration_after_it_was_seen() {
        let o = observed("peer", Duration::from_secs(15), Duration::from_secs(10));
        let left = o.expires_in("me").expect("a peer holds it");
        assert!(left <= Duration::from_secs(5) && left > Duration::from_secs(4));

        let o = observed("peer", Duration::from_secs(15), Duration::from_secs(16));
        assert_eq!(o.expires_in("me"), Some(Duration::ZERO));
    }

    #[test]
    fn a_free_lease_or_our_own_does_not_run_out() {
        let long_ago = Duration::from_secs(100);
        assert_eq!(
            observed("", Duration::from_secs(15), long_ago).expires_in("me"),
            None
        );
        assert_eq!(
            observed("me", Duration::from_secs(15), long_ago).expires_in("me"),
            None
        );
    }
}
