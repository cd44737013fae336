//! How output looks on each stream: colour and symbols on a terminal, plain ASCII elsewhere.
//!
//! Symbols (▶ ✓ ✗ ⏸ and the tree of `chassis trace`) are used only on a terminal whose locale
//! is UTF-8 (the first of `LC_ALL`, `LC_CTYPE`, `LANG` that is set decides); elsewhere each has an
//! ASCII stand-in, so a pipe, a file or a C-locale console gets nothing it cannot show.
//! Colour is used only on a terminal, never with `NO_COLOR` set (<https://no-color.org>) or
//! `TERM=dumb`.

use std::io::IsTerminal;
use std::sync::OnceLock;

/// What one stream may show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Style {
    /// ANSI colour escapes.
    pub color: bool,
    /// Non-ASCII symbols.
    pub unicode: bool,
}

/// A mark that opens a line of progress or of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mark {
    /// A run started or resumed.
    Start,
    /// A model step.
    Step,
    /// A tool call begins.
    Call,
    /// Something succeeded.
    Ok,
    /// Something failed or was refused.
    Fail,
    /// An outcome nobody knows.
    Unknown,
    /// A retry.
    Retry,
    /// A run waits or is paused.
    Wait,
    /// A limit was reached.
    Limit,
    /// A human is asked or decided.
    Human,
    /// A limit was raised.
    Raise,
    /// A run ended.
    End,
    /// A remark in a trace.
    Note,
    /// A call in flight, with no outcome yet.
    Pending,
}

impl Mark {
    /// The symbol, or its ASCII stand-in.
    pub(crate) fn glyph(self, unicode: bool) -> &'static str {
        match (self, unicode) {
            (Mark::Start, true) => "▶",
            (Mark::Start, false) => ">",
            (Mark::Step, true) => "●",
            (Mark::Step, false) => "*",
            (Mark::Call, true) => "→",
            (Mark::Call, false) => "->",
            (Mark::Ok, true) => "✓",
            (Mark::Ok, false) => "+",
            (Mark::Fail, true) => "✗",
            (Mark::Fail, false) => "x",
            (Mark::Unknown, _) => "?",
            (Mark::Retry, true) => "↻",
            (Mark::Retry, false) => "~",
            (Mark::Wait, true) => "⏸",
            (Mark::Wait, false) => "||",
            (Mark::Limit, true) => "⛔",
            (Mark::Limit, false) => "!!",
            (Mark::Human, true) => "✋",
            (Mark::Human, false) => "!",
            (Mark::Raise, true) => "↑",
            (Mark::Raise, false) => "^",
            (Mark::End, true) => "■",
            (Mark::End, false) => "#",
            (Mark::Note, true) => "·",
            (Mark::Note, false) => "-",
            (Mark::Pending, true) => "…",
            (Mark::Pending, false) => "...",
        }
    }

    /// The ANSI colour of the mark, if it has one.
    fn color(self) -> Option<&'static str> {
        match self {
            Mark::Ok => Some("32"),
            Mark::Fail => Some("31"),
            Mark::Wait | Mark::Limit | Mark::Human | Mark::Unknown | Mark::Retry => Some("33"),
            Mark::Start | Mark::End => Some("1"),
            Mark::Step | Mark::Call | Mark::Raise | Mark::Note | Mark::Pending => None,
        }
    }
}

impl Style {
    /// Plain ASCII without colour: what a pipe or a file gets.
    pub(crate) const PLAIN: Style = Style {
        color: false,
        unicode: false,
    };

    /// The style of stdout, decided once.
    pub(crate) fn stdout() -> Style {
        static STYLE: OnceLock<Style> = OnceLock::new();
        *STYLE.get_or_init(|| {
            Style::detect(std::io::stdout().is_terminal(), &|name| {
                std::env::var(name).ok()
            })
        })
    }

    /// The style of stderr, decided once.
    pub(crate) fn stderr() -> Style {
        static STYLE: OnceLock<Style> = OnceLock::new();
        *STYLE.get_or_init(|| {
            Style::detect(std::io::stderr().is_terminal(), &|name| {
                std::env::var(name).ok()
            })
        })
    }

    /// The style of a stream that is (or is not) a terminal, under the environment `env`.
    pub(crate) fn detect(terminal: bool, env: &dyn Fn(&str) -> Option<String>) -> Style {
        if !terminal {
            return Style::PLAIN;
        }
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        let locale = ["LC_ALL", "LC_CTYPE", "LANG"].into_iter().find_map(set);
        let unicode = locale.is_some_and(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("utf-8") || l.contains("utf8")
        });
        let color = set("NO_COLOR").is_none() && set("TERM").as_deref() != Some("dumb");
        Style { color, unicode }
    }

    /// `mark` as it is shown: its symbol (or stand-in), coloured where colour is on.
    pub(crate) fn mark(self, mark: Mark) -> String {
        let glyph = mark.glyph(self.unicode);
        match (self.color, mark.color()) {
            (true, Some(code)) => format!("\x1b[{code}m{glyph}\x1b[0m"),
            _ => glyph.to_string(),
        }
    }

    /// An arrow between two things: `→` or `->`.
    pub(crate) fn arrow(self) -> &'static str {
        Mark::Call.glyph(self.unicode)
    }

    /// What marks text cut short: `…` or `...`.
    pub(crate) fn ellipsis(self) -> &'static str {
        if self.unicode { "…" } else { "..." }
    }

    /// A separator between items of a summary: ` · ` or `, `.
    pub(crate) fn dot(self) -> &'static str {
        if self.unicode { " · " } else { ", " }
    }

    /// A horizontal rule segment: `──` or `--`.
    pub(crate) fn rule(self) -> &'static str {
        if self.unicode { "──" } else { "--" }
    }

    /// `text` in bold, where colour is on.
    pub(crate) fn bold(self, text: &str) -> String {
        if self.color {
            format!("\x1b[1m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_pipe_gets_plain_ascii_whatever_the_environment() {
        let style = Style::detect(false, &env(&[("LANG", "en_US.UTF-8")]));
        assert_eq!(style, Style::PLAIN);
    }

    #[test]
    fn the_first_locale_variable_set_decides_and_no_color_is_honoured() {
        let utf8 = Style::detect(true, &env(&[("LANG", "en_US.UTF-8")]));
        assert_eq!(
            utf8,
            Style {
                color: true,
                unicode: true
            }
        );
        let c = Style::detect(true, &env(&[("LC_ALL", "C"), ("LANG", "en_US.UTF-8")]));
        assert!(!c.unicode);
        let ctype = Style::detect(true, &env(&[("LC_CTYPE", "C.utf8"), ("LANG", "C")]));
        assert!(ctype.unicode);
        assert!(!Style::detect(true, &env(&[])).unicode);
        let no_color = Style::detect(true, &env(&[("NO_COLOR", "1"), ("LANG", "C.UTF-8")]));
        assert!(!no_color.color && no_color.unicode);
        assert!(Style::detect(true, &env(&[("NO_COLOR", "")])).color);
        assert!(!Style::detect(true, &env(&[("TERM", "dumb")])).color);
    }

    #[test]
    fn ascii_stand_ins_are_ascii() {
        for mark in [
            Mark::Start,
            Mark::Step,
            Mark::Call,
            Mark::Ok,
            Mark::Fail,
            Mark::Unknown,
            Mark::Retry,
            Mark::Wait,
            Mark::Limit,
            Mark::Human,
            Mark::Raise,
            Mark::End,
            Mark::Note,
            Mark::Pending,
        ] {
            assert!(mark.glyph(false).is_ascii(), "{mark:?}");
            assert_eq!(Style::PLAIN.mark(mark), mark.glyph(false));
        }
    }
}
