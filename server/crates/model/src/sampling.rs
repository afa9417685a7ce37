//! Logit processing and token sampling.
//!
//! Order of processing follows vLLM: penalties (repetition over prompt + output, presence and
//! frequency over output), then greedy argmax when `temperature == 0`, else temperature,
//! min-p, top-k, top-p and a draw from the seeded RNG.
//!
//! Log-probabilities are the log-softmax of the logits after penalties and temperature
//! (temperature 1 for greedy), before top-k/top-p/min-p truncation, so that every reported
//! alternative has a finite value.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Temperatures below this are treated as greedy (dividing by them overflows).
const GREEDY_EPS: f32 = 1e-5;

/// How many of the best candidates are sorted before falling back to sorting the whole
/// vocabulary when top-p needs more mass than they hold.
const TOP_P_FIRST_PASS: usize = 1024;

/// Per-request sampling parameters, already validated by the server.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables (vLLM semantics: over prompt and output tokens).
    pub repetition_penalty: f32,
    /// 0.0 disables (OpenAI semantics: over output tokens).
    pub presence_penalty: f32,
    /// 0.0 disables (OpenAI semantics: over output tokens).
    pub frequency_penalty: f32,
    /// Same seed, same output.
    pub seed: Option<u64>,
    /// Number of top log-probabilities to return per token (None = no logprobs).
    pub logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
            logprobs: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding with no penalties.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature < GREEDY_EPS
    }
}

/// One sampled token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    /// Log-probability of `token` under the processed distribution (0.0 when not asked).
    pub logprob: f32,
    /// Top `logprobs` alternatives, best first.
    pub top_logprobs: Vec<(u32, f32)>,
}

/// Stateful sampler for one sequence (owns its seeded RNG).
#[derive(Debug)]
pub struct Sampler {
    pub params: SamplingParams,
    rng: StdRng,
    /// Reused per step: (token, logit) candidates that survive truncation.
    scratch: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Self {
            params,
            rng,
            scratch: Vec::new(),
        }
    }

    /// Picks the next token from `logits` (modified in place: penalties and temperature are
    /// applied to it). `prompt_tokens` and `output_tokens` feed the penalties.
    pub fn sample(
        &mut self,
        logits: &mut [f32],
        prompt_tokens: &[u32],
        output_tokens: &[u32],
    ) -> Sampled {
        if logits.is_empty() {
            return Sampled {
                token: 0,
                logprob: 0.0,
                top_logprobs: Vec::new(),
            };
        }
        sanitize(logits);
        apply_penalties(&self.params, logits, prompt_tokens, output_tokens);
        let token = if self.params.is_greedy() {
            argmax(logits)
        } else {
            let inv_t = 1.0 / self.params.temperature;
            if inv_t != 1.0 {
                logits.iter_mut().for_each(|l| *l *= inv_t);
            }
            self.draw(logits)
        };
        let (logprob, top_logprobs) = match self.params.logprobs {
            Some(n) => logprobs(logits, token, n),
            None => (0.0, Vec::new()),
        };
        Sampled {
            token,
            logprob,
            top_logprobs,
        }
    }

    /// Truncates with min-p, top-k, top-p (in that order, each over what is left) and draws.
    fn draw(&mut self, logits: &[f32]) -> u32 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            return 0;
        }
        let cand = &mut self.scratch;
        cand.clear();
        // min-p: p_i >= min_p * p_max  <=>  l_i >= l_max + ln(min_p).
        let floor = if self.params.min_p > 0.0 {
            max + self.params.min_p.ln()
        } else {
            f32::NEG_INFINITY
        };
        cand.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, &l)| l >= floor && l > f32::NEG_INFINITY)
                .map(|(i, &l)| (i as u32, l)),
        );
        let k = self.params.top_k;
        if k > 0 && k < cand.len() {
            cand.select_nth_unstable_by(k - 1, by_logit_desc);
            cand.truncate(k);
        }
        let top_p = self.params.top_p;
        if top_p < 1.0 {
            truncate_top_p(cand, max, top_p);
        }
        // Weighted draw over what is left (relative to the max logit, so exp never overflows).
        let total: f64 = cand.iter().map(|&(_, l)| f64::from((l - max).exp())).sum();
        if total.is_nan() || total <= 0.0 {
            return cand.first().map(|c| c.0).unwrap_or(0);
        }
        let mut u = self.rng.random::<f64>() * total;
        for &(tok, l) in cand.iter() {
            u -= f64::from((l - max).exp());
            if u <= 0.0 {
                return tok;
            }
        }
        cand.last().map(|c| c.0).unwrap_or(0)
    }
}

/// Descending by logit, ties by ascending token id (deterministic order).
fn by_logit_desc(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Keeps the smallest prefix (by descending probability) whose mass reaches `top_p`; always
/// keeps at least one token. Sorts only the best `TOP_P_FIRST_PASS` first, which is enough
/// unless the distribution is very flat.
fn truncate_top_p(cand: &mut Vec<(u32, f32)>, max: f32, top_p: f32) {
    let total: f64 = cand.iter().map(|&(_, l)| f64::from((l - max).exp())).sum();
    let target = f64::from(top_p) * total;
    if cand.len() > TOP_P_FIRST_PASS {
        cand.select_nth_unstable_by(TOP_P_FIRST_PASS - 1, by_logit_desc);
        cand[..TOP_P_FIRST_PASS].sort_unstable_by(by_logit_desc);
        if let Some(n) = prefix_reaching(&cand[..TOP_P_FIRST_PASS], max, target) {
            cand.truncate(n);
            return;
        }
    }
    cand.sort_unstable_by(by_logit_desc);
    let n = prefix_reaching(cand, max, target).unwrap_or(cand.len());
    cand.truncate(n);
}

fn prefix_reaching(sorted: &[(u32, f32)], max: f32, target: f64) -> Option<usize> {
    let mut acc = 0.0f64;
    for (i, &(_, l)) in sorted.iter().enumerate() {
        acc += f64::from((l - max).exp());
        if acc >= target {
            return Some(i + 1);
        }
    }
    None
}

/// NaN logits would poison every comparison; treat them as impossible tokens.
fn sanitize(logits: &mut [f32]) {
    for l in logits.iter_mut() {
        if l.is_nan() {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// Repetition penalty (vLLM/CTRL: divide positive logits, multiply negative ones) over every
/// distinct token of prompt and output; presence and frequency penalties (OpenAI) over output.
fn apply_penalties(p: &SamplingParams, logits: &mut [f32], prompt: &[u32], output: &[u32]) {
    let vocab = logits.len();
    if p.repetition_penalty != 1.0 && p.repetition_penalty > 0.0 {
        let mut seen = vec![false; vocab];
        for &t in prompt.iter().chain(output) {
            let t = t as usize;
            if t < vocab && !seen[t] {
                seen[t] = true;
                let l = &mut logits[t];
                *l = if *l > 0.0 {
                    *l / p.repetition_penalty
                } else {
                    *l * p.repetition_penalty
                };
            }
        }
    }
    if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
        let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for &t in output {
            if (t as usize) < vocab {
                *counts.entry(t).or_insert(0) += 1;
            }
        }
        for (t, c) in counts {
            logits[t as usize] -= p.frequency_penalty * c as f32 + p.presence_penalty;
        }
    }
}

/// Structured outputs: sets the logit of every token whose bit is clear in `allowed` (bit
/// `i % 32` of word `i / 32`, token ids past the words included) to -inf, so neither greedy
/// nor a draw can pick it. Applied before [`Sampler::sample`]; penalties keep -inf as -inf.
pub fn apply_token_mask(logits: &mut [f32], allowed: &[u32]) {
    for (word_idx, chunk) in logits.chunks_mut(32).enumerate() {
        let word = allowed.get(word_idx).copied().unwrap_or(0);
        if word == u32::MAX {
            continue;
        }
        for (bit, l) in chunk.iter_mut().enumerate() {
            if word & (1 << bit) == 0 {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// Index of the largest logit; the lowest id wins ties.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best as u32
}

/// Log-probability of `token` and the `n` best alternatives (best first) under
/// log-softmax(logits).
fn logprobs(logits: &[f32], token: u32, n: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return (f32::NEG_INFINITY, Vec::new());
    }
    let sum: f64 = logits.iter().map(|&l| f64::from((l - max).exp())).sum();
    let lse = max + sum.ln() as f32;
    let lp = logits
        .get(token as usize)
        .map(|&l| l - lse)
        .unwrap_or(f32::NEG_INFINITY);
    let n = n.min(logits.len());
    let mut top: Vec<(u32, f32)> = Vec::new();
    if n > 0 {
        top = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        if n < top.len() {
            top.select_nth_unstable_by(n - 1, by_logit_desc);
            top.truncate(n);
        }
        top.sort_unstable_by(by_logit_desc);
        top.iter_mut().for_each(|e| e.1 -= lse);
    }
    (lp, top)
}

#[cfg(test)]
#[path = "sampling/tests.rs"]
mod tests;
