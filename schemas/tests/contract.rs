//! The event contract: every event round-trips through its Avro schema, every schema file is
//! known to the codec, and every schema stays BACKWARD-compatible with its released version.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use gallery_schemas::*;
use proptest::prelude::*;
use uuid::Uuid;

/// This package's directory: the one `cargo test` runs the test for (its environment), so a
/// test binary built in another checkout still reads this one's files.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}
fn artwork(s: &str) -> ArtworkId {
    ArtworkId::parse(s).unwrap()
}
fn image() -> ImageRef {
    ImageRef {
        key: "images/sha256/ab.png".into(),
        content_type: "image/png".into(),
        width: 640,
        height: 480,
        size_bytes: 12345,
        sha256: "ab".into(),
    }
}

/// One sample of every event type.
fn samples() -> Vec<Event> {
    let id = Uuid::now_v7;
    vec![
        UserRegistered {
            event_id: id(),
            user_id: user("ada"),
            display_name: PersonName::parse("Ada Lovelace").unwrap(),
            role: Role::Curator,
            occurred_at: 1,
        }
        .into(),
        ExhibitionCreated {
            event_id: id(),
            exhibition_id: id(),
            curator_id: user("ada"),
            title: Title::parse("Light").unwrap(),
            description: Description::parse("Rooms\nof light").unwrap(),
            opens_at: 10,
            closes_at: 20,
            occurred_at: 2,
        }
        .into(),
        ArtworkAdded {
            event_id: id(),
            exhibition_id: id(),
            artwork_id: artwork("sunflowers"),
            title: Title::parse("Sunflowers").unwrap(),
            artist: PersonName::parse("Vincent van Gogh").unwrap(),
            year: Some(1888),
            style: Some(StyleName::parse("post-impressionism").unwrap()),
            description: Description::parse("").unwrap(),
            image: image(),
            added_by: user("ada"),
            occurred_at: 3,
        }
        .into(),
        ArtworkRemoved {
            event_id: id(),
            exhibition_id: id(),
            artwork_id: artwork("sunflowers"),
            removed_by: user("ada"),
            occurred_at: 4,
        }
        .into(),
        ExhibitionPublished {
            event_id: id(),
            exhibition_id: id(),
            published_by: user("ada"),
            occurred_at: 5,
        }
        .into(),
        ExhibitionClosed {
            event_id: id(),
            exhibition_id: id(),
            closed_by: user("ada"),
            occurred_at: 6,
        }
        .into(),
        LikeSet {
            event_id: id(),
            user_id: user("bob"),
            artwork_id: artwork("sunflowers"),
            liked: true,
            occurred_at: 7,
        }
        .into(),
        FavoriteSet {
            event_id: id(),
            user_id: user("bob"),
            artwork_id: artwork("sunflowers"),
            favorited: false,
            occurred_at: 8,
        }
        .into(),
        CommentPosted {
            event_id: id(),
            comment_id: id(),
            artwork_id: artwork("sunflowers"),
            user_id: user("bob"),
            body: CommentBody::parse("So yellow! 🌻").unwrap(),
            occurred_at: 9,
        }
        .into(),
        CommentDeleted {
            event_id: id(),
            comment_id: id(),
            artwork_id: artwork("sunflowers"),
            deleted_by: user("bob"),
            occurred_at: 10,
        }
        .into(),
        ArtworkViewed {
            event_id: id(),
            artwork_id: artwork("sunflowers"),
            user_id: None,
            occurred_at: 11,
        }
        .into(),
        GenerationRequested {
            event_id: id(),
            request_id: id(),
            user_id: user("bob"),
            mode: GenerationMode::ImageToImage,
            prompt: None,
            negative_prompt: Some(Prompt::parse("blurry").unwrap()),
            style: StyleName::parse("impressionism").unwrap(),
            seed: -42,
            steps: 20,
            width: 512,
            height: 512,
            source_image: Some(image()),
            degraded: false,
            occurred_at: 12,
        }
        .into(),
        GenerationCancelled {
            event_id: id(),
            request_id: id(),
            user_id: user("bob"),
            occurred_at: 13,
        }
        .into(),
        GenerationStarted {
            event_id: id(),
            request_id: id(),
            user_id: user("bob"),
            worker: "painter-0".into(),
            model: "multistyle26".into(),
            occurred_at: 14,
        }
        .into(),
        GenerationProgressed {
            event_id: id(),
            request_id: id(),
            user_id: user("bob"),
            step: 3,
            steps: 20,
            occurred_at: 15,
        }
        .into(),
        GenerationCompleted {
            event_id: id(),
            request_id: id(),
            user_id: user("bob"),
            model: "multistyle26".into(),
            weights_digest: "ab".repeat(32),
            image: image(),
            webp: ImageRef {
                content_type: "image/webp".into(),
                ..image()
            },
            thumbnail: ImageRef {
                width: 64,
                height: 64,
                ..image()
            },
            cache_hit: true,
            degraded: false,
            steps: 1,
            width: 512,
            height: 512,
            duration_ms: 1234,
            occurred_at: 16,
        }
        .into(),
        GenerationFailed {
            event_id: id(),
            request_id: id(),
            user_id: user("bob"),
            code: "unknown_style".into(),
            reason: "no style named cubism".into(),
            occurred_at: 17,
        }
        .into(),
        GenerationCancelConfirmed {
            event_id: id(),
            request_id: id(),
            user_id: user("bob"),
            step: 2,
            occurred_at: 18,
        }
        .into(),
    ]
}

#[allow(deprecated)] // the plain datum functions are all a round trip needs
/// Writes `event` as Avro binary with its schema, reads it back, and maps it to an event.
fn round_trip(event: &Event) -> Event {
    let schema = Schema::parse_str(schema_of(event.record_name()).unwrap()).unwrap();
    let value = to_avro(event).unwrap();
    let bytes = apache_avro::to_avro_datum(&schema, value).unwrap();
    let back = apache_avro::from_avro_datum(&schema, &mut bytes.as_slice(), None).unwrap();
    from_avro(event.record_name(), &back).unwrap()
}

#[test]
fn every_event_type_round_trips_through_its_schema() {
    let samples = samples();
    let names: BTreeSet<&str> = samples.iter().map(Event::record_name).collect();
    assert_eq!(names.len(), SCHEMAS.len(), "one sample per schema");
    for event in &samples {
        assert_eq!(&round_trip(event), event, "{}", event.record_name());
    }
}

#[allow(deprecated)] // the plain datum writer is the generic path the typed one must match
/// The typed frame of `event` holds exactly the bytes of the generic path (the record as an
/// Avro value tree, resolved and validated against its schema, through a datum writer).
fn assert_typed_encoding_is_generic(event: &Event) {
    let schema = Schema::parse_str(schema_of(event.record_name()).unwrap()).unwrap();
    let generic = apache_avro::to_avro_datum(&schema, to_avro(event).unwrap()).unwrap();
    let framed = frame(0x0102_0304, event).unwrap();
    assert_eq!(framed[..5], [0, 1, 2, 3, 4], "magic byte and schema id");
    assert_eq!(framed[5..], generic[..], "{}", event.record_name());
}

#[test]
fn every_event_type_is_framed_with_the_bytes_of_the_generic_encoding() {
    for event in &samples() {
        assert_typed_encoding_is_generic(event);
    }
}

#[test]
fn every_record_belongs_to_the_stream_its_events_are_written_to() {
    for event in samples() {
        assert_eq!(stream_of(event.record_name()), Some(event.stream()));
    }
}

#[test]
fn every_schema_file_is_known_and_named_after_its_record() {
    let dir = manifest_dir().join("avro");
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "avsc") {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let schema = Schema::parse_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let Schema::Record(record) = schema else {
                panic!("{stem} is not a record")
            };
            assert_eq!(record.name.fullname(None), stem);
            files.insert(stem);
        }
    }
    let known: BTreeSet<String> = SCHEMAS.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(files, known);
}

fn backward_compatible(released: &str, current: &str) -> Result<(), String> {
    let writer = Schema::parse_str(released).map_err(|e| e.to_string())?;
    let reader = Schema::parse_str(current).map_err(|e| e.to_string())?;
    // BACKWARD: consumers on the new schema read everything written with the old one.
    SchemaCompatibility::can_read(&writer, &reader)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn every_schema_is_backward_compatible_with_its_released_version() {
    let released_dir = manifest_dir().join("avro/released");
    let mut checked = 0;
    for entry in std::fs::read_dir(&released_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let released = std::fs::read_to_string(&path).unwrap();
        let current = schema_of(&name)
            .unwrap_or_else(|| panic!("released schema {name} was removed; events keep it"));
        if let Err(e) = backward_compatible(&released, current) {
            panic!("{name} is not BACKWARD-compatible with its released version: {e}");
        }
        checked += 1;
    }
    assert_eq!(
        checked,
        SCHEMAS.len(),
        "every schema has a released version"
    );
}

#[test]
fn the_compatibility_check_catches_a_new_required_field() {
    let released = schema_of(LikeSet::RECORD).unwrap();
    let mut broken: serde_json::Value = serde_json::from_str(released).unwrap();
    broken["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "weight", "type": "int"}));
    assert!(backward_compatible(released, &broken.to_string()).is_err());
    // The same field with a default is a compatible change.
    broken["fields"].as_array_mut().unwrap().pop();
    broken["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "weight", "type": "int", "default": 1}));
    assert!(backward_compatible(released, &broken.to_string()).is_ok());
}

#[test]
fn a_record_with_an_invalid_id_or_text_is_refused() {
    let mut value = to_avro(&samples()[8]).unwrap();
    if let apache_avro::types::Value::Record(fields) = &mut value {
        for (name, v) in fields.iter_mut() {
            if name == "body" {
                *v = apache_avro::types::Value::String("bell\u{7}".into());
            }
        }
    }
    let err = from_avro(CommentPosted::RECORD, &value).unwrap_err();
    assert!(err.to_string().contains("control"), "{err}");
}

proptest! {
    #[test]
    fn like_facts_round_trip(
        user_id in "[a-z0-9_-]{1,64}",
        artwork_id in "[A-Za-z0-9_-]{1,64}",
        liked in any::<bool>(),
        at in any::<i64>(),
    ) {
        let event: Event = LikeSet {
            event_id: Uuid::new_v4(),
            user_id: user(&user_id),
            artwork_id: artwork(&artwork_id),
            liked,
            occurred_at: at,
        }
        .into();
        assert_typed_encoding_is_generic(&event);
        prop_assert_eq!(round_trip(&event), event);
    }

    #[test]
    fn comments_round_trip(body in "[^\\p{Cc}]{1,300}") {
        prop_assume!(!body.trim().is_empty());
        let event: Event = CommentPosted {
            event_id: Uuid::new_v4(),
            comment_id: Uuid::new_v4(),
            artwork_id: artwork("a"),
            user_id: user("u"),
            body: CommentBody::parse(body).unwrap(),
            occurred_at: 0,
        }
        .into();
        assert_typed_encoding_is_generic(&event);
        prop_assert_eq!(round_trip(&event), event);
    }
}
