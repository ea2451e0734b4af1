//! The CLIP tokenizer built by `scripts/models.d/clip-tokenizer` encodes as CLIP does.
//!
//! The expected ids are those of open_clip's own Python `SimpleTokenizer` (open-clip-torch
//! 3.3.0, the wheel the script builds from), printed by
//! `scripts/models.d/clip-tokenizer --reference TEXT...`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use gallery_gpu_workers::diffusion::{CLIP_CONTEXT, CLIP_VOCAB_SIZE, ClipTokenizer};

const SCRIPT: &str = "scripts/models.d/clip-tokenizer";

fn tokenizer_path() -> PathBuf {
    let models = match std::env::var_os("GALLERY_MODELS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/gallery/models")
        }
    };
    models.join("clip-tokenizer/tokenizer.json")
}

fn tokenizer() -> ClipTokenizer {
    let path = tokenizer_path();
    assert!(
        path.is_file(),
        "{} is missing: build it with `{SCRIPT}` (or `scripts/models`) first",
        path.display()
    );
    ClipTokenizer::from_file(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; rebuild it with `{SCRIPT}`", path.display()))
}

#[test]
fn prompts_encode_to_clips_reference_ids() {
    let tokenizer = tokenizer();
    let cases: [(&str, &[u32]); 5] = [
        (
            "a photo of a cat",
            &[49406, 320, 1125, 539, 320, 2368, 49407],
        ),
        (
            "An oil painting of sunflowers, by Vincent van Gogh!",
            &[
                49406, 550, 2870, 3086, 539, 39809, 267, 638, 10357, 2451, 19697, 256, 49407,
            ],
        ),
        (
            "it's 1999 — café déjà-vu",
            &[
                49406, 585, 568, 272, 280, 280, 280, 2005, 15304, 25466, 73, 21259, 268, 13230,
                49407,
            ],
        ),
        ("hello   WORLD", &[49406, 3306, 1002, 49407]),
        (
            "A Portrait, in the style of Rembrandt; 1642.",
            &[
                49406, 320, 5352, 267, 530, 518, 1844, 539, 45972, 282, 272, 277, 275, 273, 269,
                49407,
            ],
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(tokenizer.encode(text).unwrap(), expected, "{text:?}");
    }
}

#[test]
fn the_vocabulary_is_clips() {
    let tokenizer = tokenizer();
    assert_eq!(tokenizer.token_id("<|startoftext|>").unwrap(), 49406);
    assert_eq!(tokenizer.token_id("<|endoftext|>").unwrap(), 49407);
    assert_eq!(tokenizer.end_id() as usize, CLIP_VOCAB_SIZE - 1);
    // The first byte symbol, its end-of-word form, and SDXL's padding token.
    assert_eq!(tokenizer.token_id("!").unwrap(), 0);
    assert_eq!(tokenizer.token_id("!</w>").unwrap(), 256);
    assert!(tokenizer.token_id("no such token").is_err());
}

#[test]
fn prompts_are_padded_and_cut_to_the_context() {
    let tokenizer = tokenizer();
    let end = tokenizer.end_id();
    let ids = tokenizer
        .encode_padded("a photo of a cat", CLIP_CONTEXT, end)
        .unwrap();
    assert_eq!(ids.len(), CLIP_CONTEXT);
    assert_eq!(&ids[..7], &[49406, 320, 1125, 539, 320, 2368, 49407]);
    assert!(ids[7..].iter().all(|&id| id == end));

    let bang = tokenizer.token_id("!").unwrap();
    let ids = tokenizer
        .encode_padded("a photo of a cat", CLIP_CONTEXT, bang)
        .unwrap();
    assert!(ids[7..].iter().all(|&id| id == bang));

    let long = "cat ".repeat(100);
    let ids = tokenizer.encode_padded(&long, CLIP_CONTEXT, end).unwrap();
    assert_eq!(ids.len(), CLIP_CONTEXT);
    assert_eq!(ids[0], 49406);
    assert_eq!(
        ids[CLIP_CONTEXT - 1],
        end,
        "the end of text survives the cut"
    );
    assert!(ids[1..CLIP_CONTEXT - 1].iter().all(|&id| id == 2368));
}
