//! Leader election on a coordination.k8s.io/v1 Lease, so two operator replicas never reconcile
//! at once. The decision is a pure function; the loop around it does a read and an optimistic
//! (resourceVersion-guarded) write per round, so two candidates cannot both win a takeover.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{api::PostParams, Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

/// What the Lease says, reduced to what the decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseView {
    pub holder: Option<String>,
    pub renewed: Option<Timestamp>,
    pub duration_seconds: i64,
}

/// What to do this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it.
    Acquire,
    /// Someone else holds a valid Lease: look again after this long.
    Follow { holder: String, retry_in: Duration },
}

/// Pure leader decision.
pub fn decide(lease: Option<&LeaseView>, me: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else {
        return Decision::Acquire;
    };
    match lease.holder.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(holder) if holder == me => Decision::Renew,
        Some(holder) => {
            let expires = lease.renewed.and_then(|r| {
                r.checked_add(SignedDuration::from_secs(lease.duration_seconds.max(1)))
                    .ok()
            });
            match expires {
                Some(expires) if expires > now => Decision::Follow {
                    holder: holder.to_string(),
                    retry_in: Duration::try_from(expires.duration_since(now))
                        .unwrap_or(Duration::from_secs(1)),
                },
                _ => Decision::Acquire,
            }
        }
    }
}

fn view(lease: &Lease) -> LeaseView {
    let spec = lease.spec.as_ref();
    LeaseView {
        holder: spec.and_then(|s| s.holder_identity.clone()),
        renewed: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
        duration_seconds: spec
            .and_then(|s| s.lease_duration_seconds)
            .map_or(15, i64::from),
    }
}

/// Holds (or waits for) the Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_seconds: u32,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_seconds: u32,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_seconds: lease_seconds.max(3),
        }
    }

    /// One round: returns whether we hold the Lease afterwards.
    pub async fn step(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(current.as_ref().map(view).as_ref(), &self.identity, now);
        let (acquire, renew) = match &decision {
            Decision::Follow { .. } => return Ok(false),
            Decision::Acquire => (true, false),
            Decision::Renew => (false, true),
        };
        let prev_spec = current
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let spec = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.lease_seconds).unwrap_or(15)),
            renew_time: Some(MicroTime(now)),
            acquire_time: if renew {
                prev_spec.acquire_time.clone()
            } else {
                Some(MicroTime(now))
            },
            lease_transitions: Some(
                prev_spec.lease_transitions.unwrap_or(0) + i32::from(acquire && current.is_some()),
            ),
            ..LeaseSpec::default()
        };
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            Some(mut lease) => {
                // replace() sends our resourceVersion: a concurrent writer makes this a 409.
                lease.spec = Some(spec);
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                if acquire {
                    info!(identity = %self.identity, lease = %self.name, "acquired leadership");
                }
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if we hold it (on SIGTERM), so a standby takes over at once instead
    /// of waiting for it to expire. Returns whether a held Lease was released.
    pub async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let Some(spec) = released(lease.spec.as_ref(), &self.identity, Timestamp::now()) else {
            return Ok(false);
        };
        lease.spec = Some(spec);
        // resourceVersion-guarded: if someone took it meanwhile, theirs stands.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                info!(identity = %self.identity, lease = %self.name, "released leadership");
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs until `stop` turns true, publishing leadership on `tx`. Leadership is dropped when
    /// the Lease could not be renewed for a whole lease duration (the others may have taken
    /// over by then).
    pub async fn run(self, tx: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let period =
            Duration::from_secs(u64::from(self.lease_seconds) / 3).max(Duration::from_secs(1));
        let lease = SignedDuration::from_secs(i64::from(self.lease_seconds));
        let mut last_held: Option<Timestamp> = None;
        loop {
            let now = Timestamp::now();
            let held = match self.step(now).await {
                Ok(true) => {
                    last_held = Some(now);
                    true
                }
                Ok(false) => false,
                Err(e) => {
                    warn!(error = %e, "lease round failed");
                    // Keep leading until our own Lease would have expired.
                    last_held
                        .and_then(|t| t.checked_add(lease).ok())
                        .is_some_and(|until| until > Timestamp::now())
                        && *tx.borrow()
                }
            };
            if !held {
                last_held = None;
            }
            tx.send_if_modified(|v| std::mem::replace(v, held) != held);
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stop.wait_for(|v| *v) => return,
            }
        }
    }
}

/// The Lease spec that gives leadership up, when `me` holds it: no holder (so [`decide`] lets
/// the next candidate acquire at once), a 1 s duration, times set to `now`; `None` when the
/// Lease is someone else's.
pub fn released(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Option<LeaseSpec> {
    let spec = spec?;
    if spec.holder_identity.as_deref() != Some(me) {
        return None;
    }
    Some(LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(now)),
        acquire_time: Some(MicroTime(now)),
        ..spec.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: Option<i64>) -> LeaseView {
        LeaseView {
            holder: holder.map(str::to_string),
            renewed: renewed.map(t),
            duration_seconds: 15,
        }
    }

    #[test]
    fn only_the_holder_releases_and_the_next_candidate_acquires_at_once() {
        let held = LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(t(0))),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        };
        assert_eq!(released(Some(&held), "b", t(1)), None);
        assert_eq!(released(None, "a", t(1)), None);
        let free = released(Some(&held), "a", t(1)).unwrap();
        assert_eq!(free.holder_identity, None);
        assert_eq!(free.lease_transitions, Some(3));
        let lease = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(free),
        };
        // Another replica, one second later, well inside the old 15 s lease.
        assert_eq!(decide(Some(&view(&lease)), "b", t(2)), Decision::Acquire);
    }

    #[test]
    fn decision_table() {
        let cases: Vec<(Option<LeaseView>, i64, Decision)> = vec![
            (None, 0, Decision::Acquire),
            (Some(lease(None, None)), 0, Decision::Acquire),
            (Some(lease(Some(""), Some(0))), 0, Decision::Acquire),
            (Some(lease(Some("me"), Some(0))), 5, Decision::Renew),
            // Our own expired Lease is still ours to renew (nobody took it).
            (Some(lease(Some("me"), Some(0))), 100, Decision::Renew),
            (
                Some(lease(Some("other"), Some(0))),
                5,
                Decision::Follow {
                    holder: "other".into(),
                    retry_in: Duration::from_secs(10),
                },
            ),
            (Some(lease(Some("other"), Some(0))), 15, Decision::Acquire),
            (Some(lease(Some("other"), Some(0))), 60, Decision::Acquire),
            (Some(lease(Some("other"), None)), 0, Decision::Acquire),
        ];
        for (i, (l, now, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(l.as_ref(), "me", t(now)), want, "case {i}");
        }
    }
}
