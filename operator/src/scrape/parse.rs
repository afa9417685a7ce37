//! Just enough of the Prometheus text exposition format (and OpenMetrics text) to read the
//! two gauges of the contract, summed over label sets.
//!
//! Tolerated: comments, `# HELP`/`# TYPE`/`# EOF`, blank lines, CRLF, timestamps after the
//! value, label values with escaped quotes, commas or braces, other metrics (including names
//! that merely start with ours, such as `glm_num_requests_waiting_total`). Samples whose
//! value is NaN, infinite or negative are dropped: a gauge of requests cannot be any of
//! those, and counting them as 0 would hide a broken exporter.

use crate::autoscale::Load;

/// Metric names from docs/contract.md.
pub const WAITING: &str = "glm_num_requests_waiting";
pub const RUNNING: &str = "glm_num_requests_running";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("metric {0} missing (no finite, non-negative sample)")]
    MetricMissing(&'static str),
}

/// Totals of one exposition.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Gauges {
    pub waiting: Option<f64>,
    pub running: Option<f64>,
    /// Samples of our gauges dropped for a NaN, infinite, negative or unparsable value.
    pub dropped: u32,
}

impl Gauges {
    /// Both gauges present, else the first one missing.
    pub fn load(&self) -> Result<Load, ParseError> {
        let waiting = self.waiting.ok_or(ParseError::MetricMissing(WAITING))?;
        let running = self.running.ok_or(ParseError::MetricMissing(RUNNING))?;
        Ok(Load { waiting, running })
    }
}

/// Sums every sample of the two gauges in `text`. Lines it cannot read are skipped: the
/// exposition carries other metrics this parser has no business judging.
pub fn parse_gauges(text: &str) -> Gauges {
    let mut out = Gauges::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let slot = if let Some(rest) = line.strip_prefix(WAITING) {
            (rest, &mut out.waiting)
        } else if let Some(rest) = line.strip_prefix(RUNNING) {
            (rest, &mut out.running)
        } else {
            continue;
        };
        let (rest, total) = slot;
        // The name must end here: `{`, or whitespace before the value.
        let after_labels = match rest.chars().next() {
            Some('{') => match skip_labels(rest) {
                Some(after) => after,
                None => {
                    out.dropped += 1;
                    continue;
                }
            },
            Some(c) if c.is_whitespace() => rest,
            _ => continue,
        };
        match sample_value(after_labels) {
            Some(v) => *total = Some(total.unwrap_or(0.0) + v),
            None => out.dropped += 1,
        }
    }
    out
}

/// Skips `{...}` honouring quoted label values with `\"` and `\\` escapes; returns the
/// text after the closing brace.
fn skip_labels(s: &str) -> Option<&str> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if in_quotes {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '}' => return Some(&s[i + 1..]),
            _ => {}
        }
    }
    None
}

/// The value token (an optional timestamp may follow); `None` unless finite and >= 0.
fn sample_value(s: &str) -> Option<f64> {
    let token = s.split_whitespace().next()?;
    let v: f64 = match token {
        // Go's and the Python client's spellings; parse() knows "inf" and "NaN" but the
        // format also allows "+Inf".
        "+Inf" => f64::INFINITY,
        _ => token.parse().ok()?,
    };
    (v.is_finite() && v >= 0.0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_label_sets_and_ignores_the_rest() {
        let text = "\
# HELP glm_num_requests_waiting Requests queued.
# TYPE glm_num_requests_waiting gauge
glm_num_requests_waiting{model_name=\"glm-4.5\"} 3
glm_num_requests_waiting{model_name=\"glm-4.5-air\",extra=\"a,b}\\\"c\"} 4 1700000000000
glm_num_requests_waiting_total 100
glm_num_requests_waitingx 100
# TYPE glm_num_requests_running gauge
glm_num_requests_running{model_name=\"glm-4.5\"} 2.5\r
glm_num_requests_running{model_name=\"glm-4.5\"} NaN
glm_kv_cache_usage_ratio 0.5
# EOF
";
        let g = parse_gauges(text);
        assert_eq!(g.waiting, Some(7.0));
        assert_eq!(g.running, Some(2.5));
        assert_eq!(g.dropped, 1);
        assert_eq!(
            g.load().unwrap(),
            Load {
                waiting: 7.0,
                running: 2.5
            }
        );
    }

    #[test]
    fn no_labels_and_exponent_values() {
        let g = parse_gauges("glm_num_requests_waiting 1e1\nglm_num_requests_running\t0\n");
        assert_eq!((g.waiting, g.running), (Some(10.0), Some(0.0)));
    }

    #[test]
    fn missing_or_only_invalid_samples_is_missing_not_zero() {
        let g = parse_gauges("glm_num_requests_running 1\n");
        assert_eq!(g.load(), Err(ParseError::MetricMissing(WAITING)));
        let g = parse_gauges(
            "glm_num_requests_waiting NaN\nglm_num_requests_waiting -1\n\
             glm_num_requests_waiting +Inf\nglm_num_requests_running 1\n",
        );
        assert_eq!(g.waiting, None);
        assert_eq!(g.dropped, 3);
        assert_eq!(g.load(), Err(ParseError::MetricMissing(WAITING)));
        assert_eq!(
            parse_gauges("").load(),
            Err(ParseError::MetricMissing(WAITING))
        );
    }

    #[test]
    fn unterminated_labels_and_garbage_are_dropped() {
        let g = parse_gauges(
            "glm_num_requests_waiting{model_name=\"x} 5\nglm_num_requests_waiting{} abc\n\
             glm_num_requests_waiting{} 2\nglm_num_requests_running 0\n",
        );
        assert_eq!((g.waiting, g.dropped), (Some(2.0), 2));
    }
}
