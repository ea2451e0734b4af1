//! Named styles and checked mixes of them.

use std::path::Path;

use serde::Deserialize;

use super::error::{Result, StyleError};
use super::files::read_text;

/// The names of the network's styles, in the order of its style axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StyleCatalog {
    names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleList {
    styles: Vec<String>,
}

impl StyleCatalog {
    /// A catalog of `names`: at least one, each non-empty and distinct.
    pub fn new(names: Vec<String>) -> Result<Self> {
        let reason = if names.is_empty() {
            Some("it is empty")
        } else if names.iter().any(String::is_empty) {
            Some("a name is empty")
        } else if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
            Some("a name appears twice")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(StyleError::BadCatalog { reason }),
            None => Ok(Self { names }),
        }
    }

    /// Reads `styles.json` (`{"styles": ["style-00", ...]}`), as written by `scripts/models`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        let list: StyleList =
            serde_json::from_str(&text).map_err(|source| StyleError::BadStyleList {
                path: path.to_path_buf(),
                source,
            })?;
        Self::new(list.styles)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always false: a catalog has at least one style.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The position of `name` on the style axis.
    pub fn index_of(&self, name: &str) -> Result<usize> {
        self.names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| StyleError::UnknownStyle {
                name: name.to_owned(),
                known: self.names.len(),
                example: self.names[0].clone(),
            })
    }
}

/// How much of each style to apply: one weight per style of a catalog, not negative,
/// normalized to sum to 1 (a blend of styles is an average of their parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct StyleMix {
    weights: Vec<f32>,
}

impl StyleMix {
    /// A mix of named styles with their weights; weights are relative (`[("a", 3.0), ("b",
    /// 1.0)]` is three quarters of `a`). Unknown or repeated names, negative or non-finite
    /// weights and an all-zero mix are errors.
    pub fn new<'a>(
        catalog: &StyleCatalog,
        parts: impl IntoIterator<Item = (&'a str, f32)>,
    ) -> Result<Self> {
        let mut weights = vec![0.0; catalog.len()];
        let mut named = vec![false; catalog.len()];
        for (name, weight) in parts {
            let index = catalog.index_of(name)?;
            if std::mem::replace(&mut named[index], true) {
                return Err(StyleError::DuplicateStyle {
                    name: name.to_owned(),
                });
            }
            check_weight(name, weight)?;
            weights[index] = weight;
        }
        Self::normalized(weights)
    }

    /// One style, fully.
    pub fn single(catalog: &StyleCatalog, name: &str) -> Result<Self> {
        Self::new(catalog, [(name, 1.0)])
    }

    /// A mix from one weight per style of the catalog, in its order.
    pub fn from_weights(catalog: &StyleCatalog, weights: &[f32]) -> Result<Self> {
        if weights.len() != catalog.len() {
            return Err(StyleError::WrongStyleCount {
                expected: catalog.len(),
                found: weights.len(),
            });
        }
        for (name, &weight) in catalog.names().iter().zip(weights) {
            check_weight(name, weight)?;
        }
        Self::normalized(weights.to_vec())
    }

    /// Parses `name` or `name:weight+name:weight+...` (weights relative, as in [`Self::new`]).
    pub fn parse(catalog: &StyleCatalog, spec: &str) -> Result<Self> {
        let mut parts = Vec::new();
        for part in spec.split('+') {
            let part = part.trim();
            let (name, weight) =
                match part.rsplit_once(':') {
                    Some((name, weight)) => {
                        let weight = weight.trim().parse::<f32>().map_err(|_| {
                            StyleError::UnreadableWeight {
                                name: name.trim().to_owned(),
                                text: weight.trim().to_owned(),
                            }
                        })?;
                        (name.trim(), weight)
                    }
                    None => (part, 1.0),
                };
            parts.push((name, weight));
        }
        Self::new(catalog, parts)
    }

    /// The weights, one per style, summing to 1.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// The number of styles the mix is for.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Always false: a mix has at least one style.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    fn normalized(weights: Vec<f32>) -> Result<Self> {
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        if total <= 0.0 {
            return Err(StyleError::EmptyMix);
        }
        let weights = weights
            .into_iter()
            .map(|w| (f64::from(w) / total) as f32)
            .collect();
        Ok(Self { weights })
    }
}

fn check_weight(name: &str, weight: f32) -> Result<()> {
    if weight.is_finite() && weight >= 0.0 {
        Ok(())
    } else {
        Err(StyleError::BadWeight {
            name: name.to_owned(),
            weight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> StyleCatalog {
        StyleCatalog::new((0..26).map(|i| format!("style-{i:02}")).collect()).unwrap()
    }

    #[test]
    fn a_single_style_is_one_hot() {
        let mix = StyleMix::single(&catalog(), "style-07").unwrap();
        assert_eq!(mix.len(), 26);
        for (i, &w) in mix.weights().iter().enumerate() {
            assert_eq!(w, if i == 7 { 1.0 } else { 0.0 });
        }
    }

    #[test]
    fn weights_are_relative_and_normalized() {
        let mix = StyleMix::new(&catalog(), [("style-03", 3.0), ("style-12", 1.0)]).unwrap();
        assert_eq!(mix.weights()[3], 0.75);
        assert_eq!(mix.weights()[12], 0.25);
        assert_eq!(mix.weights().iter().sum::<f32>(), 1.0);
        // A style named with weight 0 takes no part but is allowed.
        let mix = StyleMix::new(&catalog(), [("style-01", 0.0), ("style-02", 2.0)]).unwrap();
        assert_eq!(mix.weights()[2], 1.0);
    }

    #[test]
    fn unknown_styles_are_refused_by_name() {
        let err = StyleMix::single(&catalog(), "starry-night").unwrap_err();
        assert!(
            matches!(&err, StyleError::UnknownStyle { name, known: 26, .. } if name == "starry-night")
        );
        assert!(err.to_string().contains("starry-night"), "{err}");
    }

    #[test]
    fn negative_non_finite_and_all_zero_weights_are_refused() {
        let c = catalog();
        for bad in [-0.5, f32::NAN, f32::INFINITY] {
            let err = StyleMix::new(&c, [("style-00", 1.0), ("style-01", bad)]).unwrap_err();
            assert!(matches!(&err, StyleError::BadWeight { name, .. } if name == "style-01"));
        }
        assert!(matches!(
            StyleMix::new(&c, [("style-00", 0.0), ("style-01", 0.0)]),
            Err(StyleError::EmptyMix)
        ));
        assert!(matches!(
            StyleMix::new(&c, std::iter::empty()),
            Err(StyleError::EmptyMix)
        ));
        assert!(matches!(
            StyleMix::from_weights(&c, &[0.0; 26]),
            Err(StyleError::EmptyMix)
        ));
    }

    #[test]
    fn repeated_styles_are_refused() {
        let err = StyleMix::new(&catalog(), [("style-04", 1.0), ("style-04", 2.0)]).unwrap_err();
        assert!(matches!(err, StyleError::DuplicateStyle { name } if name == "style-04"));
    }

    #[test]
    fn a_weight_vector_needs_one_weight_per_style() {
        let c = catalog();
        assert!(matches!(
            StyleMix::from_weights(&c, &[1.0; 25]),
            Err(StyleError::WrongStyleCount {
                expected: 26,
                found: 25
            })
        ));
        let mut w = [0.0; 26];
        w[5] = 2.0;
        w[6] = 2.0;
        let mix = StyleMix::from_weights(&c, &w).unwrap();
        assert_eq!((mix.weights()[5], mix.weights()[6]), (0.5, 0.5));
        w[6] = -1.0;
        assert!(matches!(
            StyleMix::from_weights(&c, &w),
            Err(StyleError::BadWeight { name, .. }) if name == "style-06"
        ));
    }

    #[test]
    fn specs_parse_into_the_same_mixes() {
        let c = catalog();
        assert_eq!(
            StyleMix::parse(&c, "style-09").unwrap(),
            StyleMix::single(&c, "style-09").unwrap()
        );
        assert_eq!(
            StyleMix::parse(&c, "style-03:0.7 + style-12:0.3").unwrap(),
            StyleMix::new(&c, [("style-03", 0.7), ("style-12", 0.3)]).unwrap()
        );
        assert!(matches!(
            StyleMix::parse(&c, "style-03:lots"),
            Err(StyleError::UnreadableWeight { name, text }) if name == "style-03" && text == "lots"
        ));
        assert!(matches!(
            StyleMix::parse(&c, "style-03:-1"),
            Err(StyleError::BadWeight { .. })
        ));
        assert!(matches!(
            StyleMix::parse(&c, "style-03+"),
            Err(StyleError::UnknownStyle { .. })
        ));
    }

    #[test]
    fn catalogs_need_distinct_non_empty_names() {
        for names in [vec![], vec!["a", "a"], vec!["a", ""]] {
            let names = names.into_iter().map(String::from).collect();
            assert!(matches!(
                StyleCatalog::new(names),
                Err(StyleError::BadCatalog { .. })
            ));
        }
    }

    #[test]
    fn catalogs_load_from_the_style_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("styles.json");
        std::fs::write(&path, r#"{"styles": ["ink", "oil"]}"#).unwrap();
        let c = StyleCatalog::load(&path).unwrap();
        assert_eq!(c.names(), ["ink", "oil"]);
        assert_eq!(c.index_of("oil").unwrap(), 1);
        std::fs::write(&path, r#"{"styles": "ink"}"#).unwrap();
        assert!(matches!(
            StyleCatalog::load(&path),
            Err(StyleError::BadStyleList { .. })
        ));
    }
}
