//! The Scylla read model of the interactions (likes, favorites, comments, views).
//!
//! Scylla has no transactions and its counters are not idempotent, so the projector keeps
//! what it needs to compute absolute values and writes those, each cell with a write timestamp
//! derived from the Kafka offset of the fact that decided it ([`write_timestamp`]): replaying a
//! fact rewrites the same value with the same timestamp, and a later fact always wins.
//!
//! Everything an artwork's counts depend on lives in one partition of `artwork_state` (the
//! counts as static columns, one clustering row per user with that user's latest like and
//! favorite), together with `next_offset`, the position in the artwork's Kafka partition up
//! to which the partition is folded. A batch writes the derived tables first (the users'
//! lists, comments, views; each row stamped with its fact's offset), then each artwork's
//! partition in one single-partition batch, which Scylla and Cassandra apply atomically and in
//! isolation, and the Kafka offsets last. After a crash anywhere in between, the replay reads
//! the partition as it was before the interrupted batch (rows written beyond its
//! `next_offset` are ignored), folds the same facts with the same pure folds as Postgres, and
//! rewrites the same values. The positions at which like and favorite events were first
//! applied (`set_event_positions`) are derived rows too, but are read whatever their stamp: a
//! position written by the interrupted batch names the very message the replay reads again,
//! which is therefore applied again, while a copy of the event anywhere else stays a copy.
//!
//! What to write is decided by the pure fold [`crate::fold::scylla`]; this module holds the
//! CQL around it: `schema` (the keyspace and tables), `statements` (the prepared statements),
//! `read` (what a batch reads), `write` (a plan's rows bound to statements and batched),
//! `store` (a batch read, folded and written; the stored offsets) and `projector` (the
//! consumer loop).

mod projector;
mod read;
mod schema;
mod statements;
mod store;
mod write;

pub use projector::{ScyllaProjector, ScyllaProjectorConfig};
pub use schema::{connect, migrate};

use gallery_infra::settings::{Invalid, at_least, invalid};

/// How to reach the Scylla (or Cassandra) cluster and where the read model lives: the
/// `scylla` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScyllaSettings {
    /// Contact points, `host:port`, comma separated.
    pub nodes: String,
    /// The keyspace of this deployment (created when missing).
    pub keyspace: String,
    /// Replicas of the keyspace (`SimpleStrategy`).
    pub replication_factor: u32,
}

impl Default for ScyllaSettings {
    fn default() -> Self {
        Self {
            nodes: "127.0.0.1:9042".into(),
            keyspace: "gallery".into(),
            replication_factor: 1,
        }
    }
}

impl ScyllaSettings {
    /// The contact points, one per comma-separated entry of `nodes`.
    pub fn contact_points(&self) -> Vec<String> {
        self.nodes
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Checks the nodes, the replicas and the keyspace name, which is spliced into statements.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.contact_points().is_empty() {
            return Err(invalid("scylla.nodes", "must name at least one node"));
        }
        at_least("scylla.replication_factor", self.replication_factor, 1)?;
        let k = self.keyspace.as_bytes();
        let ok = (1..=48).contains(&k.len())
            && k.first().is_some_and(u8::is_ascii_alphabetic)
            && k.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
        if ok {
            Ok(())
        } else {
            Err(invalid(
                "scylla.keyspace",
                format!(
                    "{:?} is not a keyspace name: 1 to 48 ASCII letters, digits or '_', \
                     starting with a letter",
                    self.keyspace
                ),
            ))
        }
    }
}

/// The write timestamp (microseconds, as CQL counts them) of a cell decided by the fact at
/// `offset` of its Kafka partition. Every cell is written from one partition only (all
/// interactions of an artwork share a partition, and every row belongs to one artwork), so
/// timestamps only ever compare facts of one partition: a replay writes the same timestamp, a
/// later fact a greater one, and a deletion beats the insertion it follows.
pub fn write_timestamp(offset: i64) -> i64 {
    offset.saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(keyspace: &str) -> ScyllaSettings {
        ScyllaSettings {
            keyspace: keyspace.into(),
            ..ScyllaSettings::default()
        }
    }

    #[test]
    fn nodes_are_split_at_commas_and_some_are_needed() {
        let two = ScyllaSettings {
            nodes: " a:9042, ,b:9042 ".into(),
            ..ScyllaSettings::default()
        };
        assert_eq!(two.contact_points(), vec!["a:9042", "b:9042"]);
        assert_eq!(
            ScyllaSettings::default().contact_points(),
            vec!["127.0.0.1:9042".to_owned()]
        );
        let none = ScyllaSettings {
            nodes: " , ".into(),
            ..ScyllaSettings::default()
        };
        assert_eq!(none.validate().map_err(|e| e.key), Err("scylla.nodes"));
        let no_replica = ScyllaSettings {
            replication_factor: 0,
            ..ScyllaSettings::default()
        };
        assert_eq!(
            no_replica.validate().map_err(|e| e.key),
            Err("scylla.replication_factor")
        );
    }

    #[test]
    fn keyspace_names_are_checked() {
        assert!(settings("gallery").validate().is_ok());
        assert!(settings("test_0193abc").validate().is_ok());
        for bad in ["", "1abc", "a-b", "a;DROP", &"a".repeat(49)] {
            assert!(settings(bad).validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_grow_with_the_offset_and_start_above_zero() {
        assert_eq!(write_timestamp(0), 1);
        assert!(write_timestamp(7) < write_timestamp(8));
        assert_eq!(write_timestamp(i64::MAX), i64::MAX);
    }
}
