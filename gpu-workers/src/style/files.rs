//! Where `scripts/models` puts the converted weights, and the weights digest.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::{Result, StyleError};

/// The environment variable that moves the models directory.
pub const MODELS_DIR_ENV: &str = "GALLERY_MODELS_DIR";
/// The model's directory name under the models directory.
pub const MODEL_NAME: &str = "multistyle26";

/// The files of the multi-style network, as written by `scripts/models`:
/// `model.safetensors`, `styles.json`, `model.sha256` and the golden reference in `golden/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    dir: PathBuf,
}

impl ModelFiles {
    /// The files in `dir` (the `multistyle26` directory itself).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The default location, as in `scripts/models`: `$GALLERY_MODELS_DIR/multistyle26`, else
    /// `${XDG_CACHE_HOME:-$HOME/.cache}/gallery/models/multistyle26`. `None` when neither
    /// variable nor `HOME` is set.
    pub fn from_env() -> Option<Self> {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let models = match non_empty(MODELS_DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => non_empty("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| non_empty("HOME").map(|home| Path::new(&home).join(".cache")))?
                .join("gallery")
                .join("models"),
        };
        Some(Self::new(models.join(MODEL_NAME)))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The converted weights.
    pub fn weights(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }

    /// The style names, in the order of the network's style axis.
    pub fn styles(&self) -> PathBuf {
        self.dir.join("styles.json")
    }

    /// The sha256 of the weights, in hex.
    pub fn digest_file(&self) -> PathBuf {
        self.dir.join("model.sha256")
    }

    /// The golden reference made with onnxruntime (inputs, outputs, cases).
    pub fn golden_dir(&self) -> PathBuf {
        self.dir.join("golden")
    }

    /// The weights digest written by `scripts/models`.
    pub fn digest(&self) -> Result<WeightsDigest> {
        let path = self.digest_file();
        let text = read_text(&path)?;
        WeightsDigest::parse(text.trim()).ok_or(StyleError::BadDigestFile { path })
    }

    /// The weights, after checking that they hash to the digest file's value.
    pub(crate) fn verified_weights(&self) -> Result<(Vec<u8>, WeightsDigest)> {
        let expected = self.digest()?;
        let path = self.weights();
        let bytes = read_bytes(&path)?;
        let actual = WeightsDigest::of(&bytes);
        if actual != expected {
            return Err(StyleError::DigestMismatch {
                path,
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok((bytes, actual))
    }
}

/// The sha256 of the weights file: what the result cache keys on, so that changed weights
/// never serve old results.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WeightsDigest([u8; 32]);

impl WeightsDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Parses 64 hexadecimal digits (either case).
    pub fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let text = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(text, 16).ok()?;
        }
        Some(Self(out))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for WeightsDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for WeightsDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeightsDigest({self})")
    }
}

fn missing_or(path: &Path, source: std::io::Error) -> StyleError {
    if source.kind() == std::io::ErrorKind::NotFound {
        StyleError::MissingFile {
            path: path.to_path_buf(),
        }
    } else {
        StyleError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| missing_or(path, e))
}

pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| missing_or(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_hex() {
        let d = WeightsDigest::of(b"abc");
        // The sha256 of "abc" (FIPS 180-2, appendix B.1).
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(d.to_string(), hex);
        assert_eq!(WeightsDigest::parse(hex), Some(d));
        assert_eq!(WeightsDigest::parse(&hex.to_uppercase()), Some(d));
    }

    #[test]
    fn bad_digests_are_refused() {
        assert_eq!(WeightsDigest::parse(""), None);
        assert_eq!(WeightsDigest::parse(&"0".repeat(63)), None);
        assert_eq!(WeightsDigest::parse(&"g".repeat(64)), None);
        assert_eq!(WeightsDigest::parse(&"é".repeat(32)), None);
        assert_eq!(WeightsDigest::parse(&"+f".repeat(32)), None);
    }

    #[test]
    fn a_changed_weights_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = ModelFiles::new(dir.path());
        std::fs::write(files.weights(), b"weights").unwrap();
        std::fs::write(
            files.digest_file(),
            format!("{}\n", WeightsDigest::of(b"weights")),
        )
        .unwrap();
        assert!(files.verified_weights().is_ok());
        std::fs::write(files.weights(), b"other weights").unwrap();
        assert!(matches!(
            files.verified_weights(),
            Err(StyleError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn missing_files_say_to_run_the_script() {
        let dir = tempfile::tempdir().unwrap();
        let err = ModelFiles::new(dir.path()).digest().unwrap_err();
        assert!(matches!(err, StyleError::MissingFile { .. }));
        assert!(err.to_string().contains("scripts/models"), "{err}");
    }
}
