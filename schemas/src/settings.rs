//! The sections every role reads to reach the log: `kafka` (the brokers, the deployment's
//! topic prefix, how topics are created and how the command side's producer waits) and
//! `registry` (the schema registry). Defaults and checks live next to the fields.

use std::time::Duration;

use gallery_infra::settings::{Invalid, at_least, between, invalid, name};
use serde::{Deserialize, Serialize};

use crate::{RegistryConfig, Topics};

/// The `kafka` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma separated.
    pub brokers: String,
    /// Prefix of every topic name (and of the groups and transactional ids under it).
    pub topic_prefix: String,
    /// Partitions of topics Gallery creates.
    pub partitions: i32,
    /// Replicas of topics Gallery creates; see [`KafkaSettings::min_insync_replicas`].
    pub replication_factor: i32,
    /// How long a command waits for Kafka to acknowledge its event before failing.
    pub delivery_timeout_ms: u64,
    /// Events the producer may hold unacknowledged; a command beyond that gets `503` at once.
    pub producer_queue_messages: u32,
    /// How long an event waits for others to share its batch to Kafka (`linger.ms`).
    pub producer_linger_ms: u64,
}

impl KafkaSettings {
    /// librdkafka's default queue capacity.
    pub const DEFAULT_QUEUE_MESSAGES: u32 = 100_000;
    /// A command's event waits at most this long for company.
    pub const DEFAULT_LINGER_MS: u64 = 2;

    /// The in-sync replicas an `acks=all` write to Gallery's topics needs: two when there
    /// are two replicas or more, so that an acknowledged event is on two brokers and survives
    /// the loss of any one (with three replicas, writes go on while one broker is down). One
    /// replica can only ask for one.
    pub fn min_insync_replicas(&self) -> i32 {
        self.replication_factor.clamp(1, 2)
    }

    /// The deployment's topic names.
    pub fn topics(&self) -> Topics {
        Topics::new(self.topic_prefix.clone())
    }

    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(self.delivery_timeout_ms)
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if self.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "must name at least one broker"));
        }
        name("kafka.topic_prefix", &self.topic_prefix, 0..=100)?;
        between("kafka.partitions", self.partitions, 1..=1000)?;
        at_least("kafka.replication_factor", self.replication_factor, 1)?;
        at_least("kafka.delivery_timeout_ms", self.delivery_timeout_ms, 100)?;
        between(
            "kafka.producer_queue_messages",
            self.producer_queue_messages,
            1..=10_000_000,
        )?;
        between(
            "kafka.producer_linger_ms",
            self.producer_linger_ms,
            0..=1000,
        )
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: Topics::DEFAULT_PREFIX.into(),
            partitions: 6,
            replication_factor: 1,
            delivery_timeout_ms: 10_000,
            producer_queue_messages: Self::DEFAULT_QUEUE_MESSAGES,
            producer_linger_ms: Self::DEFAULT_LINGER_MS,
        }
    }
}

/// The `registry` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Base URL of the Confluent-compatible schema registry API.
    pub url: String,
    /// Longest wait for one of its answers.
    pub timeout_ms: u64,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
            timeout_ms: 5_000,
        }
    }
}

impl RegistrySettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.url.starts_with("http://") || self.url.starts_with("https://") {
            Ok(())
        } else {
            Err(invalid(
                "registry.url",
                "must be an http:// or https:// URL",
            ))
        }
    }

    /// What the codec's registry client needs.
    pub fn config(&self) -> RegistryConfig {
        RegistryConfig {
            url: self.url.clone(),
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(KafkaSettings::default().validate(), Ok(()));
        assert_eq!(RegistrySettings::default().validate(), Ok(()));
    }

    #[test]
    fn a_bad_topic_prefix_or_linger_is_refused_with_its_key() {
        for (key, bad) in [
            (
                "kafka.topic_prefix",
                KafkaSettings {
                    topic_prefix: "bad prefix".into(),
                    ..KafkaSettings::default()
                },
            ),
            (
                "kafka.producer_linger_ms",
                KafkaSettings {
                    producer_linger_ms: 1001,
                    ..KafkaSettings::default()
                },
            ),
            (
                "kafka.brokers",
                KafkaSettings {
                    brokers: " ".into(),
                    ..KafkaSettings::default()
                },
            ),
        ] {
            assert_eq!(bad.validate().map_err(|e| e.key), Err(key));
        }
        let none = RegistrySettings {
            url: "127.0.0.1:8081".into(),
            ..RegistrySettings::default()
        };
        assert_eq!(none.validate().map_err(|e| e.key), Err("registry.url"));
    }
}
