//! Topic names. Every topic name starts with a configurable prefix, so that several
//! deployments (or tests) can share one Kafka cluster without seeing each other's events.

use crate::events::Stream;

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

    /// Accounts' public facts. Key: user id.
    pub fn users(&self) -> String {
        format!("{}users", self.prefix)
    }

    /// Exhibitions and their artworks. Key: exhibition id.
    pub fn catalog(&self) -> String {
        format!("{}catalog", self.prefix)
    }

    /// Interaction facts (likes, favorites, comments, views). Key: artwork id, so every fact
    /// about one artwork lands on one partition, in order.
    pub fn interactions(&self) -> String {
        format!("{}interactions", self.prefix)
    }

    /// Generation requests, cancellations and (from the workers) results. Key: request id.
    pub fn generation(&self) -> String {
        format!("{}generation", self.prefix)
    }

    /// The topic of a stream.
    pub fn of(&self, stream: Stream) -> String {
        match stream {
            Stream::Users => self.users(),
            Stream::Catalog => self.catalog(),
            Stream::Interactions => self.interactions(),
            Stream::Generation => self.generation(),
        }
    }

    /// The consumer group of the AI painters on the generation topic (whose lag is the
    /// write side's generation backlog).
    pub fn workers_group(&self) -> String {
        format!("{}gpu-workers", self.prefix)
    }

    /// Every topic a deployment uses.
    pub fn all(&self) -> Vec<String> {
        vec![
            self.users(),
            self.catalog(),
            self.interactions(),
            self.generation(),
            self.dead_letters(),
        ]
    }

    /// Messages a consumer could not process, copied unchanged, with the reason and the
    /// original position in headers ([`dead_letter_headers`]).
    pub fn dead_letters(&self) -> String {
        format!("{}dead-letters", self.prefix)
    }
}

/// Header names on a dead-lettered message, the same for every consumer that writes one.
pub mod dead_letter_headers {
    /// Why the message could not be processed.
    pub const REASON: &str = "gallery-dlq-reason";
    /// The topic, partition and offset it was read from.
    pub const TOPIC: &str = "gallery-dlq-topic";
    pub const PARTITION: &str = "gallery-dlq-partition";
    pub const OFFSET: &str = "gallery-dlq-offset";
    /// Which consumer gave up on it (`projection:<name>`, `painter`).
    pub const CONSUMER: &str = "gallery-dlq-consumer";
}

impl Default for Topics {
    fn default() -> Self {
        Self::new(Self::DEFAULT_PREFIX)
    }
}
