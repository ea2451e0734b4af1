//! Topic names. Every topic name starts with a configurable prefix, so that several
//! deployments (or tests) can share one Kafka cluster without seeing each other's events.

/// The topics of one Gallery deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// The default prefix of a deployment.
    pub const DEFAULT_PREFIX: &'static str = "gallery.";

    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Interaction facts (likes; later favorites, comments, views). Key: artwork id, so every
    /// fact about one artwork lands on one partition, in order.
    pub fn interactions(&self) -> String {
        format!("{}interactions", self.prefix)
    }

    /// Messages a consumer could not process, with the reason and the original position in
    /// headers (see `projections::dead_letter`).
    pub fn dead_letters(&self) -> String {
        format!("{}dead-letters", self.prefix)
    }
}

impl Default for Topics {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PREFIX)
    }
}
