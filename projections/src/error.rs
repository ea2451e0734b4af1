//! The one error type of the projections.

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("postgres: {context}")]
    Postgres {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Migration(#[from] gallery_infra::MigrationError),
    /// A row lacks a column the code reads, or holds it in another type (a schema change).
    #[error(transparent)]
    Column(#[from] gallery_infra::ColumnError),
    #[error("kafka: {context}")]
    Kafka {
        context: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("schema registry unavailable while decoding")]
    Registry(#[source] gallery_schemas::CodecError),
    #[error(
        "topic {topic} does not exist (create it first; `gallery` creates its topics on start)"
    )]
    MissingTopic { topic: String },
    #[error("stored {table}.{column} holds an unknown value {value:?}")]
    Stored {
        table: &'static str,
        column: &'static str,
        value: String,
    },
    #[error("the live read model moved from {from} to {to}")]
    Moved {
        from: crate::Generation,
        to: crate::Generation,
    },
    #[error("the live read model changed from {expected} to {found} during the rebuild")]
    SwitchedMeanwhile {
        expected: crate::Generation,
        found: crate::Generation,
    },
    #[error(
        "the rebuild stayed {lag} messages behind the live read model for {waited_secs} s (bound: {bound})"
    )]
    Lagging {
        lag: i64,
        bound: i64,
        waited_secs: u64,
    },
    #[error(
        "the switch to the rebuilt read model did not finish within the rebuild's timeout ({waited_secs} s; last attempt: {last_attempt})"
    )]
    SwitchTimedOut {
        waited_secs: u64,
        last_attempt: &'static str,
    },
    #[error(
        "the live read model's offsets name partitions this rebuild does not read: {partitions:?} (another deployment's topics, or partitions added since the rebuild started); nothing was switched"
    )]
    UnreadPartitions { partitions: Vec<String> },
    #[error(
        "this {} holds the read model of the deployment with topic prefix {recorded:?}, not of this one ({ours:?}): give each deployment one of its own (an empty one is built from the log on start)",
        .store.place()
    )]
    OtherDeployment {
        store: crate::ReadModelStore,
        recorded: String,
        ours: String,
    },
    #[error(
        "this {} holds offsets of topics that are not this deployment's (topic prefix {ours:?}): {topics:?}; another deployment wrote into it, so its rows mix two logs. Give each deployment one of its own (an empty one is built from the log on start)",
        .store.place()
    )]
    ForeignTopics {
        store: crate::ReadModelStore,
        ours: String,
        topics: Vec<String>,
    },
    #[error("scylla: {context}")]
    Scylla {
        context: &'static str,
        #[source]
        source: Box<CqlError>,
    },
    #[error("the Scylla settings")]
    Settings(#[from] gallery_infra::Invalid),
    #[error("metadata lookup task failed")]
    Task(#[source] tokio::task::JoinError),
}

pub use gallery_infra::CqlError;

impl ProjectionError {
    pub(crate) fn cql<E: Into<CqlError>>(context: &'static str) -> impl FnOnce(E) -> Self {
        move |source| ProjectionError::Scylla {
            context,
            source: Box::new(source.into()),
        }
    }

    pub(crate) fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| ProjectionError::Postgres { context, source }
    }

    pub(crate) fn kafka(context: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        move |source| ProjectionError::Kafka { context, source }
    }
}

/// A row of the read model that could not be read: a column missing or of another type, or a
/// stored value this version does not know.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error(transparent)]
    Column(#[from] gallery_infra::ColumnError),
    #[error("stored {table}.{column} holds an unknown value {value:?}")]
    Unknown {
        table: &'static str,
        column: &'static str,
        value: String,
    },
}

/// A stored value of `table.column` that parses as a `T` (a status kept as text); a value this
/// version does not know is [`RowError::Unknown`].
pub(crate) fn stored<T: std::str::FromStr>(
    r: &tokio_postgres::Row,
    table: &'static str,
    column: &'static str,
) -> Result<T, RowError> {
    use gallery_infra::Columns;
    let value: String = r.column(column)?;
    value.parse().map_err(|_| RowError::Unknown {
        table,
        column,
        value,
    })
}

impl From<RowError> for ProjectionError {
    fn from(e: RowError) -> Self {
        match e {
            RowError::Column(c) => ProjectionError::Column(c),
            RowError::Unknown {
                table,
                column,
                value,
            } => ProjectionError::Stored {
                table,
                column,
                value,
            },
        }
    }
}
