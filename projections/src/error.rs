//! The one error type of the projections.

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("postgres: {context}")]
    Postgres {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
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
    #[error("metadata lookup task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl ProjectionError {
    pub(crate) fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| ProjectionError::Postgres { context, source }
    }

    pub(crate) fn kafka(context: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        move |source| ProjectionError::Kafka { context, source }
    }
}
