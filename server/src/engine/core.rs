//! The engine loop: admit -> schedule -> forward -> sample -> emit -> free.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Instant,
};

use glm_model::{CacheConfig, CausalLm, ForwardBatch, Sampler, SeqInput};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    masks, EngineError, EngineEvent, EngineRequest, FinishReason, Finished, GenerationParams,
    Shared, TokenEvent,
};
use crate::{
    constraint::{apply_mask, Advance, Constraint, Mask},
    kv_cache::BlockManager,
    metrics::Metrics,
    scheduler::{ScheduledSeq, Scheduler, SchedulerConfig, SchedulerOutput, SeqId},
};

/// Engine sizing, resolved by the caller from flags and the model's info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    pub num_blocks: usize,
    pub block_size: usize,
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    /// Prompt + output tokens a sequence may reach.
    pub max_model_len: usize,
    /// Requests waiting for admission before `submit` answers `QueueFull`.
    pub max_queue: usize,
    pub enable_prefix_caching: bool,
}

/// Per-request state kept beside the scheduler's sequence.
struct Active {
    reply: mpsc::UnboundedSender<EngineEvent>,
    cancel: CancellationToken,
    stopped: Arc<AtomicBool>,
    span: tracing::Span,
    params: GenerationParams,
    sampler: Sampler,
    /// Structured outputs: this sequence's grammar state.
    constraint: Option<Constraint>,
    arrival: Instant,
    started: bool,
    cached_tokens: usize,
    last_token_at: Option<Instant>,
    generated: usize,
}

/// Clears `alive` when the thread ends, by return or by panic.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Release);
    }
}

struct Engine {
    /// First field, so dropped first: `alive` is false before the reply channels of the
    /// active requests close (fields drop in declaration order), and a client that sees its
    /// stream end on a panic never finds `/health` still 200.
    _alive: AliveGuard,
    model: Box<dyn CausalLm>,
    sched: Scheduler,
    active: HashMap<SeqId, Active>,
    rx: mpsc::UnboundedReceiver<EngineRequest>,
    shared: Arc<Shared>,
    metrics: Metrics,
    cfg: EngineConfig,
    eos: Vec<u32>,
    next_id: SeqId,
    reported_prefix: (u64, u64),
}

pub(super) fn run(
    mut model: Box<dyn CausalLm>,
    cfg: EngineConfig,
    metrics: Metrics,
    rx: mpsc::UnboundedReceiver<EngineRequest>,
    shared: Arc<Shared>,
    ready: std::sync::mpsc::SyncSender<Result<(), EngineError>>,
) {
    let _alive = AliveGuard(Arc::clone(&shared));
    let cache = CacheConfig {
        num_blocks: cfg.num_blocks,
        block_size: cfg.block_size,
    };
    if let Err(e) = model.init_cache(cache) {
        let _ = ready.send(Err(EngineError::Model {
            kind: e.kind(),
            message: e.to_string(),
        }));
        return;
    }
    shared.alive.store(true, Ordering::Release);
    let eos = model.info().eos_token_ids.clone();
    let sched = Scheduler::new(
        SchedulerConfig {
            max_num_seqs: cfg.max_num_seqs,
            max_num_batched_tokens: cfg.max_num_batched_tokens,
        },
        BlockManager::new(cfg.num_blocks, cfg.block_size, cfg.enable_prefix_caching),
    );
    tracing::info!(
        num_blocks = cfg.num_blocks,
        block_size = cfg.block_size,
        max_num_seqs = cfg.max_num_seqs,
        max_num_batched_tokens = cfg.max_num_batched_tokens,
        "engine started"
    );
    let _ = ready.send(Ok(()));
    let mut engine = Engine {
        _alive: AliveGuard(Arc::clone(&shared)),
        model,
        sched,
        active: HashMap::new(),
        rx,
        shared,
        metrics,
        cfg,
        eos,
        next_id: 0,
        reported_prefix: (0, 0),
    };
    engine.run();
    tracing::info!("engine stopped");
}

impl Engine {
    fn run(&mut self) {
        loop {
            if !self.receive() {
                return;
            }
            self.reap_cancelled();
            let out = self.sched.schedule();
            self.note_started(&out);
            if out.seqs.is_empty() && out.preempted.is_empty() {
                self.unstick();
            } else {
                self.step(&out);
            }
            self.update_gauges();
        }
    }

    /// Takes new requests; blocks while there is nothing to do. False when all handles are
    /// gone and no work is left.
    fn receive(&mut self) -> bool {
        if self.sched.is_idle() {
            match self.rx.blocking_recv() {
                Some(req) => self.admit(req),
                None => return false,
            }
        }
        while let Ok(req) = self.rx.try_recv() {
            self.admit(req);
        }
        true
    }

    fn admit(&mut self, req: EngineRequest) {
        let id = self.next_id;
        self.next_id += 1;
        let prompt_len = req.prompt.len();
        if prompt_len == 0 || prompt_len >= self.cfg.max_model_len {
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
            let _ = req
                .reply
                .send(EngineEvent::Error(EngineError::TooLarge(format!(
                    "prompt of {prompt_len} tokens; the context holds {}",
                    self.cfg.max_model_len
                ))));
            return;
        }
        self.metrics.add_prompt_tokens(prompt_len as u64);
        let sampler = Sampler::new(req.params.sampling.clone());
        let mut params = req.params;
        let constraint = params.constraint.take();
        self.sched.add(id, req.prompt);
        self.shared.active.fetch_add(1, Ordering::AcqRel);
        self.active.insert(
            id,
            Active {
                reply: req.reply,
                cancel: req.cancel,
                stopped: req.stopped,
                span: req.span,
                params,
                sampler,
                constraint,
                arrival: req.arrival,
                started: false,
                cached_tokens: 0,
                last_token_at: None,
                generated: 0,
            },
        );
    }

    fn reap_cancelled(&mut self) {
        let gone: Vec<SeqId> = self
            .active
            .iter()
            .filter(|(_, a)| a.cancel.is_cancelled() || a.reply.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            let mut reason = FinishReason::Abort;
            if let Some(a) = self.active.get(&id) {
                if a.stopped.load(Ordering::Acquire) {
                    reason = FinishReason::Stop;
                }
                a.span
                    .in_scope(|| tracing::debug!(seq = id, "request cancelled"));
            }
            self.finish(id, reason, None);
        }
    }

    fn note_started(&mut self, out: &SchedulerOutput) {
        let now = Instant::now();
        for &id in &out.started {
            let cached = self.sched.get(id).map(|s| s.num_computed).unwrap_or(0);
            if let Some(a) = self.active.get_mut(&id) {
                if !a.started {
                    a.started = true;
                    a.cached_tokens = cached;
                    self.shared.pending.fetch_sub(1, Ordering::AcqRel);
                    self.metrics
                        .observe_queue_time(now.duration_since(a.arrival).as_secs_f64());
                }
            }
        }
    }

    /// Nothing could be scheduled although work exists: the head of the queue does not fit
    /// even in an empty pool. Fail it rather than spin.
    fn unstick(&mut self) {
        if self.sched.num_running() > 0 || self.sched.is_idle() {
            return;
        }
        if let Some(id) = self.sched.first_waiting() {
            let msg = format!(
                "{} KV blocks of {} tokens",
                self.cfg.num_blocks, self.cfg.block_size
            );
            self.fail(id, EngineError::TooLarge(msg));
        }
    }

    fn step(&mut self, out: &SchedulerOutput) {
        let batch = ForwardBatch {
            seqs: out.seqs.iter().map(|s| self.seq_input(s)).collect(),
        };
        // Grammar masks for this step's samples are computed on a second thread while the
        // model runs (the tokens they depend on were sampled last step).
        let wanted: Vec<SeqId> = out
            .seqs
            .iter()
            .filter(|s| s.want_logits)
            .map(|s| s.id)
            .collect();
        let (result, mut masks) = {
            let model = &mut self.model;
            let constraints: Vec<(SeqId, &mut Constraint)> = self
                .active
                .iter_mut()
                .filter(|(id, _)| wanted.contains(id))
                .filter_map(|(&id, a)| a.constraint.as_mut().map(|c| (id, c)))
                .collect();
            masks::beside(constraints, &self.metrics, || model.forward(&batch))
        };
        let logits = match result {
            Ok(l) if l.len() == out.seqs.len() => l,
            Ok(l) => {
                let err = EngineError::Model {
                    kind: "invalid_batch",
                    message: format!("{} outputs for {} sequences", l.len(), out.seqs.len()),
                };
                self.fail_batch(out, err);
                return;
            }
            Err(e) => {
                tracing::error!(kind = e.kind(), error = %e, "forward failed");
                let err = EngineError::Model {
                    kind: e.kind(),
                    message: e.to_string(),
                };
                self.fail_batch(out, err);
                return;
            }
        };
        self.sched.step_done(out);
        let now = Instant::now();
        let mut generated = 0u64;
        for (s, logits) in out.seqs.iter().zip(logits) {
            if !s.want_logits {
                continue;
            }
            let Some(mut logits) = logits else {
                let err = EngineError::Model {
                    kind: "invalid_batch",
                    message: "no logits for a sequence that asked for them".into(),
                };
                self.fail(s.id, err);
                continue;
            };
            generated += 1;
            let mask = masks.remove(&s.id);
            self.sample_and_emit(s.id, &mut logits, now, mask);
        }
        self.metrics.add_generation_tokens(generated);
    }

    fn seq_input(&self, s: &ScheduledSeq) -> SeqInput {
        let tokens = self
            .sched
            .get(s.id)
            .map(|q| q.tokens[s.start..s.start + s.len].to_vec())
            .unwrap_or_default();
        SeqInput {
            tokens,
            num_cached: s.start,
            block_table: self.sched.block_table(s.id).to_vec(),
            want_logits: s.want_logits,
        }
    }

    /// `mask`: the constrained sequence's mask, computed during the forward pass.
    fn sample_and_emit(&mut self, id: SeqId, logits: &mut [f32], now: Instant, mask: Option<Mask>) {
        let (Some(seq), Some(a)) = (self.sched.get(id), self.active.get_mut(&id)) else {
            return;
        };
        if let Some(c) = a.constraint.as_mut() {
            let mask = mask.unwrap_or_else(|| masks::timed(c, &self.metrics));
            let dead_end = match mask {
                Mask::Free => None,
                Mask::Allowed(m) => {
                    apply_mask(&m, logits);
                    // The grammar may allow only ids past this model's output layer.
                    logits
                        .iter()
                        .all(|l| *l == f32::NEG_INFINITY || l.is_nan())
                        .then(|| "no token the model can produce continues the grammar".to_string())
                }
                Mask::DeadEnd(why) => Some(why),
            };
            if let Some(why) = dead_end {
                a.span
                    .in_scope(|| tracing::warn!(seq = id, reason = %why, "grammar dead end"));
                self.finish(id, FinishReason::GrammarDeadEnd, None);
                return;
            }
        }
        let sampled = a.sampler.sample(logits, seq.prompt(), seq.output());
        let grammar = a.constraint.as_mut().map(|c| c.advance(sampled.token));
        if let Some(Advance::Rejected(why)) = grammar {
            a.span
                .in_scope(|| tracing::warn!(seq = id, reason = %why, "grammar refused a token"));
            self.finish(id, FinishReason::GrammarDeadEnd, None);
            return;
        }
        let total_len = seq.tokens.len() + 1;
        match a.last_token_at {
            None => self
                .metrics
                .observe_ttft(now.duration_since(a.arrival).as_secs_f64()),
            Some(prev) => self
                .metrics
                .observe_itl(now.duration_since(prev).as_secs_f64()),
        }
        a.last_token_at = Some(now);
        a.generated += 1;
        let token = sampled.token;
        let past_min = a.generated > a.params.min_tokens;
        let is_eos = !a.params.ignore_eos && self.eos.contains(&token);
        // A complete grammar ends the sequence whatever min_tokens or ignore_eos say: the
        // mask allows nothing but an end token after it.
        let is_stop = matches!(grammar, Some(Advance::Complete))
            || (past_min && (is_eos || a.params.stop_token_ids.contains(&token)));
        let event = EngineEvent::Token(TokenEvent {
            token,
            logprob: sampled.logprob,
            top_logprobs: sampled.top_logprobs,
            is_stop,
        });
        let delivered = a.reply.send(event).is_ok();
        let reason = if !delivered {
            Some((FinishReason::Abort, None))
        } else if is_stop {
            Some((FinishReason::Stop, Some(token)))
        } else if a.generated >= a.params.max_tokens || total_len >= self.cfg.max_model_len {
            Some((FinishReason::Length, None))
        } else {
            None
        };
        match reason {
            Some((reason, stop_token)) => self.finish(id, reason, stop_token),
            None => self.sched.append_token(id, token),
        }
    }

    fn finish(&mut self, id: SeqId, reason: FinishReason, stop_token: Option<u32>) {
        let Some(a) = self.active.remove(&id) else {
            self.sched.remove(id);
            return;
        };
        let prompt_tokens = self.sched.get(id).map(|s| s.prompt_len).unwrap_or(0);
        self.sched.remove(id);
        self.release_counters(&a);
        self.metrics.request_success(reason.as_str());
        self.metrics.observe_e2e(a.arrival.elapsed().as_secs_f64());
        a.span.in_scope(|| {
            tracing::debug!(
                seq = id,
                reason = reason.as_str(),
                generated = a.generated,
                "sequence finished"
            )
        });
        let _ = a.reply.send(EngineEvent::Finished(Finished {
            reason,
            stop_token,
            prompt_tokens,
            completion_tokens: a.generated,
            cached_tokens: a.cached_tokens,
        }));
    }

    fn fail(&mut self, id: SeqId, err: EngineError) {
        self.sched.remove(id);
        if let Some(a) = self.active.remove(&id) {
            self.release_counters(&a);
            a.span
                .in_scope(|| tracing::warn!(seq = id, error = %err, "sequence failed"));
            let _ = a.reply.send(EngineEvent::Error(err));
        }
    }

    fn fail_batch(&mut self, out: &SchedulerOutput, err: EngineError) {
        for s in &out.seqs {
            self.fail(s.id, err.clone());
        }
    }

    fn release_counters(&self, a: &Active) {
        if !a.started {
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
        }
        self.shared.active.fetch_sub(1, Ordering::AcqRel);
    }

    fn update_gauges(&mut self) {
        self.metrics.set_queue(
            self.sched.num_waiting() as i64,
            self.sched.num_running() as i64,
        );
        self.metrics.set_kv_usage(self.sched.blocks().usage());
        let stats = self.sched.blocks().prefix_stats();
        let (q0, h0) = self.reported_prefix;
        self.metrics.add_prefix_cache(
            stats.queries.saturating_sub(q0),
            stats.hits.saturating_sub(h0),
        );
        self.reported_prefix = (stats.queries, stats.hits);
    }
}
