//! The chaos test of the generation invariant: image-to-image requests flow to the painter
//! (`gallery painter`, the real style network) while the process is killed with SIGKILL in
//! the middle of a generation (a job started and not finished), again and again, and
//! restarted. In the end, read with `isolation.level=read_committed`, every request has
//! exactly one terminal event, each a completion, and the object store holds no image twice
//! and none that no event refers to (a re-run stored nothing new).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use common::generation::{Requests, Results, objects, photo_request, staged};
use common::{TestEnv, gallery_command, png};
use gallery_schemas::{Event, GenerationRequested, ImageRef};
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};
use tokio::process::Child;

const REQUESTS: usize = 24;
const KILLS: usize = 6;
const BURST: usize = 12;

fn spawn_painter(env: &TestEnv) -> Child {
    gallery_command(env, &["painter"])
        .env("GALLERY_MEDIA__STORE_URL", &env.config.media.store_url)
        .env("GALLERY_PAINTER__DEVICE", "cpu")
        // Two jobs at once: requests finish out of order all the time.
        .env("GALLERY_PAINTER__THREADS", "2")
        .env("GALLERY_PAINTER__PROGRESS_INTERVAL_MS", "100")
        // No degradation: a re-run must paint exactly what the first run painted.
        .env("GALLERY_PAINTER__BACKLOG_THRESHOLD", "1000000")
        .env(
            "GALLERY_PAINTER__MODELS_DIR",
            &env.config.painter.models_dir,
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn gallery painter")
}

/// A request started (a committed `GenerationStarted` among the events read from `since` on,
/// i.e. by the current process) and not finished.
fn running(results: &Results, since: usize) -> Option<uuid::Uuid> {
    let mut started = BTreeSet::new();
    let mut done = BTreeSet::new();
    for (i, s) in results.seen.iter().enumerate() {
        match &s.event {
            Event::GenerationStarted(e) if i >= since => {
                started.insert(e.request_id);
            }
            _ if s.is_terminal() => {
                done.insert(s.request().unwrap());
            }
            _ => {}
        }
    }
    started.difference(&done).next().copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkilled_painter_ends_every_request_with_exactly_one_terminal() {
    let env = TestEnv::new().await;
    common::generation::require_style_weights(&env.config.painter.models_dir);
    gallery::topics::ensure_topics(&env.config).await.unwrap();
    let media = gallery_commands::MediaStore::open(&env.config.media).unwrap();
    let store = media.object_store();
    let dir = std::path::PathBuf::from(&env.config.media.store_url);

    // Four photos, as uploads leave them in the store.
    let mut photos: Vec<ImageRef> = Vec::new();
    for (w, h) in [(1600, 1200), (1200, 1600), (1400, 1400), (1600, 1000)] {
        let bytes = png(w, h);
        let sha = hex::encode(Sha256::digest(&bytes));
        let key = format!("images/sha256/{sha}.png");
        store
            .put(
                &object_store::path::Path::from(key.as_str()),
                bytes.clone().into(),
            )
            .await
            .unwrap();
        photos.push(ImageRef {
            key,
            content_type: "image/png".into(),
            width: w as i32,
            height: h as i32,
            size_bytes: bytes.len() as i64,
            sha256: sha,
        });
    }
    let photo_keys: BTreeSet<String> = photos.iter().map(|p| p.key.clone()).collect();

    // A burst of one user first, then the others' requests: taken round-robin, the later
    // requests finish before the burst's, so each partition's low-water mark stays behind
    // finished requests, and a restarted painter must recognise their terminals.
    let requests: Vec<GenerationRequested> = (0..REQUESTS)
        .map(|i| {
            let style = format!("style-{:02}", (i * 7) % 26);
            let user = if i < BURST {
                "burst".to_owned()
            } else {
                format!("user-{}", i % 4)
            };
            photo_request(&user, photos[i % photos.len()].clone(), &style, 20, 1280)
        })
        .collect();

    // The requests arrive over several seconds while the painter works and dies.
    let producer = {
        let (config, requests) = (env.config.clone(), requests.clone());
        tokio::spawn(async move {
            let sender = Requests::new(&config);
            for (i, r) in requests.iter().enumerate() {
                sender.request(r).await;
                if i >= BURST {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
    };

    let mut results = Results::new(&env.config);
    let mut painter = spawn_painter(&env);
    let mut since = 0;
    let mut mid_run = 0;
    for kill in 0..KILLS {
        // Spread over the run: wait for more requests to be finished, and for this process
        // to have started a job; kill it at some moment of that run.
        let finished = 3 * (kill + 1);
        results
            .until(Duration::from_secs(120), "a running job", |r| {
                r.terminal_counts().len() >= finished && running(r, since).is_some()
            })
            .await;
        let victim = running(&results, since).unwrap();
        let jitter = (kill as u64 * 137) % 400;
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        results.settle(Duration::from_millis(1)).await;
        let still_running = !results.has_terminal(victim);
        painter.start_kill().unwrap();
        assert!(
            !painter.wait().await.unwrap().success(),
            "killed, not exited"
        );
        if still_running {
            mid_run += 1;
        }
        results.settle(Duration::from_millis(1)).await;
        since = results.seen.len();
        painter = spawn_painter(&env);
    }
    producer.await.unwrap();

    let ids: Vec<uuid::Uuid> = requests.iter().map(|r| r.request_id).collect();
    results
        .until(Duration::from_secs(300), "every request finished", |r| {
            ids.iter().all(|id| r.has_terminal(*id))
        })
        .await;
    // Long enough for a second terminal, were there one, to show.
    results.settle(Duration::from_secs(3)).await;
    painter.start_kill().unwrap();
    painter.wait().await.unwrap();

    let counts = results.terminal_counts();
    // A job killed mid-run is redone by the next process: started again, or (when the killed
    // run had stored its result but not committed its terminal) completed from the cache.
    let started = |id: &uuid::Uuid| {
        results
            .of(*id)
            .iter()
            .filter(|e| matches!(e, Event::GenerationStarted(_)))
            .count()
    };
    let restarts: usize = ids.iter().map(|id| started(id).saturating_sub(1)).sum();
    let finished_from_cache = ids
        .iter()
        .filter(|id| {
            started(id) > 0
                && results
                    .terminals(**id)
                    .iter()
                    .any(|e| matches!(e, Event::GenerationCompleted(c) if c.cache_hit))
        })
        .count();
    eprintln!(
        "{REQUESTS} requests, {KILLS} kills ({mid_run} while the victim job was running); \
         redone after a kill: {restarts} runs started again, {finished_from_cache} completed \
         from the result the killed run had stored"
    );
    assert!(
        mid_run >= KILLS / 2,
        "most kills land while a job runs ({mid_run} of {KILLS})"
    );
    assert!(
        restarts + finished_from_cache >= KILLS / 2,
        "killed jobs were redone"
    );

    let mut referenced: BTreeSet<String> = BTreeSet::new();
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "exactly one terminal for {id}");
        let terminal = results.terminals(*id)[0].clone();
        let Event::GenerationCompleted(done) = terminal else {
            panic!("{id} did not complete: {terminal:#?}");
        };
        for image in [&done.image, &done.webp, &done.thumbnail] {
            referenced.insert(image.key.clone());
        }
    }
    assert_eq!(counts.len(), REQUESTS, "no terminal for anything else");

    // The store: every image under its own digest (so none twice), and none orphaned by a
    // killed run.
    let stored = objects(&dir);
    let images: BTreeSet<String> = stored
        .iter()
        .filter(|k| k.starts_with("images/"))
        .cloned()
        .collect();
    for key in &images {
        let bytes = std::fs::read(dir.join(key)).unwrap();
        let sha = hex::encode(Sha256::digest(&bytes));
        assert!(key.contains(&sha), "{key} holds other bytes");
    }
    let mut by_digest: BTreeMap<String, usize> = BTreeMap::new();
    for key in &images {
        let stem = key.rsplit('/').next().unwrap();
        let digest = stem.split('.').next().unwrap().to_owned();
        *by_digest.entry(digest).or_insert(0) += 1;
    }
    assert!(by_digest.values().all(|n| *n == 1), "an image stored twice");
    let expected: BTreeSet<String> = referenced.union(&photo_keys).cloned().collect();
    assert_eq!(
        images, expected,
        "stored images are exactly the photos and the results"
    );
    // A write killed before its rename leaves its staging file, never a partial object; the
    // re-run wrote the object itself.
    for file in staged(&dir) {
        let object = file.split('#').next().unwrap();
        assert!(
            stored.iter().any(|k| k == object),
            "{file} staged, and {object} never written"
        );
    }
    let manifests = stored.iter().filter(|k| k.starts_with("results/")).count();
    assert!(
        manifests <= REQUESTS && manifests > 0,
        "{manifests} cache manifests"
    );
}
