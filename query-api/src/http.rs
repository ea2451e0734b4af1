//! The GraphQL endpoint over axum, with GraphiQL for development.

use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql::{ErrorExtensions, ServerError};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Html;
use axum::routing::get;
use gallery_commands::TokenKeys;

use crate::error::QueryError;
use crate::schema::{GallerySchema, Viewer};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub schema: GallerySchema,
    pub keys: Arc<TokenKeys>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

#[tracing::instrument(skip_all)]
async fn graphql(
    State(state): State<ApiState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let viewer = match headers.get(header::AUTHORIZATION) {
        None => Viewer(None),
        Some(value) => match state.keys.verify_header(value.to_str().ok()) {
            Ok(principal) => Viewer(Some(principal.user)),
            Err(e) => {
                let error = QueryError::from(e).extend();
                let server_error = ServerError {
                    message: error.message,
                    source: None,
                    locations: vec![],
                    path: vec![],
                    extensions: error.extensions,
                };
                return async_graphql::Response::from_errors(vec![server_error]).into();
            }
        },
    };
    state
        .schema
        .execute(request.into_inner().data(viewer))
        .await
        .into()
}
