//! Automatic persisted queries (Apollo's protocol): a client sends
//! `"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "<hex>"}}` without the query;
//! an unknown hash answers `PERSISTED_QUERY_NOT_FOUND` (message `PersistedQueryNotFound`), and
//! the client then sends the query with its hash once, which is kept.
//!
//! Kept here rather than in async-graphql's extension because that one parses the query
//! itself, on the async runtime and outside the document budget ([`crate::guard`]); this one
//! keeps the query's text, so every document, persisted or not, is parsed by the guard.

use std::sync::Arc;

use async_graphql::{Request, ServerError};
use moka::future::Cache;
use sha2::{Digest, Sha256};

use crate::guard::{DocumentLimits, scan};
use crate::protect::{codes, set_code};

/// The extension's key in a request's `extensions`.
const EXTENSION: &str = "persistedQuery";

/// Queries kept by their SHA-256 (least recently used dropped).
#[derive(Debug, Clone)]
pub struct PersistedQueries {
    queries: Cache<String, Arc<str>>,
}

fn error(message: impl Into<String>, code: &str) -> ServerError {
    let mut error = ServerError::new(message, None);
    set_code(&mut error, code);
    error
}

impl PersistedQueries {
    pub fn new(capacity: u64) -> Self {
        Self {
            queries: Cache::new(capacity.max(1)),
        }
    }

    /// Fills in the query of a request that names a persisted one; keeps the query of a request
    /// that sends it with its hash (if it is within `limits`).
    pub async fn resolve(
        &self,
        mut request: Request,
        limits: &DocumentLimits,
    ) -> Result<Request, ServerError> {
        let Some(value) = request.extensions.remove(EXTENSION) else {
            return Ok(request);
        };
        let invalid = || {
            error(
                "Invalid \"PersistedQuery\" extension configuration.",
                codes::PERSISTED_QUERY_INVALID,
            )
        };
        let async_graphql::Value::Object(fields) = value else {
            return Err(invalid());
        };
        let version = match fields.get("version") {
            Some(async_graphql::Value::Number(n)) => n.as_i64(),
            _ => None,
        };
        let Some(async_graphql::Value::String(hash)) = fields.get("sha256Hash") else {
            return Err(invalid());
        };
        if version != Some(1) {
            return Err(error(
                "Only the \"PersistedQuery\" extension of version 1 is supported.",
                codes::PERSISTED_QUERY_INVALID,
            ));
        }
        if request.query.is_empty() {
            let Some(query) = self.queries.get(hash.as_str()).await else {
                return Err(error(
                    "PersistedQueryNotFound",
                    codes::PERSISTED_QUERY_NOT_FOUND,
                ));
            };
            request.query = query.to_string();
            return Ok(request);
        }
        let actual = hex::encode(Sha256::digest(request.query.as_bytes()));
        if !actual.eq_ignore_ascii_case(hash) {
            return Err(error(
                "the sha256Hash of the persisted query does not match the query",
                codes::PERSISTED_QUERY_INVALID,
            ));
        }
        // Only what could ever be parsed is kept; the guard refuses the rest with its reason.
        if scan(&request.query, limits).is_ok() {
            self.queries
                .insert(actual, Arc::from(request.query.as_str()))
                .await;
        }
        Ok(request)
    }
}
