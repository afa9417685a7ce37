//! Incremental lexer: splits streamed text into literal terminals (`<tool_call>`,
//! `</think>`, special tokens to drop, ...) and content, holding back any tail that could
//! still become a terminal. A port of vLLM's `IncrementalLexer` restricted to literals, so
//! the text → token sequence is the same whether the output arrives whole or in pieces.

/// One lexed piece: a terminal (index into the literal table) or content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lexeme {
    Terminal(usize),
    Content(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Lexer {
    literals: Vec<String>,
    /// Every proper prefix of every literal (the buffer is held while it equals one).
    prefixes: std::collections::HashSet<String>,
    first_chars: Vec<char>,
    /// Length in bytes of the longest literal.
    max_len: usize,
    buffer: String,
}

impl Lexer {
    pub fn new(literals: Vec<String>) -> Self {
        let mut prefixes = std::collections::HashSet::new();
        let mut first_chars = Vec::new();
        for lit in &literals {
            for (i, _) in lit.char_indices().skip(1) {
                prefixes.insert(lit[..i].to_string());
            }
            if let Some(c) = lit.chars().next() {
                if !first_chars.contains(&c) {
                    first_chars.push(c);
                }
            }
        }
        let max_len = literals.iter().map(String::len).max().unwrap_or(0);
        Lexer {
            literals,
            prefixes,
            first_chars,
            max_len,
            buffer: String::new(),
        }
    }

    /// The literal of a terminal index.
    pub fn literal(&self, index: usize) -> &str {
        &self.literals[index]
    }

    pub fn feed(&mut self, text: &str) -> Vec<Lexeme> {
        if self.buffer.is_empty() && !text.contains(self.first_chars.as_slice()) {
            return if text.is_empty() {
                Vec::new()
            } else {
                vec![Lexeme::Content(text.to_string())]
            };
        }
        self.buffer.push_str(text);
        self.drain(false)
    }

    /// End of input: whatever is held back is content.
    pub fn flush(&mut self) -> Vec<Lexeme> {
        let mut out = Vec::new();
        if !self.buffer.is_empty() {
            out = self.drain(true);
        }
        if !self.buffer.is_empty() {
            out.push(Lexeme::Content(std::mem::take(&mut self.buffer)));
        }
        out
    }

    /// The longest literal at the start of `rest` (first declared wins a tie).
    fn longest_match(&self, rest: &str) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, lit) in self.literals.iter().enumerate() {
            if !lit.is_empty()
                && rest.starts_with(lit.as_str())
                && best.is_none_or(|b| lit.len() > self.literals[b].len())
            {
                best = Some(i);
            }
        }
        best
    }

    /// Lexes the buffer from the start, leaving in it only a tail that may still become a
    /// literal (nothing when `final_`). Works with a cursor so a long buffer is scanned once.
    fn drain(&mut self, final_: bool) -> Vec<Lexeme> {
        let mut out = Vec::new();
        let mut pos = 0;
        let buf = std::mem::take(&mut self.buffer);
        while pos < buf.len() {
            let rest = &buf[pos..];
            let Some(next) = rest.find(self.first_chars.as_slice()) else {
                out.push(Lexeme::Content(rest.to_string()));
                pos = buf.len();
                break;
            };
            if next > 0 {
                // No literal can start before `next`: content up to the next possible start.
                let end = self.content_boundary(rest);
                out.push(Lexeme::Content(rest[..end].to_string()));
                pos += end;
                continue;
            }
            let best = self.longest_match(rest);
            if !final_ && rest.len() < self.max_len && self.prefixes.contains(rest) {
                // The rest could still grow into a (longer) literal: wait for more text.
                match best {
                    Some(i) => {
                        let len = self.literals[i].len();
                        let longer = self
                            .literals
                            .iter()
                            .any(|lit| lit.len() > len && lit.starts_with(rest));
                        if longer {
                            break;
                        }
                        out.push(Lexeme::Terminal(i));
                        pos += len;
                        continue;
                    }
                    None => break,
                }
            }
            if let Some(i) = best {
                out.push(Lexeme::Terminal(i));
                pos += self.literals[i].len();
            } else {
                let end = self.content_boundary(rest);
                out.push(Lexeme::Content(rest[..end].to_string()));
                pos += end;
            }
        }
        self.buffer = buf[pos..].to_string();
        out
    }

    /// Length of the content run at the start of `buf`: up to the first later position
    /// where a literal starts or where the rest of the buffer is a prefix of a literal.
    /// Always at least one character.
    fn content_boundary(&self, buf: &str) -> usize {
        for (i, c) in buf.char_indices().skip(1) {
            if !self.first_chars.contains(&c) {
                continue;
            }
            let rest = &buf.as_bytes()[i..];
            for lit in &self.literals {
                let n = rest.len().min(lit.len());
                if rest[..n] == lit.as_bytes()[..n] {
                    return i;
                }
            }
        }
        buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex_all(chunks: &[&str]) -> Vec<Lexeme> {
        let mut lexer = Lexer::new(vec![
            "<tool_call>".into(),
            "</tool_call>".into(),
            "<think>".into(),
        ]);
        let mut out = Vec::new();
        for c in chunks {
            out.extend(lexer.feed(c));
        }
        out.extend(lexer.flush());
        // Merge adjacent content for comparison.
        let mut merged: Vec<Lexeme> = Vec::new();
        for l in out {
            match (merged.last_mut(), l) {
                (Some(Lexeme::Content(a)), Lexeme::Content(b)) => a.push_str(&b),
                (_, l) => merged.push(l),
            }
        }
        merged
    }

    #[test]
    fn split_points_do_not_change_the_lexemes() {
        let text = "a<b<tool_call>x</tool_call><thin<think>y</tool_cal";
        let whole = lex_all(&[text]);
        assert_eq!(
            whole,
            vec![
                Lexeme::Content("a<b".into()),
                Lexeme::Terminal(0),
                Lexeme::Content("x".into()),
                Lexeme::Terminal(1),
                Lexeme::Content("<thin".into()),
                Lexeme::Terminal(2),
                Lexeme::Content("y</tool_cal".into()),
            ]
        );
        for size in 1..=7 {
            let chunks: Vec<String> = text
                .chars()
                .collect::<Vec<_>>()
                .chunks(size)
                .map(|c| c.iter().collect())
                .collect();
            let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
            assert_eq!(lex_all(&refs), whole, "chunk size {size}");
        }
    }
}
