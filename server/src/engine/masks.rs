//! Grammar masks computed beside the forward pass: the masks of a step depend only on the
//! tokens sampled before it, so a second thread computes them while the model runs.

use std::{collections::HashMap, time::Instant};

use crate::{
    constraint::{Constraint, Mask},
    metrics::Metrics,
    scheduler::SeqId,
};

/// One sequence's mask, timed into the metrics.
pub(super) fn timed(c: &mut Constraint, metrics: &Metrics) -> Mask {
    let started = Instant::now();
    let mask = c.mask();
    metrics.observe_mask(started.elapsed().as_secs_f64());
    mask
}

/// Runs `forward` on this thread and the masks of `constraints` on a scoped second thread;
/// returns both. Without constraints no thread is started. If the thread cannot start, the
/// masks are left to the caller (computed at sampling); if it panics, each sequence it
/// held gets a dead end rather than an engine crash.
pub(super) fn beside<R>(
    constraints: Vec<(SeqId, &mut Constraint)>,
    metrics: &Metrics,
    forward: impl FnOnce() -> R,
) -> (R, HashMap<SeqId, Mask>) {
    if constraints.is_empty() {
        return (forward(), HashMap::new());
    }
    let ids: Vec<SeqId> = constraints.iter().map(|(id, _)| *id).collect();
    std::thread::scope(|scope| {
        let worker = move || {
            constraints
                .into_iter()
                .map(|(id, c)| (id, timed(c, metrics)))
                .collect::<HashMap<_, _>>()
        };
        let handle = std::thread::Builder::new()
            .name("glm-grammar".into())
            .spawn_scoped(scope, worker);
        let result = forward();
        let masks = match handle {
            Ok(h) => h.join().unwrap_or_else(|_| {
                tracing::error!("grammar mask thread panicked");
                ids.into_iter()
                    .map(|id| (id, Mask::DeadEnd("the grammar engine failed".into())))
                    .collect()
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no grammar thread; masks computed at sampling");
                HashMap::new()
            }
        };
        (result, masks)
    })
}
