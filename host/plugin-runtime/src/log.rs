//! What a plugin may put in berth's log: every text a plugin controls is escaped, so it
//! stays on its own line and cannot pass for berth's own output, and each call has a
//! budget of events and bytes, past which events are dropped and counted.

use std::borrow::Cow;

use crate::limits::Limits;

/// `text` with everything that could start a line of its own, move the cursor, colour
/// the terminal or reorder what a reader sees replaced by a visible escape: C0 and C1
/// controls and DEL (`\n`, `\r`, `\t`, `\u{1b}`…), the Unicode line and paragraph
/// separators and the bidirectional overrides. A backslash is doubled, so an escape
/// the plugin wrote itself cannot be mistaken for one the host made.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\' || is_unprintable(c)
}

/// Whether `c` could start a line, move the cursor or reorder what a reader sees: C0 and
/// C1 controls, DEL, the Unicode line and paragraph separators, the bidirectional marks
/// and overrides.
pub(crate) fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// What one call may still write, and what it could not.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogBudget {
    events_left: u64,
    bytes_left: u64,
    pub(crate) dropped_events: u64,
    pub(crate) dropped_bytes: u64,
}

impl LogBudget {
    pub(crate) fn new(limits: &Limits) -> LogBudget {
        LogBudget {
            events_left: limits.log_events,
            bytes_left: limits.log_bytes,
            dropped_events: 0,
            dropped_bytes: 0,
        }
    }

    /// Takes one event of `bytes` from the budget; `false` (and counted) when it does
    /// not fit. An event is written whole or not at all.
    pub(crate) fn take(&mut self, bytes: u64) -> bool {
        if self.events_left == 0 || bytes > self.bytes_left {
            self.dropped_events += 1;
            self.dropped_bytes = self.dropped_bytes.saturating_add(bytes);
            return false;
        }
        self.events_left -= 1;
        self.bytes_left -= bytes;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_a_plugin_writes_can_start_a_line_or_colour_the_terminal() {
        assert_eq!(escape("plain text = fine"), "plain text = fine");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape("ok\n2026-11-30T00:00:00Z  INFO berth: admin logged in"),
            "ok\\n2026-11-30T00:00:00Z  INFO berth: admin logged in"
        );
        assert_eq!(escape("a\r\tb"), "a\\r\\tb");
        assert_eq!(escape("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape("x\u{2028}y\u{202e}z"), "x\\u{2028}y\\u{202e}z");
        assert_eq!(escape("\u{85}\u{7f}\0"), "\\u{85}\\u{7f}\\u{0}");
        // A backslash the plugin wrote cannot pose as one of the host's escapes.
        assert_eq!(escape("\\n"), "\\\\n");
        for c in (0..=0x10ffffu32).filter_map(char::from_u32) {
            let escaped = escape(&c.to_string()).into_owned();
            assert!(
                !escaped.chars().any(|e| e.is_control() || e == '\u{2028}'),
                "{c:?} escapes to {escaped:?}"
            );
        }
    }

    #[test]
    fn a_budget_takes_whole_events_and_counts_the_rest() {
        let mut budget = LogBudget::new(&Limits {
            log_events: 3,
            log_bytes: 100,
            ..Limits::default()
        });
        assert!(budget.take(60));
        assert!(!budget.take(60), "over the bytes left");
        assert!(budget.take(40));
        assert!(budget.take(0), "an empty event fits while events are left");
        assert!(!budget.take(0), "no events left");
        let mut budget = LogBudget::new(&Limits {
            log_events: 2,
            log_bytes: 1000,
            ..Limits::default()
        });
        assert!(budget.take(1));
        assert!(budget.take(1));
        assert!(!budget.take(1));
        assert!(!budget.take(5));
        assert_eq!((budget.dropped_events, budget.dropped_bytes), (2, 6));
    }
}
