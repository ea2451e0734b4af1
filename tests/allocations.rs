//! Allocations on the write path's hot spots, counted: the test binary's allocator is dhat's
//! heap profiler, so a change that brings back per-event garbage fails here, not only in
//! `scripts/bench`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use gallery_schemas::{ArtworkId, Event, EventCodec, LikeSet, UserId};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

#[tokio::test]
async fn encoding_an_event_allocates_its_frame_and_nothing_else() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let env = common::TestEnv::new().await;
    let codec = EventCodec::new(&env.config.registry()).unwrap();
    let topic = env.config.topics().interactions();
    let event: Event = LikeSet {
        event_id: uuid::Uuid::now_v7(),
        user_id: UserId::parse("ada").unwrap(),
        artwork_id: ArtworkId::parse("sunflowers").unwrap(),
        liked: true,
        occurred_at: 1_700_000_000_000,
    }
    .into();
    // The first event registers the schema and learns its id.
    let first = codec.encode(&topic, &event).await.unwrap();
    let before = dhat::HeapStats::get();
    const EVENTS: u64 = 1000;
    for _ in 0..EVENTS {
        let framed = codec.encode(&topic, &event).await.unwrap();
        assert_eq!(framed, first);
    }
    let after = dhat::HeapStats::get();
    let allocations = after.total_blocks - before.total_blocks;
    assert!(
        allocations <= EVENTS,
        "{allocations} allocations for {EVENTS} events: more than the frame of each"
    );
}
