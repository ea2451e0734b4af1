//! Errors of the read side, and their stable GraphQL codes (in `extensions.code`).

use async_graphql::ErrorExtensions;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    BadInput(#[from] gallery_schemas::IdError),
    #[error(transparent)]
    Unauthenticated(#[from] gallery_commands::AuthError),
    #[error("read model unavailable")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("read model query failed")]
    Postgres(#[from] tokio_postgres::Error),
}

impl QueryError {
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::BadInput(_) => "BAD_USER_INPUT",
            QueryError::Unauthenticated(_) => "UNAUTHENTICATED",
            QueryError::Pool(_) | QueryError::Postgres(_) => "INTERNAL",
        }
    }
}

impl ErrorExtensions for QueryError {
    fn extend(&self) -> async_graphql::Error {
        if matches!(self, QueryError::Pool(_) | QueryError::Postgres(_)) {
            tracing::error!(error = %self, source = ?std::error::Error::source(self), "query failed");
        }
        let message = match self {
            QueryError::Pool(_) | QueryError::Postgres(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let code = self.code();
        async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
    }
}
