//! Rows of the read model, as the queries return them.

/// An artwork of the catalog: the projector's row, read with its reader
/// (`gallery_projections::read_artwork_row`).
pub use gallery_projections::fold::catalog::ArtworkRow;

/// An exhibition: the projector's row, read with its reader
/// (`gallery_projections::read_exhibition_row`).
pub use gallery_projections::fold::catalog::ExhibitionRow;

/// An artwork's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub likes: i64,
    pub favorites: i64,
    pub comments: i64,
    pub views: i64,
}

/// A comment as posted: the projector's row, read with its reader
/// (`gallery_projections::read_comment_row`) or built from the Scylla read model.
pub use gallery_projections::fold::comments::CommentRow;

/// An artwork a user likes or favorites, and since when.
#[derive(Debug, Clone)]
pub struct MarkRecord {
    pub artwork_id: String,
    pub at_ms: i64,
}

/// A generation job, its progress, result and failure: the projector's row, read with its
/// reader (`gallery_projections::read_job_row`).
pub use gallery_projections::fold::generation::{JobResult, JobRow, Progress, StoredImage};
