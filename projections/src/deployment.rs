//! Which deployment a read model belongs to.
//!
//! A read model folds the topics of one deployment (one topic prefix). A second deployment
//! writing into the same database or keyspace mixes two logs into one set of rows and offsets:
//! counts of both, and offsets a rebuild of either can never reach. So each read model records
//! the topic prefix of the deployment that first used it, and every role that uses it refuses
//! to start when the recorded prefix is another one, or when the stored offsets name topics
//! that are not the deployment's own (a read model written by two deployments before the
//! prefix was recorded).

use std::collections::BTreeSet;

use gallery_schemas::{Stream, Topics};

use crate::error::ProjectionError;

/// The streams a read model folds, whose topics its offsets may name.
pub(crate) const STREAMS: [Stream; 4] = [
    Stream::Users,
    Stream::Catalog,
    Stream::Interactions,
    Stream::Generation,
];

/// Where a read model lives, for the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadModelStore {
    /// The Postgres database of `postgres.url`.
    Postgres,
    /// The Scylla keyspace of `scylla.keyspace`.
    Scylla,
}

impl ReadModelStore {
    /// What the read model lives in, and the setting that names it.
    pub fn place(self) -> &'static str {
        match self {
            Self::Postgres => "database (postgres.url)",
            Self::Scylla => "keyspace (scylla.keyspace)",
        }
    }
}

/// What a start finds about the read model's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// This deployment's: its prefix is recorded.
    Ours,
    /// Nobody's yet (new, or from before prefixes were recorded), and nothing in it is another
    /// deployment's: record this deployment's prefix.
    Unclaimed,
}

/// Decides whether `ours` may use a read model that records `recorded` as its deployment's
/// prefix and whose offsets name the topics `held`.
pub(crate) fn owner(
    ours: &Topics,
    store: ReadModelStore,
    recorded: Option<&str>,
    held: impl IntoIterator<Item = String>,
) -> Result<Owner, ProjectionError> {
    if let Some(recorded) = recorded
        && recorded != ours.prefix()
    {
        return Err(ProjectionError::OtherDeployment {
            store,
            recorded: recorded.to_owned(),
            ours: ours.prefix().to_owned(),
        });
    }
    let own: BTreeSet<String> = STREAMS.iter().map(|s| ours.of(*s)).collect();
    let foreign: BTreeSet<String> = held.into_iter().filter(|t| !own.contains(t)).collect();
    if !foreign.is_empty() {
        return Err(ProjectionError::ForeignTopics {
            store,
            ours: ours.prefix().to_owned(),
            topics: foreign.into_iter().collect(),
        });
    }
    Ok(if recorded.is_some() {
        Owner::Ours
    } else {
        Owner::Unclaimed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(prefix: &str) -> Topics {
        Topics::new(prefix)
    }

    #[test]
    fn a_new_read_model_is_claimed_and_then_ours() {
        let ours = topics("gallery.");
        assert_eq!(
            owner(&ours, ReadModelStore::Postgres, None, []).ok(),
            Some(Owner::Unclaimed)
        );
        let held = [
            "gallery.interactions".to_owned(),
            "gallery.users".to_owned(),
        ];
        assert_eq!(
            owner(&ours, ReadModelStore::Postgres, None, held.clone()).ok(),
            Some(Owner::Unclaimed)
        );
        assert_eq!(
            owner(&ours, ReadModelStore::Postgres, Some("gallery."), held).ok(),
            Some(Owner::Ours)
        );
    }

    #[test]
    fn another_deployments_read_model_is_refused() {
        let ours = topics("gallery.");
        let err = owner(&ours, ReadModelStore::Scylla, Some("staging."), []);
        assert!(
            matches!(&err, Err(ProjectionError::OtherDeployment { recorded, .. }) if recorded == "staging."),
            "{err:?}"
        );
    }

    #[test]
    fn offsets_of_another_deployments_topics_are_refused_with_their_names() {
        let ours = topics("gallery.");
        let held = [
            "gallery.interactions".to_owned(),
            "staging.interactions".to_owned(),
            "staging.users".to_owned(),
        ];
        for recorded in [None, Some("gallery.")] {
            match owner(&ours, ReadModelStore::Postgres, recorded, held.clone()) {
                Err(ProjectionError::ForeignTopics { topics, .. }) => assert_eq!(
                    topics,
                    vec![
                        "staging.interactions".to_owned(),
                        "staging.users".to_owned()
                    ]
                ),
                other => panic!("{other:?}"),
            }
        }
        // A topic that merely starts with the prefix is not one of the deployment's.
        let err = owner(
            &ours,
            ReadModelStore::Postgres,
            None,
            ["gallery.other".to_owned()],
        );
        assert!(matches!(err, Err(ProjectionError::ForeignTopics { .. })));
    }
}
