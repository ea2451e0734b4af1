//! A budget for GraphQL documents, spent before any expensive work: a hostile document must
//! cost the server little, and never the async runtime's worker threads that every other role
//! of the process shares.
//!
//! In order, for every query, mutation and subscription document:
//!
//! 1. **Size**: more than `max_bytes` bytes, or more than `max_tokens` lexical tokens, is
//!    refused with `QUERY_TOO_LARGE` after one linear scan, before parsing. The same scan
//!    refuses brackets nested deeper than the parser may recurse ([`bracket_limit`]) with
//!    `QUERY_TOO_COMPLEX`.
//! 2. **Parsing** runs on the blocking thread pool, at most [`DocumentGuard`]'s number of
//!    documents at a time, so a flood of documents takes a bounded share of the CPU.
//! 3. **Shape, fragments expanded**: the field depth and the number of field selections are
//!    computed once per fragment (so a "fragment bomb", whose expansion is exponential in its
//!    size, costs time linear in its size) and refused beyond `max_depth` and
//!    `max_fields` with `QUERY_TOO_COMPLEX`; a fragment that spreads itself is refused with
//!    `GRAPHQL_VALIDATION_FAILED` (the validator would recurse through it without end). Every field adds at least one to the query's
//!    complexity, so `max_fields` is the complexity limit: what this refuses the schema's own
//!    complexity check would refuse too, only much later.
//! 4. **Validation** (async-graphql's rules, which visit fragments expanded) then runs on a
//!    document known to be small when expanded, under the same permit, off the worker
//!    threads.
//!
//! A short document ([`INLINE_BYTES`] at most) is parsed and measured on the worker thread
//! that received it, and when it selects at most [`INLINE_FIELDS`] fields expanded it is
//! validated there too: that work costs less than executing the fields, and much less than a
//! hand-off to the blocking pool and a wait for a permit, which on a small machine made every
//! query wait behind every other. A flood of short documents costs what a flood of queries
//! costs; anything longer or larger takes the bounded path above.

use std::sync::Arc;

use async_graphql::ServerError;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::parser::{Positioned, parse_query};
use tokio::sync::Semaphore;

use crate::protect::codes;

/// The deepest `max_depth` that can be configured: a document nested that deep (fields,
/// fragments and inline fragments along one path, at most twice its field depth) is still
/// within what async-graphql's parser recurses into (64 selection sets).
pub const MAX_DEPTH_LIMIT: usize = 32;

/// Brackets (`{`, `(`, `[`) nested deeper than this are refused before parsing: the selection
/// nesting allowed, plus room for nested input values.
pub const fn bracket_limit(max_depth: usize) -> usize {
    2 * max_depth + 32
}

/// What a document may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    /// Longest document, in bytes.
    pub max_bytes: usize,
    /// Most lexical tokens (names, punctuation, values; not whitespace, commas, comments).
    pub max_tokens: usize,
    /// Deepest field nesting, fragments expanded (a top-level leaf field is 1 deep).
    pub max_depth: usize,
    /// Most field selections, fragments expanded.
    pub max_fields: usize,
}

/// Why a document is refused before it runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the document is {bytes} bytes long; at most {limit} are accepted")]
    TooLong { bytes: usize, limit: usize },
    #[error("the document has more than {limit} tokens")]
    TooManyTokens { limit: usize },
    #[error("the document nests brackets more than {limit} deep")]
    Brackets { limit: usize },
    #[error("the query is nested {depth} deep, fragments expanded; at most {limit} is accepted")]
    TooDeep { depth: usize, limit: usize },
    #[error("the query nests fields and fragments more than {limit} deep")]
    Nesting { limit: usize },
    #[error("the query selects more than {limit} fields, fragments expanded")]
    TooManyFields { limit: usize },
    #[error("fragment {fragment} spreads itself")]
    Cycle { fragment: String },
}

impl Refusal {
    /// The `extensions.code` of the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::TooLong { .. } | Refusal::TooManyTokens { .. } => codes::QUERY_TOO_LARGE,
            Refusal::Brackets { .. }
            | Refusal::TooDeep { .. }
            | Refusal::Nesting { .. }
            | Refusal::TooManyFields { .. } => codes::QUERY_TOO_COMPLEX,
            // The validator refuses cycles too, but only after visiting fragments expanded,
            // which never ends on a cycle.
            Refusal::Cycle { .. } => codes::VALIDATION_FAILED,
        }
    }

    fn into_server_error(self) -> ServerError {
        let code = self.code();
        let mut error = ServerError::new(self.to_string(), None);
        crate::protect::set_code(&mut error, code);
        error
    }
}

/// Step 1: one pass over the text, counting tokens and bracket nesting; stops at the first
/// limit passed.
pub fn scan(query: &str, limits: &DocumentLimits) -> Result<(), Refusal> {
    if query.len() > limits.max_bytes {
        return Err(Refusal::TooLong {
            bytes: query.len(),
            limit: limits.max_bytes,
        });
    }
    let brackets = bracket_limit(limits.max_depth);
    let bytes = query.as_bytes();
    let (mut i, mut tokens, mut nesting) = (0, 0_usize, 0_usize);
    while i < bytes.len() {
        let b = bytes[i];
        let token_start = i;
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 3;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' | b'(' | b'[' => {
                nesting += 1;
                if nesting > brackets {
                    return Err(Refusal::Brackets { limit: brackets });
                }
                i += 1;
            }
            b'}' | b')' | b']' => {
                nesting = nesting.saturating_sub(1);
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => i += 3,
            b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'+' => {
                i += 1;
                while i < bytes.len()
                    && matches!(bytes[i], b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.')
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        debug_assert!(i > token_start);
        tokens += 1;
        if tokens > limits.max_tokens {
            return Err(Refusal::TooManyTokens {
                limit: limits.max_tokens,
            });
        }
    }
    Ok(())
}

/// The shape of a selection set, fragments expanded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Shape {
    /// Deepest field nesting.
    depth: usize,
    /// Field selections (saturating).
    fields: usize,
    /// Deepest nesting of selection sets: fields with selections, spreads, inline fragments.
    nesting: usize,
}

/// Fragments' shapes, each computed once.
struct Shapes<'d> {
    doc: &'d ExecutableDocument,
    known: std::collections::HashMap<&'d str, Shape>,
    /// Fragments being measured, outermost first.
    open: Vec<&'d str>,
    limits: &'d DocumentLimits,
    nesting_limit: usize,
}

impl<'d> Shapes<'d> {
    fn of_set(&mut self, set: &'d Positioned<SelectionSet>, at: usize) -> Result<Shape, Refusal> {
        let mut shape = Shape::default();
        for item in &set.node.items {
            let inner = match &item.node {
                Selection::Field(field) => {
                    let children = if field.node.selection_set.node.items.is_empty() {
                        Shape::default()
                    } else {
                        self.nested(&field.node.selection_set, at)?
                    };
                    Shape {
                        depth: children.depth + 1,
                        fields: children.fields.saturating_add(1),
                        nesting: children.nesting,
                    }
                }
                Selection::InlineFragment(inline) => self.nested(&inline.node.selection_set, at)?,
                Selection::FragmentSpread(spread) => {
                    let fragment = self.fragment(spread.node.fragment_name.node.as_str())?;
                    Shape {
                        nesting: fragment.nesting + 1,
                        ..fragment
                    }
                }
            };
            shape.depth = shape.depth.max(inner.depth);
            shape.fields = shape.fields.saturating_add(inner.fields);
            shape.nesting = shape.nesting.max(inner.nesting);
            if shape.depth > self.limits.max_depth {
                return Err(Refusal::TooDeep {
                    depth: shape.depth,
                    limit: self.limits.max_depth,
                });
            }
            if shape.fields > self.limits.max_fields {
                return Err(Refusal::TooManyFields {
                    limit: self.limits.max_fields,
                });
            }
            if at + shape.nesting > self.nesting_limit {
                return Err(Refusal::Nesting {
                    limit: self.nesting_limit,
                });
            }
        }
        Ok(shape)
    }

    /// A selection set one level below `at`.
    fn nested(&mut self, set: &'d Positioned<SelectionSet>, at: usize) -> Result<Shape, Refusal> {
        let inner = self.of_set(set, at + 1)?;
        Ok(Shape {
            nesting: inner.nesting + 1,
            ..inner
        })
    }

    fn fragment(&mut self, name: &'d str) -> Result<Shape, Refusal> {
        if let Some(shape) = self.known.get(name) {
            return Ok(*shape);
        }
        let Some((key, definition)) = self.doc.fragments.get_key_value(name) else {
            return Ok(Shape::default());
        };
        if self.open.contains(&name) {
            return Err(Refusal::Cycle {
                fragment: name.to_owned(),
            });
        }
        if self.open.len() >= self.nesting_limit {
            // Fragments spread inside one another this many times nest at least this deep.
            return Err(Refusal::Nesting {
                limit: self.nesting_limit,
            });
        }
        self.open.push(key.as_str());
        // A fragment's own shape does not depend on where it is spread: measured from 0.
        let shape = self.of_set(&definition.node.selection_set, 0);
        self.open.pop();
        let shape = shape?;
        self.known.insert(key.as_str(), shape);
        Ok(shape)
    }
}

/// Documents at most this long are parsed on the worker thread that received them.
pub const INLINE_BYTES: usize = 2048;

/// Short documents selecting at most this many fields (fragments expanded) are validated on
/// the worker thread too.
pub const INLINE_FIELDS: usize = 64;

/// Step 3: the depth and size of every operation, fragments expanded.
pub fn measure(doc: &ExecutableDocument, limits: &DocumentLimits) -> Result<(), Refusal> {
    fields(doc, limits).map(|_| ())
}

/// Step 3, and the number of field selections of the operations, fragments expanded.
fn fields(doc: &ExecutableDocument, limits: &DocumentLimits) -> Result<usize, Refusal> {
    let mut shapes = Shapes {
        doc,
        known: Default::default(),
        open: Vec::new(),
        limits,
        nesting_limit: 2 * limits.max_depth,
    };
    let mut fields = 0_usize;
    for (_, operation) in doc.operations.iter() {
        let shape = shapes.of_set(&operation.node.selection_set, 0)?;
        fields = fields.saturating_add(shape.fields);
        if fields > limits.max_fields {
            return Err(Refusal::TooManyFields {
                limit: limits.max_fields,
            });
        }
    }
    // Fragments that no operation spreads are validated too (and refused as unused): bounded
    // the same way.
    for name in doc.fragments.keys() {
        shapes.fragment(name.as_str())?;
    }
    Ok(fields)
}

/// True when any field of `doc` (operations and fragments) is an introspection root field.
pub fn selects_introspection(doc: &ExecutableDocument) -> bool {
    fn any(set: &SelectionSet) -> bool {
        set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => {
                matches!(field.node.name.node.as_str(), "__schema" | "__type")
                    || any(&field.node.selection_set.node)
            }
            Selection::InlineFragment(inline) => any(&inline.node.selection_set.node),
            Selection::FragmentSpread(_) => false,
        })
    }
    doc.operations
        .iter()
        .any(|(_, op)| any(&op.node.selection_set.node))
        || doc
            .fragments
            .values()
            .any(|f| any(&f.node.selection_set.node))
}

/// A parsed document within its budget.
#[derive(Debug)]
pub struct Parsed {
    pub document: ExecutableDocument,
    /// Short and selecting few fields: validated on the worker thread.
    pub small: bool,
}

/// Parses `query` and measures it (steps 2 and 3); its fields, fragments expanded.
fn parse_and_measure(
    query: &str,
    limits: &DocumentLimits,
) -> Result<(ExecutableDocument, usize), ServerError> {
    let doc = parse_query(query).map_err(|e| {
        let too_deep = matches!(e, async_graphql::parser::Error::RecursionLimitExceeded);
        let mut error = ServerError::from(e);
        crate::protect::set_code(
            &mut error,
            if too_deep {
                codes::QUERY_TOO_COMPLEX
            } else {
                codes::PARSE_FAILED
            },
        );
        error
    })?;
    let fields = fields(&doc, limits).map_err(Refusal::into_server_error)?;
    Ok((doc, fields))
}

/// Parses documents within their budget, a bounded number at a time, off the async runtime's
/// worker threads (short ones excepted, see [`INLINE_BYTES`]).
#[derive(Debug, Clone)]
pub struct DocumentGuard {
    limits: DocumentLimits,
    permits: Arc<Semaphore>,
}

impl DocumentGuard {
    /// At most `concurrency` documents are parsed or validated at a time (at least one).
    pub fn new(limits: DocumentLimits, concurrency: usize) -> Self {
        Self {
            limits,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Half the machine's cores (at least one): document work never takes the whole CPU.
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }

    pub fn limits(&self) -> &DocumentLimits {
        &self.limits
    }

    /// Steps 1 to 3; whether the document is small enough to be validated on the worker
    /// thread.
    pub async fn parse(&self, query: &str) -> Result<Parsed, ServerError> {
        scan(query, &self.limits).map_err(Refusal::into_server_error)?;
        if query.len() <= INLINE_BYTES {
            let (document, fields) = parse_and_measure(query, &self.limits)?;
            return Ok(Parsed {
                document,
                small: fields <= INLINE_FIELDS,
            });
        }
        let _permit = self.permit().await?;
        let query = query.to_owned();
        let limits = self.limits;
        let (document, _) = tokio::task::spawn_blocking(move || parse_and_measure(&query, &limits))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "parsing a GraphQL document failed");
                let mut error = ServerError::new("internal error", None);
                crate::protect::set_code(&mut error, codes::INTERNAL);
                error
            })??;
        Ok(Parsed {
            document,
            small: false,
        })
    }

    /// A permit to work on one document.
    pub async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ServerError> {
        self.permits.acquire().await.map_err(|_| {
            let mut error = ServerError::new("the server is stopping", None);
            crate::protect::set_code(&mut error, codes::INTERNAL);
            error
        })
    }
}

/// Runs `work` (CPU-bound, short, not `'static`) so that the runtime's other tasks are not
/// stuck behind it: on a multi-threaded runtime the worker thread hands its other tasks over
/// first; elsewhere (a test's single-threaded runtime) it simply runs.
pub fn off_the_workers<T>(work: impl FnOnce() -> T) -> T {
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

#[cfg(test)]
mod tests;
