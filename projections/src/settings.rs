//! The `projections` section of the configuration: how the projectors share their consumer
//! groups and how much they apply at once (the `scylla` section is
//! [`crate::scylla::ScyllaSettings`]), with its defaults and checks next to the fields; and the
//! projectors of a role built from the sections they read ([`Projectors::build`]).

use std::time::Duration;

use gallery_infra::settings::{Invalid, between, name};
use serde::{Deserialize, Serialize};

use gallery_schemas::EventCodec;
use gallery_schemas::settings::KafkaSettings;

use crate::scylla::{ScyllaProjector, ScyllaProjectorConfig, ScyllaSettings};
use crate::{GroupSettings, ProjectionError, Projector, ProjectorConfig};

/// Most messages a projector batch may hold (a batch is decoded and planned in memory).
pub const MAX_BATCH: usize = 50_000;

/// The `projections` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProjectionsSettings {
    /// How long the projectors' consumer group waits for a silent instance before its
    /// partitions go to the others.
    pub session_timeout_ms: u64,
    /// A stable, unique name of this instance (e.g. the pod name of a StatefulSet): a
    /// restarted instance gets its partitions back at once (Kafka static membership).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Messages the Postgres projector (and a rebuild) applies in one transaction, at most.
    pub max_batch: usize,
    /// Messages the Scylla projector applies in one round, at most.
    pub scylla_max_batch: usize,
}

impl Default for ProjectionsSettings {
    fn default() -> Self {
        Self {
            session_timeout_ms: 10_000,
            instance_id: None,
            max_batch: ProjectorConfig::DEFAULT_MAX_BATCH,
            scylla_max_batch: ScyllaProjectorConfig::DEFAULT_MAX_BATCH,
        }
    }
}

impl ProjectionsSettings {
    pub fn validate(&self) -> Result<(), Invalid> {
        // Kafka's brokers accept 6 s to 30 min by default (group.min/max.session.timeout.ms).
        between(
            "projections.session_timeout_ms",
            self.session_timeout_ms,
            1_000..=1_800_000,
        )?;
        between("projections.max_batch", self.max_batch, 1..=MAX_BATCH)?;
        between(
            "projections.scylla_max_batch",
            self.scylla_max_batch,
            1..=MAX_BATCH,
        )?;
        if let Some(id) = &self.instance_id {
            name("projections.instance_id", id, 1..=200)?;
        }
        Ok(())
    }

    /// How the projectors take part in their consumer groups.
    pub fn group(&self) -> GroupSettings {
        GroupSettings {
            session_timeout: Duration::from_millis(self.session_timeout_ms),
            instance_id: self.instance_id.clone(),
        }
    }
}

/// The sections the projectors read.
#[derive(Debug, Clone, Copy)]
pub struct ProjectorsSettings<'a> {
    pub kafka: &'a KafkaSettings,
    /// The read model's database (the `postgres` section's URL).
    pub postgres_url: &'a str,
    pub projections: &'a ProjectionsSettings,
    /// The Scylla read model, when the interactions are read from it (`read.store = "scylla"`).
    pub scylla: Option<&'a ScyllaSettings>,
}

impl ProjectorsSettings<'_> {
    /// The live Postgres projector's configuration (a rebuild starts from it too).
    pub fn postgres(&self) -> ProjectorConfig {
        ProjectorConfig {
            group: self.projections.group(),
            max_batch: self.projections.max_batch,
            ..ProjectorConfig::new(
                self.kafka.brokers.clone(),
                self.postgres_url.to_owned(),
                self.kafka.topics(),
            )
        }
    }
}

/// The projectors of a `projections` role: the Postgres one, and the Scylla one when Scylla
/// holds a read model. Cheap to build; each runs until its stop.
#[derive(Debug)]
pub struct Projectors {
    pub postgres: Projector,
    pub scylla: Option<ScyllaProjector>,
}

impl Projectors {
    pub fn build(
        settings: ProjectorsSettings<'_>,
        codec: EventCodec,
    ) -> Result<Self, ProjectionError> {
        let postgres = Projector::new(settings.postgres(), codec.clone())?;
        let scylla = match settings.scylla {
            Some(scylla) => {
                let config = ScyllaProjectorConfig {
                    group: settings.projections.group(),
                    max_batch: settings.projections.scylla_max_batch,
                    // The query API's caches, subscriptions and read-your-writes follow it.
                    announce_to: Some(settings.postgres_url.to_owned()),
                    ..ScyllaProjectorConfig::new(
                        settings.kafka.brokers.clone(),
                        settings.kafka.topics(),
                        scylla.clone(),
                    )
                };
                Some(ScyllaProjector::new(config, codec)?)
            }
            None => None,
        };
        Ok(Self { postgres, scylla })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_of_no_message_or_beyond_the_bound_are_refused() {
        assert_eq!(ProjectionsSettings::default().validate(), Ok(()));
        for (key, bad) in [
            (
                "projections.max_batch",
                ProjectionsSettings {
                    max_batch: 0,
                    ..ProjectionsSettings::default()
                },
            ),
            (
                "projections.scylla_max_batch",
                ProjectionsSettings {
                    scylla_max_batch: MAX_BATCH + 1,
                    ..ProjectionsSettings::default()
                },
            ),
            (
                "projections.instance_id",
                ProjectionsSettings {
                    instance_id: Some("pod 1".into()),
                    ..ProjectionsSettings::default()
                },
            ),
        ] {
            assert_eq!(bad.validate().map_err(|e| e.key), Err(key));
        }
    }

    #[test]
    fn the_group_waits_ten_seconds_by_default() {
        let g = GroupSettings::default();
        assert_eq!(g.session_timeout, Duration::from_secs(10));
        assert_eq!(g.instance_id, None);
    }
}
