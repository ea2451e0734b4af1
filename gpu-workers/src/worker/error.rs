//! Why a worker session ended. Every one of these tears the session down; the worker then
//! starts a new one from the committed offsets (the same path as a crash).

use rdkafka::error::KafkaError;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("kafka: {context}")]
    Kafka {
        context: &'static str,
        #[source]
        source: KafkaError,
    },
    /// A transaction failed in a way that cannot be retried (fenced by a newer incarnation
    /// with the same transactional id, or a fatal producer error).
    #[error("kafka transaction: {context}")]
    Transaction {
        context: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("the schema registry failed while {context}")]
    Registry {
        context: &'static str,
        #[source]
        source: gallery_schemas::CodecError,
    },
    #[error("catching up on partition {partition} did not reach offset {end} within {timeout:?}")]
    CatchUpTimedOut {
        partition: i32,
        end: i64,
        timeout: std::time::Duration,
    },
    #[error("could not start the paint threads")]
    Threads(#[source] std::io::Error),
    #[error("a blocking Kafka call did not finish")]
    Task(#[source] tokio::task::JoinError),
    #[error("the consumer thread stopped")]
    PollerGone,
    /// A transaction's thread ended without an answer (it could not start, or panicked).
    #[error("a transaction's thread ended without an answer")]
    TransactionThread,
    /// A transaction did not finish within `after` (its producer is counted as wedged).
    #[error("a transaction did not finish within {after:?}")]
    TransactionWedged { after: std::time::Duration },
}

impl WorkerError {
    pub(crate) fn kafka(context: &'static str) -> impl FnOnce(KafkaError) -> Self {
        move |source| WorkerError::Kafka { context, source }
    }
}
