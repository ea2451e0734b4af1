//! The Confluent-framed Avro decoder: a Kafka message's value, as a projector or the painter
//! reads it. The schema id picks the writer's schema (a registry would name it).

#![no_main]

use gallery_schemas::{SCHEMAS, decode_body, frame, unframe};

libfuzzer_sys::fuzz_target!(init: gallery_fuzz::init(), |data: &[u8]| {
    let Ok((id, body)) = unframe(data) else {
        return;
    };
    let (record, _) = SCHEMAS[usize::try_from(id).unwrap_or(0) % SCHEMAS.len()];
    let Ok(event) = decode_body(record, body) else {
        return;
    };
    // An event that decodes encodes again, to the same event.
    let framed = frame(id, &event)
        .unwrap_or_else(|e| panic!("{record}: a decoded event does not encode: {e}"));
    let again = unframe(&framed).and_then(|(_, body)| decode_body(record, body));
    assert_eq!(again.ok().as_ref(), Some(&event), "{record}: no round trip");
});
