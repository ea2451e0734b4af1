//! The contract between the projectors and the query API: the read model's name, the Postgres
//! channel on which every committed batch is announced, and the announcement's format.
//!
//! A projector `NOTIFY`s [`CHANNEL`] inside the transaction that applies a batch, so only
//! commits are heard; the payload ([`notification`]) is one line per fact, `p <projection>`
//! first, then `o <topic> <partition> <next_offset>`, `a <artwork id>`, `j <job id>`; a line
//! `*` instead of the `a` and `j` lines means "anything may have changed" (the payload would
//! pass Postgres' limit). Topics, names and ids hold no spaces or line breaks. The query API
//! reads it back with [`Change::parse`].

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use uuid::Uuid;

/// A (topic, partition) pair.
pub type TopicPartition = (String, i32);

/// The Postgres channel every committed batch is announced on.
pub const CHANNEL: &str = "read_model";

/// The projection whose tables and offsets are the read model the query API serves.
pub const PROJECTION: &str = "read-model";

/// The name the Scylla projector of [`PROJECTION`] announces its batches under
/// ([`scylla_announced_as`]`(PROJECTION)`).
pub const SCYLLA_PROJECTION: &str = "scylla-read-model";

/// The name under which the batches of the Scylla projection `projection` are announced.
pub fn scylla_announced_as(projection: &str) -> String {
    format!("scylla-{projection}")
}

/// Largest notification payload sent (Postgres refuses 8000 bytes and more).
const NOTIFY_LIMIT: usize = 7_900;

/// The payload announcing a committed batch of `projection` (see the module's format).
pub fn notification<'a>(
    projection: &str,
    next_offsets: &HashMap<TopicPartition, i64>,
    artworks: impl IntoIterator<Item = &'a str>,
    jobs: &BTreeSet<Uuid>,
) -> String {
    let mut offsets = format!("p {projection}\n");
    for ((topic, partition), next) in next_offsets {
        let _ = writeln!(offsets, "o {topic} {partition} {next}");
    }
    let mut changes = String::new();
    for id in artworks {
        let _ = writeln!(changes, "a {id}");
    }
    for id in jobs {
        let _ = writeln!(changes, "j {id}");
    }
    if offsets.len() + changes.len() > NOTIFY_LIMIT {
        changes = "*\n".to_owned();
    }
    if offsets.len() + changes.len() > NOTIFY_LIMIT {
        offsets = format!("p {projection}\n");
    }
    offsets + &changes
}

/// What one committed batch changed (one notification, parsed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// The projection that committed (offsets of others are not the read model's).
    pub projection: Option<String>,
    /// (topic, partition) -> next offset to apply.
    pub offsets: Vec<(TopicPartition, i64)>,
    /// Artworks whose details or counts may have changed.
    pub artworks: Vec<String>,
    /// Generation jobs that may have changed.
    pub jobs: Vec<Uuid>,
    /// Anything may have changed (the list did not fit, or notifications were missed).
    pub everything: bool,
}

impl Change {
    /// Parses a [`notification`] payload. Lines it does not understand are skipped.
    pub fn parse(payload: &str) -> Change {
        let mut change = Change::default();
        for line in payload.lines() {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("o"), Some(topic), Some(partition), Some(next)) => {
                    if let (Ok(p), Ok(n)) = (partition.parse(), next.parse()) {
                        change.offsets.push(((topic.to_owned(), p), n));
                    }
                }
                (Some("p"), Some(name), None, None) => change.projection = Some(name.to_owned()),
                (Some("a"), Some(id), None, None) => change.artworks.push(id.to_owned()),
                (Some("j"), Some(id), None, None) => {
                    if let Ok(id) = Uuid::parse_str(id) {
                        change.jobs.push(id);
                    }
                }
                (Some("*"), None, None, None) => change.everything = true,
                _ => tracing::debug!(line, "unknown read-model notification line"),
            }
        }
        change
    }

    /// Whether `artwork` may have changed.
    pub fn touches_artwork(&self, artwork: &str) -> bool {
        self.everything || self.artworks.iter().any(|a| a == artwork)
    }

    /// Whether `job` may have changed.
    pub fn touches_job(&self, job: Uuid) -> bool {
        self.everything || self.jobs.contains(&job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_parses_into_offsets_artworks_and_jobs() {
        let job = Uuid::nil();
        let change = Change::parse(&format!(
            "p read-model\no gallery.interactions 4 18\na sunflowers\nj {job}\nzzz\n"
        ));
        assert_eq!(
            change.offsets,
            vec![(("gallery.interactions".to_owned(), 4), 18)]
        );
        assert_eq!(change.projection.as_deref(), Some(PROJECTION));
        assert_eq!(change.artworks, vec!["sunflowers".to_owned()]);
        assert!(change.touches_job(job));
        assert!(!change.touches_artwork("irises"));
        assert!(Change::parse("*\n").touches_artwork("irises"));
    }

    #[test]
    fn what_a_projector_announces_the_api_reads_back() {
        let offsets = HashMap::from([(("g.interactions".to_owned(), 2), 18)]);
        let jobs = BTreeSet::from([Uuid::from_u128(7)]);
        let payload = notification(PROJECTION, &offsets, ["sunflowers", "irises"], &jobs);
        assert_eq!(
            Change::parse(&payload),
            Change {
                projection: Some(PROJECTION.to_owned()),
                offsets: vec![(("g.interactions".to_owned(), 2), 18)],
                artworks: vec!["sunflowers".to_owned(), "irises".to_owned()],
                jobs: vec![Uuid::from_u128(7)],
                everything: false,
            }
        );
    }

    #[test]
    fn a_payload_past_the_limit_says_everything_changed_and_keeps_its_offsets() {
        let offsets = HashMap::from([(("g.interactions".to_owned(), 2), 18)]);
        let many: Vec<String> = (0..2_000).map(|n| format!("artwork-{n}")).collect();
        let payload = notification(
            PROJECTION,
            &offsets,
            many.iter().map(String::as_str),
            &BTreeSet::new(),
        );
        assert!(payload.len() < 8_000);
        let change = Change::parse(&payload);
        assert!(change.everything && change.artworks.is_empty());
        assert_eq!(change.offsets.len(), 1);
        // So many partitions that even the offsets do not fit: only the name is left.
        let offsets: HashMap<TopicPartition, i64> = (0..1_000)
            .map(|p| (("g.interactions".to_owned(), p), 1))
            .collect();
        let change = Change::parse(&notification(PROJECTION, &offsets, [], &BTreeSet::new()));
        assert_eq!(change.projection.as_deref(), Some(PROJECTION));
        assert!(change.offsets.is_empty() && change.everything);
    }

    #[test]
    fn the_scylla_projection_of_the_read_model_announces_under_its_constant() {
        assert_eq!(scylla_announced_as(PROJECTION), SCYLLA_PROJECTION);
    }
}
