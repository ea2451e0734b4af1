//! The write side's own metrics (HTTP requests are counted by the binary's HTTP layer): every
//! name in one place, with its description.

use metrics::describe_counter;

/// Keyed commands whose dead earlier attempt had decided an event, by `outcome`:
/// `found_in_log` (the event was in the log: answered with its position, nothing sent),
/// `sent_again` (not found, or the log cannot be searched at all: the event was sent) or
/// `search_failed` (the search failed for a while: refused as unavailable, nothing sent).
pub const TAKEOVERS: &str = "gallery_command_takeovers_total";

/// Every metric the write side records.
pub const NAMES: &[&str] = &[TAKEOVERS];

/// Registers the descriptions with the installed recorder (call after installing it).
pub fn describe() {
    describe_counter!(
        TAKEOVERS,
        "Takeovers of a dead attempt's decided event, by outcome (found_in_log, sent_again, search_failed)"
    );
}

/// What a takeover did with the event the dead attempt decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Takeover {
    FoundInLog,
    SentAgain,
    SearchFailed,
}

pub(crate) fn took_over(outcome: Takeover) {
    let outcome = match outcome {
        Takeover::FoundInLog => "found_in_log",
        Takeover::SentAgain => "sent_again",
        Takeover::SearchFailed => "search_failed",
    };
    metrics::counter!(TAKEOVERS, "outcome" => outcome).increment(1);
}
