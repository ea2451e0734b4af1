//! The projectors' metrics: every name in one place, with its description and labels
//! (`projection` is the projection's name, `store` is `postgres` or `scylla`). Recorded
//! through the `metrics` facade; the process installs the recorder.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Messages in the batches a projector committed (applied, skipped as applied before, or
/// dead-lettered).
pub const MESSAGES: &str = "gallery_projection_messages_total";
/// Time from a batch gathered to its commit in the store.
pub const BATCH_SECONDS: &str = "gallery_projection_batch_seconds";
/// Messages not in the read model yet, per topic: the last stable offset minus the offset the
/// store holds, summed over the partitions this instance owns (every 5 s). Transaction markers
/// the consumer has read past are no messages: caught up on a transactional topic, it is 0.
pub const LAG: &str = "gallery_projection_lag_messages";
/// Messages that were not valid events of their topic, dead-lettered.
pub const DEAD_LETTERS: &str = "gallery_projection_dead_letters_total";
/// Projector sessions that failed and started again from the stored offsets.
pub const RESTARTS: &str = "gallery_projection_restarts_total";

/// The `store` label of the Postgres projector.
pub const POSTGRES: &str = "postgres";
/// The `store` label of the Scylla projector.
pub const SCYLLA: &str = "scylla";

/// Every metric the projectors record.
pub const NAMES: &[&str] = &[MESSAGES, BATCH_SECONDS, LAG, DEAD_LETTERS, RESTARTS];

/// Registers the descriptions with the installed recorder (call after installing it).
pub fn describe() {
    describe_counter!(
        MESSAGES,
        "Messages in the batches a projector committed, by projection and store"
    );
    describe_histogram!(
        BATCH_SECONDS,
        Unit::Seconds,
        "Time to apply and commit one batch, by projection and store"
    );
    describe_gauge!(
        LAG,
        "Messages not in the read model yet, by projection, store and topic"
    );
    describe_counter!(
        DEAD_LETTERS,
        "Invalid messages dead-lettered by a projector, by projection and store"
    );
    describe_counter!(
        RESTARTS,
        "Projector sessions that failed and started again, by projection and store"
    );
}

/// Records a committed batch of `messages` messages that took since `started`.
pub(crate) fn batch_committed(
    projection: &str,
    store: &'static str,
    messages: usize,
    started: std::time::Instant,
) {
    let labels = [
        ("projection", projection.to_owned()),
        ("store", store.to_owned()),
    ];
    metrics::counter!(MESSAGES, &labels).increment(messages as u64);
    metrics::histogram!(BATCH_SECONDS, &labels).record(started.elapsed().as_secs_f64());
}

/// Records a dead letter sent by `projection` in `store`.
pub(crate) fn dead_lettered(projection: &str, store: &'static str) {
    metrics::counter!(DEAD_LETTERS, "projection" => projection.to_owned(), "store" => store)
        .increment(1);
}

/// Records a failed session of `projection` in `store`.
pub(crate) fn restarted(projection: &str, store: &'static str) {
    metrics::counter!(RESTARTS, "projection" => projection.to_owned(), "store" => store)
        .increment(1);
}
