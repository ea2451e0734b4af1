//! The painter's metrics: every name in one place, with its description and labels. They are
//! recorded through the `metrics` facade; the process that runs the painter installs a
//! recorder (the `gallery` binary serves them for Prometheus at `/metrics`).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Jobs finished by this process, by `outcome` (`completed`, `failed`, `cancelled`).
pub const JOBS_FINISHED: &str = "gallery_painter_jobs_finished_total";
/// Failed jobs by `code` (the `GenerationFailed` code).
pub const JOBS_FAILED: &str = "gallery_painter_jobs_failed_total";
/// Completions served from the result cache, without inference.
pub const CACHE_HITS: &str = "gallery_painter_cache_hits_total";
/// Completions that ran degraded (fewer steps, smaller) because of the backlog.
pub const DEGRADED: &str = "gallery_painter_degraded_total";
/// Seconds a completed job spent painting (inference and encoding), by `mode`.
pub const PAINT_SECONDS: &str = "gallery_painter_paint_seconds";
/// Buckets of [`PAINT_SECONDS`]: from a small picture on a GPU to real diffusion on a CPU.
pub const PAINT_SECONDS_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Requests held (queued or running or waiting for their terminal's transaction).
pub const HELD: &str = "gallery_painter_held_requests";
/// Jobs on the paint threads right now.
pub const RUNNING: &str = "gallery_painter_running_jobs";
/// The paint threads' utilisation over the last sampling interval, 0 to 1: the share of
/// their time spent painting. On a GPU it is the share of time the device works for the
/// painter's jobs.
pub const UTILISATION: &str = "gallery_painter_utilisation_ratio";
/// Paint threads of this worker.
pub const THREADS: &str = "gallery_painter_threads";
/// The device the networks run on, as labels (`kind`, `ordinal`, `name`); the value is 1.
pub const DEVICE_INFO: &str = "gallery_painter_device_info";
/// Device memory in use (all processes), in bytes; only for a CUDA device.
pub const DEVICE_MEMORY_USED: &str = "gallery_painter_device_memory_used_bytes";
/// Device memory in all, in bytes; only for a CUDA device.
pub const DEVICE_MEMORY_TOTAL: &str = "gallery_painter_device_memory_total_bytes";
/// Messages of the generation topic that were not generation events, dead-lettered.
pub const DEAD_LETTERS: &str = "gallery_painter_dead_letters_total";
/// Kafka transactions, by `result` (`committed`, `aborted`, `fatal`).
pub const TRANSACTIONS: &str = "gallery_painter_transactions_total";

/// Every metric the painter records.
pub const NAMES: &[&str] = &[
    JOBS_FINISHED,
    JOBS_FAILED,
    CACHE_HITS,
    DEGRADED,
    PAINT_SECONDS,
    HELD,
    RUNNING,
    UTILISATION,
    THREADS,
    DEVICE_INFO,
    DEVICE_MEMORY_USED,
    DEVICE_MEMORY_TOTAL,
    DEAD_LETTERS,
    TRANSACTIONS,
];

/// Registers the descriptions with the installed recorder (call after installing it).
pub fn describe() {
    describe_counter!(
        JOBS_FINISHED,
        "Generation jobs finished, by outcome (completed, failed, cancelled)"
    );
    describe_counter!(JOBS_FAILED, "Failed generation jobs, by failure code");
    describe_counter!(
        CACHE_HITS,
        "Completions served from the result cache without inference"
    );
    describe_counter!(DEGRADED, "Completions degraded because of the backlog");
    describe_histogram!(
        PAINT_SECONDS,
        Unit::Seconds,
        "Time a completed job spent painting (inference and encoding), by mode"
    );
    describe_gauge!(HELD, "Generation requests held by the painter");
    describe_gauge!(RUNNING, "Jobs on the paint threads");
    describe_gauge!(
        UTILISATION,
        "Share of the paint threads' time spent painting over the last interval (0 to 1)"
    );
    describe_gauge!(THREADS, "Paint threads");
    describe_gauge!(
        DEVICE_INFO,
        "The device the networks run on (labels kind, ordinal, name); always 1"
    );
    describe_gauge!(
        DEVICE_MEMORY_USED,
        Unit::Bytes,
        "Device memory in use on the painter's CUDA device"
    );
    describe_gauge!(
        DEVICE_MEMORY_TOTAL,
        Unit::Bytes,
        "Device memory of the painter's CUDA device"
    );
    describe_counter!(
        DEAD_LETTERS,
        "Messages of the generation topic dead-lettered by the painter"
    );
    describe_counter!(
        TRANSACTIONS,
        "Kafka transactions of the painter, by result (committed, aborted, fatal, wedged)"
    );
}
