//! The read side over GraphQL (async-graphql on axum). It reads the projections' tables and
//! never writes events itself.

mod error;
mod http;
mod schema;

pub use error::QueryError;
pub use http::{ApiState, router};
pub use schema::{GallerySchema, Viewer, build_schema};
