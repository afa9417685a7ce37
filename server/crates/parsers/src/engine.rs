//! The GLM output state machine: a port of vLLM 0.32's parser engine with the `glm47_moe`
//! configuration (which vLLM uses for both `glm45` and `glm47`). Text goes in, semantic
//! events come out; the tool-call and reasoning parsers turn events into API fields.
//!
//! States: `Content`, `Reasoning`, `ToolName`, `ToolArgs`. Transitions (thinking on):
//!
//! | state     | terminal                 | next      | events                      |
//! |-----------|--------------------------|-----------|-----------------------------|
//! | Content   | `<think>`                | Reasoning | ReasoningStart              |
//! | Content   | `</think>`               | Content   | (swallowed)                 |
//! | Reasoning | `<think>`                | Reasoning | (swallowed)                 |
//! | Reasoning | `</think>`               | Content   | ReasoningEnd                |
//! | Reasoning | `<tool_call>`            | ToolName  | ReasoningEnd, ToolCallStart |
//! | Content   | `<tool_call>`            | ToolName  | ToolCallStart               |
//! | ToolName  | `<arg_key>`              | ToolArgs  | ArgChunk(tag)               |
//! | ToolArgs  | any arg tag              | ToolArgs  | ArgChunk(tag)               |
//! | ToolName/ToolArgs | `</tool_call>`   | Content   | ToolCallEnd                 |
//!
//! A terminal with no transition is text of the current state; special tokens (other than
//! the tags) are dropped everywhere. With thinking off the think tags are not terminals.

mod lexer;

use lexer::{Lexeme, Lexer};

pub(crate) const THINK_START: &str = "<think>";
pub(crate) const THINK_END: &str = "</think>";
pub(crate) const TOOL_CALL_START: &str = "<tool_call>";
pub(crate) const TOOL_CALL_END: &str = "</tool_call>";
pub(crate) const ARG_KEY_START: &str = "<arg_key>";
pub(crate) const ARG_KEY_END: &str = "</arg_key>";
pub(crate) const ARG_VALUE_START: &str = "<arg_value>";
pub(crate) const ARG_VALUE_END: &str = "</arg_value>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Content,
    Reasoning,
    ToolName,
    ToolArgs,
}

impl State {
    fn is_tool(self) -> bool {
        matches!(self, State::ToolName | State::ToolArgs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Terminal {
    ThinkStart,
    ThinkEnd,
    ToolStart,
    ToolEnd,
    ArgKeyStart,
    ArgKeyEnd,
    ArgValueStart,
    ArgValueEnd,
    Drop,
}

impl Terminal {
    /// Terminals that take part in tool transitions (vLLM `_tool_terminals`).
    fn is_tool(self) -> bool {
        matches!(
            self,
            Terminal::ToolStart
                | Terminal::ToolEnd
                | Terminal::ArgKeyStart
                | Terminal::ArgKeyEnd
                | Terminal::ArgValueStart
                | Terminal::ArgValueEnd
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Text(String),
    Reasoning(String),
    ReasoningEnd,
    ToolCallStart,
    ToolName(String),
    ArgChunk(String),
    ToolCallEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Emit {
    ReasoningStart,
    ReasoningEnd,
    ToolCallStart,
    ArgChunk,
    ToolCallEnd,
}

/// How an engine instance treats the markup.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    /// Think tags are terminals (vLLM: thinking enabled).
    pub thinking: bool,
    pub initial_state: State,
    /// The reasoning pass: tool tags are text (vLLM `skip_tool_parsing`), except that
    /// `<tool_call>` inside reasoning still ends it.
    pub skip_tool_parsing: bool,
    /// Tool pass without a reasoning parser: think tags are text (`skip_reasoning_parsing`).
    pub skip_reasoning_parsing: bool,
    /// Special tokens removed from the text wherever they appear.
    pub drop_tokens: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Engine {
    config: EngineConfig,
    lexer: Lexer,
    terminals: Vec<Terminal>,
    state: State,
    in_skipped_tool_span: bool,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        let mut literals: Vec<(String, Terminal)> = Vec::new();
        if config.thinking {
            literals.push((THINK_START.into(), Terminal::ThinkStart));
            literals.push((THINK_END.into(), Terminal::ThinkEnd));
        }
        for (lit, t) in [
            (TOOL_CALL_START, Terminal::ToolStart),
            (TOOL_CALL_END, Terminal::ToolEnd),
            (ARG_KEY_START, Terminal::ArgKeyStart),
            (ARG_KEY_END, Terminal::ArgKeyEnd),
            (ARG_VALUE_START, Terminal::ArgValueStart),
            (ARG_VALUE_END, Terminal::ArgValueEnd),
        ] {
            literals.push((lit.into(), t));
        }
        for token in &config.drop_tokens {
            // Tags the config already knows are never dropped (vLLM `configured_texts`).
            let known = [
                THINK_START,
                THINK_END,
                TOOL_CALL_START,
                TOOL_CALL_END,
                ARG_KEY_START,
                ARG_KEY_END,
                ARG_VALUE_START,
                ARG_VALUE_END,
            ];
            if !token.is_empty()
                && !known.contains(&token.as_str())
                && !literals.iter().any(|(l, _)| l == token)
            {
                literals.push((token.clone(), Terminal::Drop));
            }
        }
        let terminals = literals.iter().map(|(_, t)| *t).collect();
        let lexer = Lexer::new(literals.into_iter().map(|(l, _)| l).collect());
        let state = config.initial_state;
        Engine {
            config,
            lexer,
            terminals,
            state,
            in_skipped_tool_span: false,
        }
    }

    /// Feeds a piece of model output.
    pub fn feed(&mut self, text: &str) -> Vec<Event> {
        let lexemes = self.lexer.feed(text);
        self.process(lexemes)
    }

    /// End of output: flush held-back text, close an open call or reasoning block.
    pub fn finish(&mut self) -> Vec<Event> {
        let lexemes = self.lexer.flush();
        let mut events = self.process(lexemes);
        if self.state.is_tool() {
            events.push(Event::ToolCallEnd);
            self.state = State::Content;
        } else if self.state == State::Reasoning {
            events.push(Event::ReasoningEnd);
            self.state = State::Content;
        }
        events
    }

    fn process(&mut self, lexemes: Vec<Lexeme>) -> Vec<Event> {
        let mut events = Vec::new();
        for lexeme in lexemes {
            match lexeme {
                Lexeme::Content(text) => {
                    if !text.is_empty() {
                        events.extend(self.emit_for_state(text));
                    }
                }
                Lexeme::Terminal(i) => {
                    let terminal = self.terminals[i];
                    let value = self.lexer.literal(i).to_string();
                    events.extend(self.on_terminal(terminal, value));
                }
            }
        }
        events
    }

    fn emit_for_state(&self, text: String) -> Option<Event> {
        Some(match self.state {
            State::Content => Event::Text(text),
            State::Reasoning => Event::Reasoning(text),
            State::ToolName => Event::ToolName(text),
            State::ToolArgs => Event::ArgChunk(text),
        })
    }

    /// The transition table of the `glm47_moe` config.
    fn transition(&self, terminal: Terminal) -> Option<(State, &'static [Emit])> {
        use State::*;
        use Terminal::*;
        let thinking = self.config.thinking;
        Some(match (self.state, terminal) {
            (Content, ThinkStart) if thinking => (Reasoning, &[Emit::ReasoningStart]),
            (Reasoning, ThinkEnd) if thinking => (Content, &[Emit::ReasoningEnd]),
            (Content, ThinkEnd) if thinking => (Content, &[]),
            (Reasoning, ThinkStart) => (Reasoning, &[]),
            (Reasoning, ToolStart) => (ToolName, &[Emit::ReasoningEnd, Emit::ToolCallStart]),
            (Content, ToolStart) => (ToolName, &[Emit::ToolCallStart]),
            (ToolName, ArgKeyStart) => (ToolArgs, &[Emit::ArgChunk]),
            (ToolName, ToolEnd) | (ToolArgs, ToolEnd) => (Content, &[Emit::ToolCallEnd]),
            (ToolArgs, ArgKeyStart | ArgKeyEnd | ArgValueStart | ArgValueEnd) => {
                (ToolArgs, &[Emit::ArgChunk])
            }
            _ => return None,
        })
    }

    fn on_terminal(&mut self, terminal: Terminal, value: String) -> Vec<Event> {
        let Some((next, emits)) = self.transition(terminal) else {
            if terminal == Terminal::Drop {
                return Vec::new();
            }
            if self.config.skip_tool_parsing && terminal == Terminal::ToolEnd {
                self.in_skipped_tool_span = false;
            }
            return self.emit_for_state(value).into_iter().collect();
        };
        if self.config.skip_reasoning_parsing
            && matches!(terminal, Terminal::ThinkStart | Terminal::ThinkEnd)
        {
            return self.emit_for_state(value).into_iter().collect();
        }
        if self.config.skip_tool_parsing && terminal.is_tool() {
            let is_opener = next.is_tool();
            let is_exit = terminal == Terminal::ToolEnd;
            let used_as_plain_closer = is_exit && !is_opener && !self.in_skipped_tool_span;
            if !used_as_plain_closer {
                if is_opener {
                    self.in_skipped_tool_span = true;
                } else if is_exit {
                    self.in_skipped_tool_span = false;
                }
                if emits.contains(&Emit::ReasoningEnd) {
                    // `<tool_call>` inside reasoning ends it; the call itself is content
                    // for the tool pass.
                    self.state = State::Content;
                    return vec![Event::ReasoningEnd, Event::Text(value)];
                }
                return self.emit_for_state(value).into_iter().collect();
            }
        }
        self.state = next;
        emits
            .iter()
            .filter_map(|emit| match emit {
                Emit::ReasoningStart => None,
                Emit::ReasoningEnd => Some(Event::ReasoningEnd),
                Emit::ToolCallStart => Some(Event::ToolCallStart),
                Emit::ArgChunk => Some(Event::ArgChunk(value.clone())),
                Emit::ToolCallEnd => Some(Event::ToolCallEnd),
            })
            .collect()
    }
}
