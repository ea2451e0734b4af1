//! The AI painter's worker against the real Kafka and schema registry, run in-process with a
//! small deterministic painter (image arithmetic in steps): results, the result cache, single
//! flight, duplicates, cancellation, bad input, fairness and degradation. Every request is
//! checked to end in exactly one terminal event, read with `isolation.level=read_committed`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestEnv;
use common::generation::{
    Requests, Results, RunningWorker, StepPainter, both, objects, only_terminal, photo_request,
    text_request, worker_settings,
};
use gallery_commands::MediaStore;
use gallery_gpu_workers::{Painters, WorkerSettings};
use gallery_schemas::{Event, GenerationRequested, ImageRef, Prompt};
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    env: TestEnv,
    store: Arc<dyn ObjectStore>,
    dir: std::path::PathBuf,
    requests: Requests,
    results: Results,
}

async fn setup() -> Setup {
    let env = TestEnv::new().await;
    gallery::topics::ensure_topics(&env.config).await.unwrap();
    let media = MediaStore::open(&env.config.media).unwrap();
    let dir = std::path::PathBuf::from(&env.config.media.store_url);
    Setup {
        store: media.object_store(),
        requests: Requests::new(&env.config),
        results: Results::new(&env.config),
        dir,
        env,
    }
}

impl Setup {
    fn worker(&self, settings: WorkerSettings, painters: Painters) -> RunningWorker {
        RunningWorker::start(&self.env.config, settings, self.store.clone(), painters)
    }

    /// Stores `bytes` as a photo would be, returning the reference a request carries.
    async fn photo(&self, bytes: Vec<u8>, width: i32, height: i32) -> ImageRef {
        let sha = hex::encode(Sha256::digest(&bytes));
        let key = format!("images/sha256/{sha}.png");
        let size = bytes.len() as i64;
        self.store
            .put(&object_store::path::Path::from(key.as_str()), bytes.into())
            .await
            .unwrap();
        ImageRef {
            key,
            content_type: "image/png".into(),
            width,
            height,
            size_bytes: size,
            sha256: sha,
        }
    }

    fn bytes(&self, key: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(key)).unwrap()
    }
}

fn completed(event: &Event) -> &gallery_schemas::GenerationCompleted {
    match event {
        Event::GenerationCompleted(c) => c,
        other => panic!("expected a completion, got {other:#?}"),
    }
}

fn failed_code(event: &Event) -> (&str, &str) {
    match event {
        Event::GenerationFailed(f) => (f.code.as_str(), f.reason.as_str()),
        other => panic!("expected a failure, got {other:#?}"),
    }
}

fn cancelled_step(event: &Event) -> i32 {
    match event {
        Event::GenerationCancelConfirmed(c) => c.step,
        other => panic!("expected a cancel confirmation, got {other:#?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_is_started_progressed_and_completed_with_its_images_stored() {
    let mut s = setup().await;
    let painter = StepPainter::new(Duration::from_millis(60));
    let worker = s.worker(worker_settings(&s.env.config), both(painter.clone()));
    let request = text_request("ada", "a lighthouse", "warm", 10, 96);
    s.requests.request(&request).await;
    let id = request.request_id;
    s.results
        .until(WAIT, "the completion", |r| r.has_terminal(id))
        .await;

    let events = s.results.of(id);
    let kinds: Vec<&str> = events.iter().map(|e| e.record_name()).collect();
    assert_eq!(
        kinds.first(),
        Some(&"gallery.generation.GenerationRequested")
    );
    assert_eq!(
        kinds.get(1),
        Some(&"gallery.generation.GenerationStarted"),
        "{kinds:?}"
    );
    let progressed: Vec<(i32, i32)> = events
        .iter()
        .filter_map(|e| match e {
            Event::GenerationProgressed(p) => Some((p.step, p.steps)),
            _ => None,
        })
        .collect();
    assert!(
        (2..=10).contains(&progressed.len()),
        "throttled progress, 600 ms at most one per 100 ms: {progressed:?}"
    );
    assert!(progressed.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(progressed.iter().all(|(_, steps)| *steps == 10));
    let Event::GenerationStarted(started) = events[1] else {
        unreachable!()
    };
    assert_eq!(started.model, "test-steps");
    assert_eq!(
        started.worker,
        s.env.config.painter_settings().transactional_id()
    );

    let done = completed(events.last().unwrap());
    assert!(!done.cache_hit && !done.degraded);
    assert_eq!((done.steps, done.width, done.height), (10, 96, 96));
    assert_eq!(done.model, "test-steps");
    assert_eq!(done.image.content_type, "image/png");
    assert_eq!(done.webp.content_type, "image/webp");
    for image in [&done.image, &done.webp, &done.thumbnail] {
        let bytes = s.bytes(&image.key);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), image.sha256);
        assert_eq!(bytes.len() as i64, image.size_bytes);
        assert!(image.key.starts_with("images/sha256/"), "{}", image.key);
        let decoded = image::load_from_memory(&bytes).unwrap();
        assert_eq!(
            (decoded.width() as i32, decoded.height() as i32),
            (image.width, image.height)
        );
    }
    let png = image::load_from_memory(&s.bytes(&done.image.key)).unwrap();
    let webp = image::load_from_memory(&s.bytes(&done.webp.key)).unwrap();
    assert_eq!(png.to_rgb8(), webp.to_rgb8(), "the WebP is lossless");
    // The event ids derive from the request: a re-run would emit the same ones.
    assert_eq!(
        events.last().unwrap().event_id(),
        gallery_gpu_workers::worker::ids::terminal(id)
    );
    assert_eq!(painter.calls(), 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_picture_again_comes_from_the_cache_and_identical_jobs_run_once() {
    let mut s = setup().await;
    let painter = StepPainter::new(Duration::from_millis(40));
    let settings = WorkerSettings {
        threads: 2,
        ..worker_settings(&s.env.config)
    };
    let worker = s.worker(settings, both(painter.clone()));

    // Two identical requests at once, with two paint threads: painted once.
    let a = text_request("ada", "a harbour at dawn", "cool", 8, 64);
    let b = text_request("bob", "a harbour at dawn", "cool", 8, 64);
    s.requests.request(&a).await;
    s.requests.request(&b).await;
    s.results
        .until(WAIT, "both completions", |r| {
            r.has_terminal(a.request_id) && r.has_terminal(b.request_id)
        })
        .await;
    let (ca, cb) = (
        only_terminal(&s.results, a.request_id),
        only_terminal(&s.results, b.request_id),
    );
    let (ca, cb) = (completed(&ca), completed(&cb));
    assert_eq!(painter.calls(), 1, "identical jobs in flight run once");
    assert_eq!(ca.image, cb.image);
    assert!(
        ca.cache_hit != cb.cache_hit,
        "one painted, one took its result"
    );
    let stored = objects(&s.dir);

    // The same picture later: at once from the cache, no inference, nothing stored.
    let c = text_request("cyd", "a harbour at dawn", "cool", 8, 64);
    s.requests.request(&c).await;
    s.results
        .until(WAIT, "the cached completion", |r| {
            r.has_terminal(c.request_id)
        })
        .await;
    let cc = only_terminal(&s.results, c.request_id);
    let cc = completed(&cc);
    assert!(cc.cache_hit);
    assert_eq!(cc.duration_ms, 0);
    assert_eq!(cc.image, ca.image);
    assert_eq!(cc.thumbnail, ca.thumbnail);
    assert_eq!(painter.calls(), 1);
    assert!(
        !s.results.has_started(c.request_id),
        "a cache hit is not started"
    );
    assert_eq!(objects(&s.dir), stored, "no new object");
    // The images (a small picture is its own thumbnail) and one cache manifest.
    let images: std::collections::BTreeSet<&str> = [&ca.image.key, &ca.webp.key, &ca.thumbnail.key]
        .into_iter()
        .map(String::as_str)
        .collect();
    assert_eq!(stored.len(), images.len() + 1, "{stored:?}");
    assert!(images.iter().all(|k| stored.contains(&(*k).to_owned())));

    // Another seed is another picture.
    let d = GenerationRequested {
        seed: 8,
        ..text_request("ada", "a harbour at dawn", "cool", 8, 64)
    };
    s.requests.request(&d).await;
    s.results
        .until(WAIT, "a new picture", |r| r.has_terminal(d.request_id))
        .await;
    let cd = only_terminal(&s.results, d.request_id);
    assert!(!completed(&cd).cache_hit);
    assert_eq!(painter.calls(), 2);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_sent_twice_is_one_job_with_one_terminal() {
    let mut s = setup().await;
    let painter = StepPainter::new(Duration::from_millis(20));
    let worker = s.worker(worker_settings(&s.env.config), both(painter.clone()));
    let request = text_request("ada", "twice", "warm", 5, 64);
    // A command retried with the same idempotency key carries the same request id.
    s.requests.request(&request).await;
    s.requests.request(&request).await;
    let after = text_request("ada", "after", "warm", 5, 64);
    s.requests.request(&after).await;
    s.results
        .until(WAIT, "both requests done", |r| {
            r.has_terminal(request.request_id) && r.has_terminal(after.request_id)
        })
        .await;
    s.results.settle(Duration::from_secs(2)).await;
    assert_eq!(s.results.terminals(request.request_id).len(), 1);
    let started = s
        .results
        .of(request.request_id)
        .iter()
        .filter(|e| matches!(e, Event::GenerationStarted(_)))
        .count();
    assert_eq!(started, 1);
    assert_eq!(painter.calls(), 2);
    worker.stop().await;

    // A second worker on the same group (a restart) reads from the committed offsets and
    // does nothing again.
    let again = s.worker(worker_settings(&s.env.config), both(painter.clone()));
    s.results.settle(Duration::from_secs(4)).await;
    assert_eq!(painter.calls(), 2);
    assert!(s.results.terminal_counts().values().all(|n| *n == 1));
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_is_honoured_before_and_during_a_run() {
    let mut s = setup().await;
    let painter = StepPainter::new(Duration::from_millis(50));
    let worker = s.worker(worker_settings(&s.env.config), both(painter.clone()));
    // One paint thread: `long` runs (100 steps, 5 s), `queued` waits behind it.
    let long = text_request("ada", "long", "warm", 100, 64);
    let queued = text_request("ada", "queued", "cool", 5, 64);
    s.requests.request(&long).await;
    s.results
        .until(WAIT, "the long job started", |r| {
            r.has_started(long.request_id)
        })
        .await;
    s.requests.request(&queued).await;
    s.results
        .until(WAIT, "progress of the long job", |r| {
            r.of(long.request_id)
                .iter()
                .any(|e| matches!(e, Event::GenerationProgressed(p) if p.step >= 3))
        })
        .await;
    s.requests.cancel(&queued).await;
    s.results
        .until(WAIT, "the queued job cancelled", |r| {
            r.has_terminal(queued.request_id)
        })
        .await;
    assert_eq!(
        cancelled_step(&only_terminal(&s.results, queued.request_id)),
        0
    );
    assert!(
        !s.results.has_started(queued.request_id),
        "cancelled before it started"
    );
    assert!(!s.results.has_terminal(long.request_id), "still running");

    s.requests.cancel(&long).await;
    s.results
        .until(WAIT, "the running job cancelled", |r| {
            r.has_terminal(long.request_id)
        })
        .await;
    let step = cancelled_step(&only_terminal(&s.results, long.request_id));
    assert!((3..100).contains(&step), "stopped mid-run, at {step}");

    // A cancel of a finished request changes nothing; the worker goes on.
    s.requests.cancel(&long).await;
    let next = text_request("ada", "next", "cool", 3, 64);
    s.requests.request(&next).await;
    s.results
        .until(WAIT, "the next job", |r| r.has_terminal(next.request_id))
        .await;
    completed(&only_terminal(&s.results, next.request_id));
    s.results.settle(Duration::from_secs(1)).await;
    assert!(s.results.terminal_counts().values().all(|n| *n == 1));
    assert_eq!(painter.calls(), 2, "the queued job never painted");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_behind_the_pause_point_is_honoured_while_the_worker_is_full() {
    let mut s = setup().await;
    let painter = StepPainter::new(Duration::from_millis(50));
    // Room for two requests: one running, one queued; then the partitions are paused.
    let settings = WorkerSettings {
        max_held: 2,
        ..worker_settings(&s.env.config)
    };
    let worker = s.worker(settings, both(painter.clone()));
    let long = text_request("ada", "long", "warm", 200, 64);
    let queued = text_request("bob", "queued", "cool", 3, 64);
    s.requests.request(&long).await;
    s.results
        .until(WAIT, "the long job started", |r| {
            r.has_started(long.request_id)
        })
        .await;
    s.requests.request(&queued).await;
    // The worker holds two now and pauses on its next tick; what comes later is not read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later: Vec<GenerationRequested> = (0..3)
        .map(|i| text_request("cyd", &format!("later {i}"), "warm", 3, 64))
        .collect();
    for request in &later {
        s.requests.request(request).await;
    }
    s.requests.cancel(&queued).await;
    s.results
        .until(WAIT, "the queued job cancelled", |r| {
            r.has_terminal(queued.request_id)
        })
        .await;
    assert_eq!(
        cancelled_step(&only_terminal(&s.results, queued.request_id)),
        0,
        "cancelled while queued, never painted"
    );
    assert!(
        !s.results.has_terminal(long.request_id),
        "seen while the worker was still full (the long job runs for 10 s)"
    );

    s.requests.cancel(&long).await;
    s.results
        .until(WAIT, "everything answered", |r| {
            r.has_terminal(long.request_id) && later.iter().all(|l| r.has_terminal(l.request_id))
        })
        .await;
    for request in &later {
        completed(&only_terminal(&s.results, request.request_id));
    }
    s.results.settle(Duration::from_secs(1)).await;
    assert!(s.results.terminal_counts().values().all(|n| *n == 1));
    assert_eq!(painter.calls(), 4, "the long job and the later three");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_fails_with_its_code_and_the_worker_goes_on() {
    let mut s = setup().await;
    let painter = StepPainter::new(Duration::from_millis(5));
    let settings = WorkerSettings {
        max_prompt_chars: 40,
        source_limits: gallery_gpu_workers::SourceLimits {
            max_side: 256,
            ..gallery_gpu_workers::SourceLimits::default()
        },
        ..worker_settings(&s.env.config)
    };
    // No text-to-image model: those requests are `model_unavailable`.
    let painters = Painters::new(
        Err("no diffusion weights configured".into()),
        Ok(painter.clone()),
    );
    let worker = s.worker(settings, painters);

    let good_photo = common::png(80, 60);
    let good = s.photo(good_photo.clone(), 80, 60).await;
    let mut corrupt_bytes = good_photo.clone();
    let n = corrupt_bytes.len();
    for b in &mut corrupt_bytes[n - 40..n - 20] {
        *b ^= 0xff;
    }
    let corrupt = s.photo(corrupt_bytes, 80, 60).await;
    let oversized = s.photo(common::png(300, 100), 300, 100).await;
    let text = s
        .photo(
            b"these are not the pixels you are looking for".to_vec(),
            80,
            60,
        )
        .await;
    let missing = ImageRef {
        key: format!("images/sha256/{}.png", "ab".repeat(32)),
        sha256: "ab".repeat(32),
        ..good.clone()
    };
    let forged = ImageRef {
        sha256: "cd".repeat(32),
        ..good.clone()
    };

    let cases: Vec<(GenerationRequested, &str, &str)> = vec![
        (
            photo_request("ada", good.clone(), "baroque", 3, 64),
            "unknown_style",
            "baroque",
        ),
        (
            GenerationRequested {
                prompt: Some(Prompt::parse("a".repeat(41)).unwrap()),
                ..photo_request("ada", good.clone(), "warm", 3, 64)
            },
            "invalid_prompt",
            "41 characters",
        ),
        (
            photo_request("ada", corrupt, "warm", 3, 64),
            "invalid_image",
            "corrupt",
        ),
        (
            photo_request("ada", oversized, "warm", 3, 64),
            "invalid_image",
            "300x100",
        ),
        (
            photo_request("ada", text, "warm", 3, 64),
            "invalid_image",
            "not a PNG",
        ),
        (
            photo_request("ada", missing, "warm", 3, 64),
            "invalid_image",
            "not in the object store",
        ),
        (
            photo_request("ada", forged, "warm", 3, 64),
            "invalid_image",
            "digest",
        ),
        (
            GenerationRequested {
                source_image: None,
                ..photo_request("ada", good.clone(), "warm", 3, 64)
            },
            "invalid_image",
            "needs a source image",
        ),
        (
            text_request("ada", "a cat", "warm", 3, 64),
            "model_unavailable",
            "diffusion",
        ),
    ];
    for (request, _, _) in &cases {
        s.requests.request(request).await;
    }
    let fine = photo_request("ada", good, "cool", 3, 64);
    s.requests.request(&fine).await;
    let ids: Vec<_> = cases.iter().map(|(r, _, _)| r.request_id).collect();
    s.results
        .until(WAIT, "every request answered", |r| {
            ids.iter().all(|id| r.has_terminal(*id)) && r.has_terminal(fine.request_id)
        })
        .await;
    for (request, code, says) in &cases {
        let terminal = only_terminal(&s.results, request.request_id);
        let (got, reason) = failed_code(&terminal);
        assert_eq!(got, *code, "{reason}");
        assert!(
            reason.contains(says),
            "{code}: {reason:?} should mention {says:?}"
        );
        assert!(
            !s.results.has_started(request.request_id),
            "{code}: refused before painting"
        );
    }
    let done = only_terminal(&s.results, fine.request_id);
    let done = completed(&done);
    assert_eq!((done.width, done.height), (64, 64));
    assert_eq!(painter.calls(), 1, "only the good request painted");
    worker.stop().await;
}

/// Every dead letter on the deployment's dead-letter topic, read committed, until the topic
/// has been quiet for `quiet`: (consumer, partition, offset, reason, key, payload).
async fn dead_letters(
    env: &TestEnv,
    quiet: Duration,
) -> Vec<(String, i32, i64, String, Vec<u8>, Vec<u8>)> {
    use gallery_schemas::dead_letter_headers as h;
    use rdkafka::consumer::Consumer;
    use rdkafka::message::{Headers, Message};
    let reader = common::kafka::reader(env, "dlq-reader");
    reader
        .subscribe(&[&env.config.topics().dead_letters()])
        .unwrap();
    let mut letters = Vec::new();
    while let Ok(m) = tokio::time::timeout(quiet, reader.recv()).await {
        let m = m.unwrap();
        let header = |name: &str| {
            m.headers()
                .and_then(|hs| hs.iter().find(|x| x.key == name))
                .and_then(|x| std::str::from_utf8(x.value?).ok())
                .unwrap_or_default()
                .to_owned()
        };
        letters.push((
            header(h::CONSUMER),
            header(h::PARTITION).parse().unwrap(),
            header(h::OFFSET).parse().unwrap(),
            header(h::REASON),
            m.key().unwrap_or_default().to_vec(),
            m.payload().unwrap_or_default().to_vec(),
        ));
    }
    letters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_that_is_not_an_event_is_dead_lettered_once_and_the_worker_goes_on() {
    let mut s = setup().await;
    let painter = StepPainter::new(Duration::from_millis(5));
    let worker = s.worker(worker_settings(&s.env.config), both(painter.clone()));

    // Poison first, then a good request behind it on the same partition.
    let good = text_request("ada", "after the poison", "warm", 3, 64);
    let key = good.request_id.to_string();
    let (partition, offset) = s
        .requests
        .send_raw(good.request_id, b"{\"prompt\": \"not avro\"}".to_vec())
        .await;
    // A valid event, but of another stream: it has no business on the generation topic.
    let like = gallery_schemas::LikeSet {
        event_id: uuid::Uuid::now_v7(),
        user_id: gallery_schemas::UserId::parse("ada").unwrap(),
        artwork_id: gallery_schemas::ArtworkId::parse("mona-lisa").unwrap(),
        liked: true,
        occurred_at: common::generation::now_ms(),
    };
    let misplaced = s.requests.send(good.request_id, &like.into()).await;
    let (good_partition, _) = s.requests.request(&good).await;
    assert_eq!(good_partition, partition, "same key, same partition");
    assert_eq!(misplaced.0, partition);
    s.results
        .until(WAIT, "the request behind the poison done", |r| {
            r.has_terminal(good.request_id)
        })
        .await;
    completed(&only_terminal(&s.results, good.request_id));

    // A restart begins at the committed offset, past the poison: no second letter.
    worker.stop().await;
    let worker = s.worker(worker_settings(&s.env.config), both(painter.clone()));
    let later = text_request("bob", "after the restart", "warm", 3, 64);
    s.requests.request(&later).await;
    s.results
        .until(WAIT, "a request after the restart done", |r| {
            r.has_terminal(later.request_id)
        })
        .await;

    let mut letters = dead_letters(&s.env, Duration::from_secs(3)).await;
    letters.sort_by_key(|l| l.2);
    assert_eq!(
        letters.len(),
        2,
        "each dead-lettered exactly once: {letters:?}"
    );
    let (consumer, at_partition, at_offset, reason, letter_key, payload) = &letters[0];
    assert_eq!(consumer, "painter");
    assert_eq!((*at_partition, *at_offset), (partition, offset));
    assert!(reason.contains("magic byte"), "reason: {reason}");
    assert_eq!(letter_key.as_slice(), key.as_bytes());
    assert_eq!(payload.as_slice(), &b"{\"prompt\": \"not avro\"}"[..]);
    let (consumer, at_partition, at_offset, reason, _, _) = &letters[1];
    assert_eq!(consumer, "painter");
    assert_eq!((*at_partition, *at_offset), misplaced);
    assert!(
        reason.contains("LikeSet") && reason.contains("does not belong"),
        "reason: {reason}"
    );
    assert_eq!(painter.calls(), 2);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_users_burst_does_not_starve_another_users_request() {
    let mut s = setup().await;
    let painter = StepPainter::new(Duration::from_millis(40));
    let worker = s.worker(worker_settings(&s.env.config), both(painter.clone()));
    let burst: Vec<GenerationRequested> = (0..8)
        .map(|i| text_request("burst", &format!("picture {i}"), "warm", 6, 64))
        .collect();
    for r in &burst {
        s.requests.request(r).await;
    }
    let solo = text_request("solo", "just one", "cool", 6, 64);
    s.requests.request(&solo).await;
    s.results
        .until(WAIT, "everything done", |r| {
            r.has_terminal(solo.request_id) && burst.iter().all(|b| r.has_terminal(b.request_id))
        })
        .await;
    let finish_order: Vec<_> = s
        .results
        .seen
        .iter()
        .filter(|e| e.is_terminal())
        .map(|e| e.request().unwrap())
        .collect();
    let solo_at = finish_order
        .iter()
        .position(|id| *id == solo.request_id)
        .unwrap();
    // The worker may have started the first one or two of the burst before it read the
    // solo request; after that, users take turns.
    assert!(
        solo_at <= 2,
        "the single request finished {}th of 9, behind the burst",
        solo_at + 1
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn above_the_backlog_threshold_jobs_are_degraded_and_say_so() {
    let mut s = setup().await;
    let painter = StepPainter::new(Duration::from_millis(5));
    let settings = WorkerSettings {
        degradation: gallery_gpu_workers::Degradation {
            backlog_threshold: 0,
            max_steps: 3,
            max_side: 48,
        },
        ..worker_settings(&s.env.config)
    };
    let worker = s.worker(settings, both(painter.clone()));
    let request = GenerationRequested {
        width: 128,
        height: 64,
        ..text_request("ada", "big", "warm", 20, 128)
    };
    s.requests.request(&request).await;
    s.results
        .until(WAIT, "the completion", |r| {
            r.has_terminal(request.request_id)
        })
        .await;
    let done = only_terminal(&s.results, request.request_id);
    let done = completed(&done);
    assert!(done.degraded);
    assert_eq!((done.steps, done.width, done.height), (3, 48, 24));
    worker.stop().await;
}

/// What a previous owner of the partition left: a completion, as its transaction wrote it.
fn completion_of(request: &GenerationRequested) -> Event {
    let image = ImageRef {
        key: format!("images/sha256/{}.png", "0".repeat(64)),
        content_type: "image/png".into(),
        width: 64,
        height: 64,
        size_bytes: 1,
        sha256: "0".repeat(64),
    };
    gallery_schemas::GenerationCompleted {
        event_id: gallery_gpu_workers::worker::ids::terminal(request.request_id),
        request_id: request.request_id,
        user_id: request.user_id.clone(),
        model: "test-steps".into(),
        weights_digest: "0".repeat(64),
        image: image.clone(),
        webp: image.clone(),
        thumbnail: image,
        cache_hit: false,
        degraded: false,
        steps: 3,
        width: 64,
        height: 64,
        duration_ms: 5,
        occurred_at: common::generation::now_ms(),
    }
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_finished_by_a_previous_owner_are_not_run_again() {
    let mut s = setup().await;
    let topic = s.env.config.topics().generation();
    // Partition 0 as a previous owner left it, finishing out of order: `first` unfinished,
    // `second` completed after it, so the committed offset stayed at `first`.
    let first = text_request("ada", "first", "warm", 3, 64);
    let second = text_request("bob", "second", "warm", 3, 64);
    let (_, at) = s
        .requests
        .send_to(Some(0), first.request_id, &first.clone().into())
        .await;
    s.requests
        .send_to(Some(0), second.request_id, &second.clone().into())
        .await;
    // Its progress, then its completion: the completion is read well after the request.
    for step in 1..=400 {
        let progressed = gallery_schemas::GenerationProgressed {
            event_id: gallery_gpu_workers::worker::ids::progressed(second.request_id, step),
            request_id: second.request_id,
            user_id: second.user_id.clone(),
            step: step as i32,
            steps: 400,
            occurred_at: common::generation::now_ms(),
        };
        s.requests
            .send_to(Some(0), second.request_id, &progressed.into())
            .await;
    }
    s.requests
        .send_to(Some(0), second.request_id, &completion_of(&second))
        .await;
    // Partition 1: `old` finished long ago, the committed offset is past it, and the same
    // request comes again (a command retried after a crash).
    let old = text_request("cyd", "old", "cool", 3, 64);
    s.requests
        .send_to(Some(1), old.request_id, &old.clone().into())
        .await;
    s.requests
        .send_to(Some(1), old.request_id, &completion_of(&old))
        .await;
    let group = s.env.config.painter_settings().group;
    let committer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &s.env.config.kafka.brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, rdkafka::Offset::Offset(at))
        .unwrap();
    offsets
        .add_partition_offset(&topic, 1, rdkafka::Offset::Offset(2))
        .unwrap();
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::Consumer as _;
        committer.commit(&offsets, rdkafka::consumer::CommitMode::Sync)
    })
    .await
    .unwrap()
    .unwrap();
    s.requests
        .send_to(Some(1), old.request_id, &old.clone().into())
        .await;

    // Two paint threads: a request read while a thread is free is dispatched at once. The
    // catch-up scan at assignment keeps the finished ones from running; so does reading
    // their completion while they wait (each suffices here; without both, `second` runs and
    // ends twice).
    let painter = StepPainter::new(Duration::from_millis(30));
    let settings = WorkerSettings {
        threads: 2,
        ..worker_settings(&s.env.config)
    };
    let worker = s.worker(settings, both(painter.clone()));
    s.results
        .until(WAIT, "the unfinished request done", |r| {
            r.terminals(first.request_id).len() == 1
        })
        .await;
    s.results.settle(Duration::from_secs(2)).await;
    assert_eq!(s.results.terminals(second.request_id).len(), 1);
    assert_eq!(s.results.terminals(old.request_id).len(), 1);
    assert_eq!(painter.calls(), 1, "only the unfinished request ran");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gallery_up_turns_an_uploaded_photo_into_a_styled_painting() {
    common::generation::require_style_weights(&gallery::Config::default().painter.models_dir);
    let mut s = setup().await;
    // Every role, as `gallery up` runs them, the painter with its default model.
    let app = s.env.start(gallery::Roles::ALL).await;
    let ada = s.env.token("ada");
    let photo = common::png(400, 300);
    let (status, body) = common::post_form(
        &app,
        "/v1/generations/image-to-image",
        &ada,
        &[
            ("style", "style-05:0.7+style-19:0.3"),
            ("width", "256"),
            ("height", "256"),
        ],
        ("photo", "me.png", &photo),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();
    s.results
        .until(WAIT, "the painting", |r| r.has_terminal(id))
        .await;
    let events = s.results.of(id);
    let Event::GenerationRequested(request) = events[0] else {
        panic!("{events:#?}")
    };
    let done = completed(events.last().unwrap());
    assert_eq!(done.model, "multistyle26");
    assert_eq!(done.weights_digest.len(), 64);
    // The steps run (the README's 19: the prepared photo, then the network's 18 layers),
    // whatever the request asked for (20 by default), in the progress and the result alike.
    assert_eq!(done.steps, 19, "the steps run");
    for event in &events {
        if let Event::GenerationProgressed(p) = event {
            assert_eq!(p.steps, 19, "{p:?}");
        }
    }
    assert!(!done.cache_hit);
    assert_eq!(
        (done.width, done.height),
        (256, 192),
        "the photo's shape, fitted"
    );
    let source = request.source_image.as_ref().unwrap();
    let original = image::load_from_memory(&s.bytes(&source.key))
        .unwrap()
        .to_rgb8();
    let painted = image::load_from_memory(&s.bytes(&done.image.key))
        .unwrap()
        .to_rgb8();
    assert_eq!(painted.dimensions(), (256, 192));
    let small = image::imageops::resize(&original, 256, 192, image::imageops::FilterType::Triangle);
    assert_ne!(painted, small, "repainted, not just scaled");
    let webp = image::load_from_memory(&s.bytes(&done.webp.key))
        .unwrap()
        .to_rgb8();
    assert_eq!(webp, painted);
    assert!(s.results.has_started(id));

    // Projected: GraphQL shows the job completed, and its signed URL serves the picture.
    // (The topic ends with transaction markers, which take offsets but are no messages: ask
    // GraphQL until the job shows completed.)
    let query = "query($id: ID!) { generation(id: $id) { status model result { image { url key width height } } } }";
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = loop {
        let body = app
            .graphql(Some(&ada), query, serde_json::json!({"id": id.to_string()}))
            .await;
        if body["data"]["generation"]["status"] == "COMPLETED" {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not projected: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let job = &body["data"]["generation"];
    assert_eq!(job["status"], "COMPLETED", "{body}");
    assert_eq!(job["model"], "multistyle26", "{body}");
    let shown = &job["result"]["image"];
    assert_eq!(shown["key"], done.image.key.as_str(), "{body}");
    assert_eq!(
        (shown["width"].as_i64(), shown["height"].as_i64()),
        (Some(256), Some(192))
    );
    let url = shown["url"].as_str().unwrap();
    let origin = app.graphql_url().trim_end_matches("/graphql").to_owned();
    let served = app.http.get(format!("{origin}{url}")).send().await.unwrap();
    assert_eq!(served.status(), 200, "{url}");
    assert_eq!(
        served.bytes().await.unwrap().as_ref(),
        s.bytes(&done.image.key).as_slice()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gallery_painter_serves_its_metrics_for_prometheus() {
    common::generation::require_style_weights(&gallery::Config::default().painter.models_dir);
    let mut s = setup().await;
    let port = common::free_port();
    let mut painter = common::gallery_command(&s.env, &["painter"])
        .env("GALLERY_MEDIA__STORE_URL", &s.env.config.media.store_url)
        .env("GALLERY_PAINTER__DEVICE", "cpu")
        .env(
            "GALLERY_PAINTER__MODELS_DIR",
            &s.env.config.painter.models_dir,
        )
        .env("GALLERY_METRICS__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let photo = s.photo(common::png(80, 60), 80, 60).await;
    let first = photo_request("ada", photo.clone(), "style-05", 1, 64);
    s.requests.request(&first).await;
    s.results
        .until(WAIT, "the first painting", |r| {
            r.has_terminal(first.request_id)
        })
        .await;
    // The same picture again (from the cache), an unknown style, and a message that is no event.
    let again = photo_request("bob", photo.clone(), "style-05", 1, 64);
    let unknown = photo_request("cyd", photo, "baroque", 1, 64);
    s.requests.request(&again).await;
    s.requests.request(&unknown).await;
    s.requests
        .send_raw(again.request_id, b"not an event".to_vec())
        .await;
    s.results
        .until(WAIT, "every answer", |r| {
            r.has_terminal(again.request_id) && r.has_terminal(unknown.request_id)
        })
        .await;
    completed(&only_terminal(&s.results, again.request_id));

    // Gauges move on the worker's ticks and the utilisation is sampled every few seconds.
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = tokio::time::Instant::now() + WAIT;
    let text = loop {
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = response.text().await.unwrap();
        let settled = common::sample(&text, "gallery_painter_held_requests") == Some(0.0)
            && common::sample(&text, "gallery_painter_dead_letters_total") == Some(1.0)
            && common::sample(&text, "gallery_painter_utilisation_ratio").is_some();
        if settled {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never settled:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let value = |series: &str| {
        common::sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(
        value("gallery_painter_jobs_finished_total{outcome=\"completed\"}"),
        2.0
    );
    assert_eq!(
        value("gallery_painter_jobs_finished_total{outcome=\"failed\"}"),
        1.0
    );
    assert_eq!(
        value("gallery_painter_jobs_failed_total{code=\"unknown_style\"}"),
        1.0
    );
    assert_eq!(value("gallery_painter_cache_hits_total"), 1.0);
    // Only the first was painted; its time lies in the histogram's buckets.
    assert_eq!(
        value("gallery_painter_paint_seconds_count{mode=\"image_to_image\"}"),
        1.0
    );
    assert_eq!(
        value("gallery_painter_paint_seconds_bucket{mode=\"image_to_image\",le=\"+Inf\"}"),
        1.0
    );
    assert!(value("gallery_painter_paint_seconds_sum{mode=\"image_to_image\"}") > 0.0);
    assert_eq!(value("gallery_painter_running_jobs"), 0.0);
    assert_eq!(value("gallery_painter_threads"), 1.0);
    assert_eq!(
        value("gallery_painter_device_info{kind=\"cpu\",ordinal=\"0\",name=\"cpu\"}"),
        1.0
    );
    let utilisation = value("gallery_painter_utilisation_ratio");
    assert!((0.0..=1.0).contains(&utilisation), "{utilisation}");
    assert!(value("gallery_painter_transactions_total{result=\"committed\"}") >= 1.0);
    assert!(
        text.contains("# HELP gallery_painter_utilisation_ratio"),
        "{text}"
    );
    // No CUDA device here: no memory gauges.
    assert!(
        !text.contains("gallery_painter_device_memory_used_bytes "),
        "{text}"
    );
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    painter.kill().await.unwrap();
}
