//! What a call to Scylla or Cassandra failed with, one type for every crate that speaks CQL
//! (the Scylla projector, the query API's Scylla reads): each of the driver's error types
//! converts into it, so a caller writes `map_err(CqlError::from)` or `?` whatever it called.

/// What a CQL call failed with.
#[derive(Debug, thiserror::Error)]
pub enum CqlError {
    #[error("cannot open a session")]
    Connect(#[from] scylla::errors::NewSessionError),
    #[error("cannot prepare a statement")]
    Prepare(#[from] scylla::errors::PrepareError),
    #[error("a statement failed")]
    Execute(#[from] scylla::errors::ExecutionError),
    #[error("the result holds no rows")]
    NotRows(#[from] scylla::errors::IntoRowsResultError),
    #[error("the rows do not have the expected types")]
    RowTypes(#[from] scylla::errors::RowsError),
    #[error("a row could not be read")]
    Row(#[from] scylla::errors::DeserializationError),
    #[error("the first row could not be read")]
    FirstRow(#[from] scylla::errors::MaybeFirstRowError),
    #[error("the nodes do not agree on the schema")]
    Schema(#[from] scylla::errors::SchemaAgreementError),
    #[error("a row's partition key could not be computed")]
    PartitionKey(#[from] scylla::statement::prepared::PartitionKeyError),
}
