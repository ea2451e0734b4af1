//! Consistency tokens (`X-Consistency-Token: <topic>:<partition>:<offset>, ...`): what
//! parses, written back, parses to the same positions.

#![no_main]

use gallery_query_api::Position;

libfuzzer_sys::fuzz_target!(init: gallery_fuzz::init(), |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Position::parse(text);
    let Ok(positions) = Position::parse_list(text) else {
        return;
    };
    let written: Vec<String> = positions
        .iter()
        .map(|p| format!("{}:{}:{}", p.topic, p.partition, p.offset))
        .collect();
    let again = Position::parse_list(&written.join(","));
    assert_eq!(again.ok(), Some(positions), "{text:?}");
});
