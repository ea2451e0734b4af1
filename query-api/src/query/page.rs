//! Relay-style pages: `first` (default 20, at most 100) and `after`, an opaque cursor that is
//! the base64 of the sort key (a time in milliseconds and the id that breaks ties).

use std::future::Future;

use async_graphql::OutputType;
use async_graphql::connection::{Connection, Edge};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::error::QueryError;

pub const DEFAULT_FIRST: i32 = 20;
pub const MAX_FIRST: i32 = 100;

/// A checked `first`.
#[derive(Debug, Clone, Copy)]
pub struct First(usize);

impl First {
    pub fn parse(first: Option<i32>) -> Result<Self, QueryError> {
        let first = first.unwrap_or(DEFAULT_FIRST);
        if !(1..=MAX_FIRST).contains(&first) {
            return Err(QueryError::InvalidArgument {
                argument: "first",
                reason: "must be between 1 and 100",
            });
        }
        Ok(First(
            usize::try_from(first).unwrap_or(DEFAULT_FIRST as usize),
        ))
    }

    /// How many rows to fetch: one more than the page, to learn whether another follows.
    pub fn fetch(self) -> i64 {
        i64::try_from(self.0).map_or(i64::from(MAX_FIRST), |n| n + 1)
    }

    pub fn get(self) -> usize {
        self.0
    }
}

pub fn encode(at_ms: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{at_ms}:{id}"))
}

fn bad_cursor() -> QueryError {
    QueryError::InvalidArgument {
        argument: "after",
        reason: "not a cursor of this list",
    }
}

/// The sort key of a cursor with a text id.
pub fn decode(cursor: Option<&str>) -> Result<Option<(i64, String)>, QueryError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
    let (at, id) = text.split_once(':').ok_or_else(bad_cursor)?;
    let at = at.parse::<i64>().map_err(|_| bad_cursor())?;
    if id.is_empty() {
        return Err(bad_cursor());
    }
    Ok(Some((at, id.to_owned())))
}

/// The sort key of a cursor with a UUID id.
pub fn decode_uuid(cursor: Option<&str>) -> Result<Option<(i64, Uuid)>, QueryError> {
    decode(cursor)?
        .map(|(at, id)| {
            Uuid::parse_str(&id)
                .map(|id| (at, id))
                .map_err(|_| bad_cursor())
        })
        .transpose()
}

/// A cursor's decoder: [`decode`] or [`decode_uuid`].
pub type Decode<I> = fn(Option<&str>) -> Result<Option<(i64, I)>, QueryError>;

/// One page of a list: `first` and the cursor `after` checked (`decode` reads the cursor's
/// id), the rows read by `read(after, how many to fetch)`, and the page built from them as
/// [`connection`] builds it.
pub async fn load<I, R, N, Fut>(
    first: Option<i32>,
    after: Option<&str>,
    decode: Decode<I>,
    read: impl FnOnce(Option<(i64, I)>, i64) -> Fut,
    key: impl Fn(&R) -> (i64, String),
    node: impl Fn(R) -> N,
) -> Result<Connection<String, N>, QueryError>
where
    N: OutputType,
    Fut: Future<Output = Result<Vec<R>, QueryError>>,
{
    let first = First::parse(first)?;
    let after = decode(after)?;
    let had_cursor = after.is_some();
    let rows = read(after, first.fetch()).await?;
    Ok(connection(rows, first, had_cursor, key, node))
}

/// A page from rows fetched with [`First::fetch`]: `key` gives each row's sort key.
pub fn connection<R, N: OutputType>(
    mut rows: Vec<R>,
    first: First,
    had_cursor: bool,
    key: impl Fn(&R) -> (i64, String),
    node: impl Fn(R) -> N,
) -> Connection<String, N> {
    let has_next = rows.len() > first.get();
    rows.truncate(first.get());
    let mut connection = Connection::new(had_cursor, has_next);
    connection.edges.extend(rows.into_iter().map(|r| {
        let (at, id) = key(&r);
        Edge::new(encode(at, &id), node(r))
    }));
    connection
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let c = encode(42, "a:b");
        assert_eq!(
            decode(Some(&c)).ok().flatten(),
            Some((42, "a:b".to_owned()))
        );
        assert!(decode(Some("!!")).is_err());
        assert!(decode(Some(&URL_SAFE_NO_PAD.encode("x:y"))).is_err());
        assert!(decode_uuid(Some(&c)).is_err());
    }

    #[test]
    fn first_is_bounded() {
        assert_eq!(First::parse(None).map(First::get).ok(), Some(20));
        assert!(First::parse(Some(0)).is_err());
        assert!(First::parse(Some(101)).is_err());
        assert_eq!(First::parse(Some(100)).map(First::fetch).ok(), Some(101));
    }
}
