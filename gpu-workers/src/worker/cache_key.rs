//! The result cache key: a SHA-256 over everything that decides the picture. Two jobs with
//! the same key paint the same pixels, so the second one takes the first one's images.

use gallery_schemas::GenerationMode;
use sha2::{Digest, Sha256};

use super::painter::PaintParams;

/// Bumped when the meaning of the key changes, so old entries are never taken for new ones.
const VERSION: &str = "gallery.painter.result/1";

/// What a picture depends on: the model (name, weights, scheduler), the parameters actually
/// used (after degradation) and the source photo's digest.
#[derive(Debug, Clone, Copy)]
pub struct CacheInputs<'a> {
    pub model: &'a str,
    pub weights_digest: &'a str,
    pub scheduler: &'a str,
    pub params: &'a PaintParams,
    /// Lower-case hex SHA-256 of the source photo (image-to-image).
    pub source_sha256: Option<&'a str>,
}

/// Feeds `value` in a form that cannot run into the next field: its length, then the bytes.
fn field(hasher: &mut Sha256, name: &str, value: Option<&[u8]>) {
    hasher.update(name.as_bytes());
    match value {
        None => hasher.update(b"=none;"),
        Some(bytes) => {
            hasher.update(format!("={}:", bytes.len()).as_bytes());
            hasher.update(bytes);
            hasher.update(b";");
        }
    }
}

/// The key, as lower-case hex.
pub fn cache_key(inputs: &CacheInputs<'_>) -> String {
    let p = inputs.params;
    let mode = match p.mode {
        GenerationMode::TextToImage => "TEXT_TO_IMAGE",
        GenerationMode::ImageToImage => "IMAGE_TO_IMAGE",
    };
    let mut h = Sha256::new();
    let text = |s: &str| Some(s.as_bytes().to_vec());
    for (name, value) in [
        ("version", text(VERSION)),
        ("model", text(inputs.model)),
        ("weights", text(inputs.weights_digest)),
        ("scheduler", text(inputs.scheduler)),
        ("mode", text(mode)),
        ("prompt", p.prompt.as_deref().and_then(text)),
        (
            "negative_prompt",
            p.negative_prompt.as_deref().and_then(text),
        ),
        ("style", text(&p.style)),
        ("seed", Some(p.seed.to_be_bytes().to_vec())),
        ("steps", Some(p.steps.to_be_bytes().to_vec())),
        ("width", Some(p.width.to_be_bytes().to_vec())),
        ("height", Some(p.height.to_be_bytes().to_vec())),
        ("source", inputs.source_sha256.and_then(text)),
    ] {
        field(&mut h, name, value.as_deref());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PaintParams {
        PaintParams {
            mode: GenerationMode::ImageToImage,
            prompt: None,
            negative_prompt: None,
            style: "mosaic".into(),
            seed: 42,
            steps: 20,
            width: 512,
            height: 512,
        }
    }

    fn key(p: &PaintParams, digest: &str, source: Option<&str>) -> String {
        cache_key(&CacheInputs {
            model: "multistyle26",
            weights_digest: digest,
            scheduler: "feed-forward",
            params: p,
            source_sha256: source,
        })
    }

    #[test]
    fn the_same_inputs_give_the_same_key() {
        let p = params();
        assert_eq!(key(&p, "ab", Some("cd")), key(&p.clone(), "ab", Some("cd")));
        assert_eq!(key(&p, "ab", None).len(), 64);
    }

    #[test]
    fn every_input_changes_the_key() {
        let base = params();
        let k = key(&base, "ab", Some("cd"));
        let variants: Vec<PaintParams> = vec![
            PaintParams {
                mode: GenerationMode::TextToImage,
                ..base.clone()
            },
            PaintParams {
                prompt: Some("a cat".into()),
                ..base.clone()
            },
            PaintParams {
                negative_prompt: Some("a cat".into()),
                ..base.clone()
            },
            PaintParams {
                style: "candy".into(),
                ..base.clone()
            },
            PaintParams {
                seed: 43,
                ..base.clone()
            },
            PaintParams {
                steps: 10,
                ..base.clone()
            },
            PaintParams {
                width: 256,
                ..base.clone()
            },
            PaintParams {
                height: 256,
                ..base.clone()
            },
        ];
        let mut keys: Vec<String> = variants.iter().map(|p| key(p, "ab", Some("cd"))).collect();
        keys.push(key(&base, "ac", Some("cd")));
        keys.push(key(&base, "ab", Some("ce")));
        keys.push(key(&base, "ab", None));
        let distinct: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        assert!(!keys.contains(&k));
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let a = PaintParams {
            prompt: Some("ab".into()),
            negative_prompt: Some("c".into()),
            ..params()
        };
        let b = PaintParams {
            prompt: Some("a".into()),
            negative_prompt: Some("bc".into()),
            ..params()
        };
        assert_ne!(key(&a, "d", None), key(&b, "d", None));
        // An empty prompt is not no prompt.
        let empty = PaintParams {
            prompt: Some(String::new()),
            ..params()
        };
        assert_ne!(key(&empty, "d", None), key(&params(), "d", None));
    }
}
