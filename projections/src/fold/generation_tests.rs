//! The job fold as given / when / then: order, duplicates, replays, terminal finality, and the
//! user's cancellation before and after the start; and as properties over any log.

use super::*;
use gallery_schemas::{GenerationMode, StyleName, UserId};
use proptest::prelude::*;

fn user() -> UserId {
    UserId::parse("ada").unwrap_or_else(|e| unreachable!("{e}"))
}

fn image(ext: &str, side: i32) -> ImageRef {
    let hex = format!("{side:064x}");
    ImageRef {
        key: format!("images/sha256/{hex}.{ext}"),
        content_type: format!("image/{ext}"),
        width: side,
        height: side,
        size_bytes: i64::from(side) * 10,
        sha256: hex,
    }
}

/// One event of a job's log.
#[derive(Debug, Clone)]
enum Ev {
    Requested,
    Cancelled,
    Started(&'static str),
    Progressed(i32, i32),
    Completed,
    Failed,
    CancelConfirmed(i32),
}

/// The events of job `id`, each occurring at its index (milliseconds), in a batch.
fn batch(id: Uuid, events: &[(i64, Ev)]) -> GenerationBatch {
    let mut b = GenerationBatch::default();
    for (at, ev) in events {
        add(&mut b, id, *at, ev);
    }
    b
}

fn add(b: &mut GenerationBatch, request_id: Uuid, at: i64, ev: &Ev) {
    // The fold keys jobs by request id; event ids only identify events.
    let event_id = Uuid::now_v7();
    let user_id = user();
    match ev {
        Ev::Requested => b.add_requested(&GenerationRequested {
            event_id,
            request_id,
            user_id,
            mode: GenerationMode::TextToImage,
            prompt: None,
            negative_prompt: None,
            style: StyleName::parse("impressionism").unwrap_or_else(|e| unreachable!("{e}")),
            seed: 1,
            steps: 20,
            width: 512,
            height: 512,
            source_image: None,
            degraded: false,
            occurred_at: at,
        }),
        Ev::Cancelled => b.add_cancelled(&GenerationCancelled {
            event_id,
            request_id,
            user_id,
            occurred_at: at,
        }),
        Ev::Started(model) => b.add_started(&GenerationStarted {
            event_id,
            request_id,
            user_id,
            worker: "gpu-0".into(),
            model: (*model).into(),
            occurred_at: at,
        }),
        Ev::Progressed(step, steps) => b.add_progressed(&GenerationProgressed {
            event_id,
            request_id,
            user_id,
            step: *step,
            steps: *steps,
            occurred_at: at,
        }),
        Ev::Completed => b.add_completed(&GenerationCompleted {
            event_id,
            request_id,
            user_id,
            model: "multistyle26".into(),
            weights_digest: "ab".repeat(32),
            image: image("png", 512),
            webp: image("webp", 512),
            thumbnail: image("png", 128),
            cache_hit: false,
            degraded: false,
            steps: 20,
            width: 512,
            height: 512,
            duration_ms: 1234,
            occurred_at: at,
        }),
        Ev::Failed => b.add_failed(&GenerationFailed {
            event_id,
            request_id,
            user_id,
            code: "unknown_style".into(),
            reason: "no style called cubism".into(),
            occurred_at: at,
        }),
        Ev::CancelConfirmed(step) => b.add_cancel_confirmed(&GenerationCancelConfirmed {
            event_id,
            request_id,
            user_id,
            step: *step,
            occurred_at: at,
        }),
    }
}

type Stored = HashMap<Uuid, JobRow>;

fn apply(stored: &mut Stored, b: &GenerationBatch) -> usize {
    let changed = b.plan(stored);
    let n = changed.len();
    for j in changed {
        stored.insert(j.request_id, j);
    }
    n
}

/// The job after `events` (at their index), one batch per event.
fn fold(id: Uuid, events: &[Ev]) -> JobRow {
    let mut stored = Stored::new();
    for (at, ev) in events.iter().enumerate() {
        apply(&mut stored, &batch(id, &[(at as i64, ev.clone())]));
    }
    stored
        .remove(&id)
        .unwrap_or_else(|| unreachable!("no job after {events:?}"))
}

fn status(events: &[Ev]) -> JobStatus {
    fold(Uuid::nil(), events).status
}

#[test]
fn a_run_moves_the_job_through_running_and_progress_to_its_result() {
    use Ev::*;
    let id = Uuid::now_v7();
    let running = fold(id, &[Requested, Started("multistyle26"), Progressed(5, 20)]);
    assert_eq!(running.status, JobStatus::Running);
    assert_eq!(running.model.as_deref(), Some("multistyle26"));
    assert_eq!(running.started_at_ms, Some(1));
    assert_eq!(
        running.progress,
        Some(Progress {
            step: 5,
            steps: 20,
            at_ms: 2
        })
    );
    assert!(running.result.is_none() && !running.is_final());

    let done = fold(
        id,
        &[
            Requested,
            Started("multistyle26"),
            Progressed(5, 20),
            Completed,
        ],
    );
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.finished_at_ms, Some(3));
    assert_eq!(done.progress.map(|p| (p.step, p.steps)), Some((20, 20)));
    let result = done.result.as_deref().unwrap_or_else(|| unreachable!());
    assert_eq!(result.image.key, image("png", 512).key);
    assert_eq!(result.webp.content_type, "image/webp");
    assert_eq!(
        (result.thumbnail.width, result.thumbnail.size_bytes),
        (128, 1280)
    );
    assert_eq!((result.steps, result.duration_ms), (20, 1234));
    assert!(!result.cache_hit && !result.degraded);
    assert!(done.failure.is_none());
}

#[test]
fn a_cache_hit_completes_a_job_that_never_started() {
    use Ev::*;
    let done = fold(Uuid::now_v7(), &[Requested, Completed]);
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.started_at_ms, None);
    assert_eq!(done.model.as_deref(), Some("multistyle26"));
}

#[test]
fn a_failure_keeps_its_code_and_reason() {
    use Ev::*;
    let failed = fold(Uuid::now_v7(), &[Requested, Started("m"), Failed]);
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(
        failed.failure,
        Some(Failure {
            code: "unknown_style".into(),
            reason: "no style called cubism".into()
        })
    );
    assert!(failed.result.is_none() && failed.is_final());
}

#[test]
fn a_terminal_is_final_whatever_comes_after_it() {
    use Ev::*;
    let done = fold(Uuid::nil(), &[Requested, Started("m"), Completed]);
    for late in [
        Started("other"),
        Progressed(1, 20),
        Cancelled,
        Completed,
        Failed,
        CancelConfirmed(0),
        Requested,
    ] {
        let events = [Requested, Started("m"), Completed, late.clone()];
        assert_eq!(
            fold(Uuid::nil(), &events),
            done,
            "{late:?} after the terminal"
        );
    }
    assert_eq!(
        status(&[Requested, Failed, Completed, Progressed(3, 20)]),
        JobStatus::Failed
    );
    assert_eq!(
        status(&[
            Requested,
            Cancelled,
            CancelConfirmed(0),
            Started("m"),
            Completed
        ]),
        JobStatus::Cancelled
    );
}

#[test]
fn a_duplicate_terminal_changes_nothing() {
    use Ev::*;
    let id = Uuid::now_v7();
    let mut stored = Stored::new();
    apply(&mut stored, &batch(id, &[(0, Requested), (1, Completed)]));
    let once = stored.clone();
    // The same event again (same id, same time): nothing to write.
    assert_eq!(apply(&mut stored, &batch(id, &[(1, Completed)])), 0);
    assert_eq!(stored, once);
}

#[test]
fn a_restart_after_a_crash_keeps_the_first_start_and_shows_the_new_steps() {
    use Ev::*;
    let job = fold(
        Uuid::nil(),
        &[
            Requested,
            Started("m1"),
            Progressed(5, 20),
            Progressed(10, 20),
            // The worker died; another runs the job again, same event ids.
            Started("m1"),
            Progressed(5, 20),
        ],
    );
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(job.started_at_ms, Some(1));
    assert_eq!(
        job.progress,
        Some(Progress {
            step: 5,
            steps: 20,
            at_ms: 5
        })
    );
}

#[test]
fn the_users_cancel_before_the_start_is_cancelled_at_once() {
    use Ev::*;
    let job = fold(Uuid::nil(), &[Requested, Cancelled]);
    assert_eq!(job.status, JobStatus::Cancelled);
    assert_eq!((job.cancelled_at_ms, job.finished_at_ms), (Some(1), None));
    // The worker confirms: final now, cancelled at the user's time still.
    let job = fold(Uuid::nil(), &[Requested, Cancelled, CancelConfirmed(0)]);
    assert_eq!(job.status, JobStatus::Cancelled);
    assert_eq!(
        (job.cancelled_at_ms, job.finished_at_ms),
        (Some(1), Some(2))
    );
    assert_eq!(job.progress, None, "it never ran");
}

#[test]
fn the_users_cancel_of_a_running_job_waits_for_the_worker() {
    use Ev::*;
    let base = [Requested, Started("m"), Progressed(7, 20), Cancelled];
    assert_eq!(status(&base), JobStatus::Cancelling);
    // A second cancel, or more progress, keeps it cancelling.
    assert_eq!(
        status(&[
            Requested,
            Started("m"),
            Cancelled,
            Progressed(8, 20),
            Cancelled
        ]),
        JobStatus::Cancelling
    );
    let confirmed = fold(
        Uuid::nil(),
        &[
            Requested,
            Started("m"),
            Progressed(7, 20),
            Cancelled,
            CancelConfirmed(7),
        ],
    );
    assert_eq!(confirmed.status, JobStatus::Cancelled);
    assert_eq!(confirmed.cancelled_at_ms, Some(3));
    assert_eq!(confirmed.progress.map(|p| (p.step, p.steps)), Some((7, 20)));
    // The worker finished before it read the cancellation: its result stands.
    assert_eq!(
        status(&[Requested, Started("m"), Cancelled, Completed]),
        JobStatus::Completed
    );
    assert_eq!(
        status(&[Requested, Started("m"), Cancelled, Failed]),
        JobStatus::Failed
    );
}

#[test]
fn a_job_cancelled_before_its_start_but_run_anyway_is_cancelling_until_the_worker_ends_it() {
    use Ev::*;
    assert_eq!(
        status(&[Requested, Cancelled, Started("m")]),
        JobStatus::Cancelling
    );
    assert_eq!(
        status(&[Requested, Cancelled, Progressed(2, 20)]),
        JobStatus::Cancelling
    );
    assert_eq!(
        status(&[Requested, Cancelled, Started("m"), Completed]),
        JobStatus::Completed
    );
    assert_eq!(
        status(&[Requested, Cancelled, Started("m"), CancelConfirmed(3)]),
        JobStatus::Cancelled
    );
}

#[test]
fn events_of_an_unknown_job_write_nothing() {
    use Ev::*;
    let mut stored = Stored::new();
    let b = batch(
        Uuid::now_v7(),
        &[(0, Started("m")), (1, Progressed(1, 2)), (2, Completed)],
    );
    assert_eq!(apply(&mut stored, &b), 0);
    assert!(stored.is_empty());
}

#[test]
fn several_events_of_a_job_in_one_batch_equal_one_batch_each() {
    use Ev::*;
    let events = [
        Requested,
        Started("m"),
        Progressed(1, 4),
        Cancelled,
        Progressed(2, 4),
        CancelConfirmed(2),
    ];
    let id = Uuid::now_v7();
    let mut stored = Stored::new();
    let all: Vec<(i64, Ev)> = events
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, e)| (i as i64, e))
        .collect();
    apply(&mut stored, &batch(id, &all));
    assert_eq!(stored.get(&id), Some(&fold(id, &events)));
}

fn any_event() -> impl Strategy<Value = Ev> {
    prop_oneof![
        2 => Just(Ev::Requested),
        2 => Just(Ev::Cancelled),
        3 => prop_oneof![Just("m1"), Just("m2")].prop_map(Ev::Started),
        5 => (0i32..5).prop_map(|s| Ev::Progressed(s, 4)),
        1 => Just(Ev::Completed),
        1 => Just(Ev::Failed),
        1 => (0i32..5).prop_map(Ev::CancelConfirmed),
    ]
}

/// The status a terminal event leaves.
fn terminal_status(ev: &Ev) -> Option<JobStatus> {
    match ev {
        Ev::Completed => Some(JobStatus::Completed),
        Ev::Failed => Some(JobStatus::Failed),
        Ev::CancelConfirmed(_) => Some(JobStatus::Cancelled),
        _ => None,
    }
}

proptest! {
    /// Any log of two jobs, folded in any batching, with every batch applied twice or not,
    /// and then the whole log folded again over the result, gives the rows of one event per
    /// batch; the first terminal decides the final status.
    #[test]
    fn jobs_do_not_depend_on_batching_or_replay(
        log in proptest::collection::vec((any::<bool>(), any_event()), 0..40),
        cuts in proptest::collection::vec(1usize..8, 1..20),
        twice in any::<bool>(),
    ) {
        let ids = [Uuid::from_u128(1), Uuid::from_u128(2)];
        // As in the topic: a job's request comes before anything else about it.
        let log: Vec<(Uuid, i64, Ev)> = [(false, Ev::Requested), (true, Ev::Requested)]
            .into_iter()
            .chain(log)
            .enumerate()
            .map(|(at, (second, ev))| (ids[usize::from(second)], at as i64, ev))
            .collect();
        let batch_of = |events: &[(Uuid, i64, Ev)]| {
            let mut b = GenerationBatch::default();
            for (id, at, ev) in events {
                add(&mut b, *id, *at, ev);
            }
            b
        };

        let mut one_by_one = Stored::new();
        for e in &log {
            apply(&mut one_by_one, &batch_of(std::slice::from_ref(e)));
        }

        let mut batched = Stored::new();
        let mut rest = log.as_slice();
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap_or(&1)).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            let b = batch_of(chunk);
            apply(&mut batched, &b);
            if twice {
                let again = batched.clone();
                prop_assert_eq!(apply(&mut batched, &b), 0, "a replayed batch writes nothing");
                prop_assert_eq!(&batched, &again);
            }
            rest = tail;
        }
        prop_assert_eq!(&batched, &one_by_one);

        let before = batched.clone();
        apply(&mut batched, &batch_of(&log));
        prop_assert_eq!(&batched, &before, "the log folded again over its result");

        for id in ids {
            let events: Vec<&Ev> = log.iter().filter(|e| e.0 == id).map(|e| &e.2).collect();
            let job = &batched[&id];
            match events.iter().find_map(|e| terminal_status(e)) {
                Some(terminal) => {
                    prop_assert_eq!(job.status, terminal);
                    prop_assert!(job.is_final());
                    prop_assert_eq!(job.result.is_some(), terminal == JobStatus::Completed);
                    prop_assert_eq!(job.failure.is_some(), terminal == JobStatus::Failed);
                }
                None => {
                    prop_assert!(!job.is_final());
                    prop_assert!(job.result.is_none() && job.failure.is_none());
                }
            }
        }
    }
}
