//! Errors of the GraphQL API, and their stable codes (in `extensions.code`). Mutations show the
//! write side's errors with exactly the code and public message HTTP gives them.

use async_graphql::ErrorExtensions;
use async_graphql::ParseRequestError;
use axum::extract::rejection::BytesRejection;
use gallery_commands::CommandError;
use gallery_infra::CqlError;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    BadInput(#[from] gallery_schemas::IdError),
    #[error(transparent)]
    Unauthenticated(#[from] gallery_commands::AuthError),
    #[error("{argument}: {reason}")]
    InvalidArgument {
        argument: &'static str,
        reason: &'static str,
    },
    #[error("read model holds an unknown {table}.{column} {value:?}")]
    Stored {
        table: &'static str,
        column: &'static str,
        value: String,
    },
    /// A row lacks a column the code reads, or holds it in another type (a schema change).
    #[error("read model row")]
    Column(#[from] gallery_infra::ColumnError),
    #[error("read model query failed")]
    Shared(#[source] std::sync::Arc<QueryError>),
    #[error("read model unavailable")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("read model query failed")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("scylla read model query failed")]
    Cql(#[source] Box<CqlError>),
    /// The body is not a GraphQL request (bad JSON, a bad multipart form, a file too large).
    #[error(transparent)]
    Request(#[from] ParseRequestError),
    /// A JSON array of operations: batches are not served (each would run as one request,
    /// sidestepping the limits per request), and are refused before they are parsed.
    #[error("batched requests are not supported: send one operation per request")]
    BatchNotSupported,
    #[error("the request body exceeds {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("the request body did not arrive within {waited_ms} ms")]
    BodyTooSlow { waited_ms: u64 },
    #[error("the request body could not be read")]
    Body(#[source] BytesRejection),
    /// The read model did not reach the positions of a request's consistency tokens in time.
    #[error("the read model did not reach the consistency token within {waited_ms} ms")]
    ConsistencyTimeout { waited_ms: u64 },
    /// The process already holds its most WebSocket connections; refused at the upgrade.
    #[error("the server already holds {limit} WebSocket connections; try again later")]
    TooManyConnections { limit: usize },
}

impl QueryError {
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::BadInput(_) | QueryError::InvalidArgument { .. } => "BAD_USER_INPUT",
            QueryError::Unauthenticated(_) => "UNAUTHENTICATED",
            QueryError::Pool(_)
            | QueryError::Postgres(_)
            | QueryError::Cql(_)
            | QueryError::Stored { .. }
            | QueryError::Column(_)
            | QueryError::Shared(_) => "INTERNAL",
            QueryError::Request(ParseRequestError::PayloadTooLarge)
            | QueryError::BodyTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            QueryError::Body(r) if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                "PAYLOAD_TOO_LARGE"
            }
            QueryError::BodyTooSlow { .. } => "REQUEST_TIMEOUT",
            QueryError::BatchNotSupported => "BATCH_NOT_SUPPORTED",
            QueryError::Request(_) | QueryError::Body(_) => "BAD_REQUEST",
            QueryError::ConsistencyTimeout { .. } => "CONSISTENCY_TIMEOUT",
            QueryError::TooManyConnections { .. } => "TOO_MANY_CONNECTIONS",
        }
    }
}

impl ErrorExtensions for QueryError {
    fn extend(&self) -> async_graphql::Error {
        let code = self.code();
        if code == "INTERNAL" {
            tracing::error!(error = %self, source = ?std::error::Error::source(self), "query failed");
        }
        let message = match code {
            "INTERNAL" => "internal error".to_owned(),
            _ => self.to_string(),
        };
        async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
    }
}

/// A write-side refusal or failure (a command's, an account operation's) as a GraphQL error,
/// through the write side's one answer: `extensions.code` is [`CommandError::code`], the
/// message is the one HTTP shows, and internal causes are only logged. Errors where retrying
/// helps carry `extensions.retryAfter` (seconds).
pub(crate) fn command_error(e: impl Into<CommandError>) -> async_graphql::Error {
    let e = e.into();
    e.log();
    let code = e.code();
    let retry_after = e.retry_after_secs();
    async_graphql::Error::new(e.public_message()).extend_with(|_, x| {
        x.set("code", code);
        if let Some(secs) = retry_after {
            x.set("retryAfter", secs);
        }
    })
}

impl From<gallery_projections::RowError> for QueryError {
    fn from(e: gallery_projections::RowError) -> Self {
        match e {
            gallery_projections::RowError::Column(c) => QueryError::Column(c),
            gallery_projections::RowError::Unknown {
                table,
                column,
                value,
            } => QueryError::Stored {
                table,
                column,
                value,
            },
        }
    }
}
