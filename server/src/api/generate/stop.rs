//! Stop strings over streamed text. Text that could be the start of a stop string is held
//! back until it is clearly not, so a stop string split over two tokens is still caught and
//! never leaks into the output.

#[derive(Debug, Clone, Default)]
pub struct StopChecker {
    stops: Vec<String>,
    include_stop: bool,
    pending: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopResult {
    /// Text that is safe to emit now.
    Continue(String),
    /// A stop string matched: `text` is what precedes it (plus it, with `include_stop`).
    Stopped { text: String, stop: String },
}

impl StopChecker {
    pub fn new(stops: Vec<String>, include_stop: bool) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            include_stop,
            pending: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopResult {
        if self.stops.is_empty() {
            return StopResult::Continue(text.to_string());
        }
        self.pending.push_str(text);
        let earliest = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()).map(|p| (p, s)))
            .min_by_key(|(p, s)| (*p, usize::MAX - s.len()));
        if let Some((p, s)) = earliest {
            let end = if self.include_stop { p + s.len() } else { p };
            let text = self.pending[..end].to_string();
            let stop = s.clone();
            self.pending.clear();
            return StopResult::Stopped { text, stop };
        }
        // Longest suffix of the pending text that is a proper prefix of a stop string.
        let mut hold = 0;
        for s in &self.stops {
            for k in (1..s.len()).rev() {
                if k <= hold {
                    break;
                }
                if s.is_char_boundary(k) && self.pending.ends_with(&s[..k]) {
                    hold = k;
                    break;
                }
            }
        }
        let cut = self.pending.len() - hold;
        let out: String = self.pending.drain(..cut).collect();
        StopResult::Continue(out)
    }

    /// Releases held-back text at the end of the sequence.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], include: bool, pieces: &[&str]) -> (String, Option<String>) {
        let mut c = StopChecker::new(stops.iter().map(|s| s.to_string()).collect(), include);
        let mut out = String::new();
        for p in pieces {
            match c.push(p) {
                StopResult::Continue(s) => out.push_str(&s),
                StopResult::Stopped { text, stop } => {
                    out.push_str(&text);
                    return (out, Some(stop));
                }
            }
        }
        out.push_str(&c.flush());
        (out, None)
    }

    #[test]
    fn stop_split_over_pieces_is_caught() {
        assert_eq!(
            run(&["END"], false, &["abc E", "N", "D tail"]),
            ("abc ".into(), Some("END".into()))
        );
        assert_eq!(
            run(&["END"], true, &["abc E", "ND"]),
            ("abc END".into(), Some("END".into()))
        );
    }

    #[test]
    fn held_back_text_is_released_when_it_diverges_or_ends() {
        assert_eq!(
            run(&["END"], false, &["abc E", "x"]),
            ("abc Ex".into(), None)
        );
        assert_eq!(run(&["END"], false, &["abc EN"]), ("abc EN".into(), None));
        assert_eq!(run(&[], false, &["a", "b"]), ("ab".into(), None));
    }

    #[test]
    fn earliest_stop_wins_and_unicode_is_safe() {
        assert_eq!(
            run(&["zz", "b"], false, &["abzz"]),
            ("a".into(), Some("b".into()))
        );
        assert_eq!(
            run(&["é!"], false, &["caf", "é", "!x"]),
            ("caf".into(), Some("é!".into()))
        );
        assert_eq!(run(&["éa"], false, &["ééb"]), ("ééb".into(), None));
    }

    #[test]
    fn pieces_are_emitted_as_soon_as_safe() {
        let mut c = StopChecker::new(vec!["STOP".into()], false);
        assert_eq!(c.push("hello S"), StopResult::Continue("hello ".into()));
        assert_eq!(c.push("T"), StopResult::Continue(String::new()));
        assert_eq!(c.push("ART"), StopResult::Continue("START".into()));
    }
}
