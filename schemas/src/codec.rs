//! Confluent-framed Avro through a schema registry: `0x00`, the schema id (4 bytes, big
//! endian), then the Avro body. Schemas are registered under the topic-record-name strategy
//! (`<topic>-<record full name>`), so one topic can carry several event types.

use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use uuid::Uuid;

use crate::events::{Event, LikeSet};
use crate::ids::{ArtworkId, IdError, UserId};

const LIKE_SET_SCHEMA: &str = include_str!("../avro/gallery.interactions.LikeSet.avsc");
const LIKE_SET_NAME: &str = "gallery.interactions.LikeSet";

/// Where the registry is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`.
    pub url: String,
    pub timeout: Duration,
}

/// Why an event could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The registry could not be reached or answered with a transient error; try again.
    #[error("schema registry unavailable: {message}")]
    RegistryUnavailable { message: String },
    /// The bytes are not a valid event: a poison message, to be dead-lettered.
    #[error("invalid event: {reason}")]
    Invalid { reason: String },
    #[error("event field {field} is invalid")]
    Field {
        field: &'static str,
        #[source]
        source: IdError,
    },
    #[error("record {name} is not an event this version of Gallery knows")]
    UnknownRecord { name: String },
    #[error("could not set up the schema registry client: {message}")]
    Setup { message: String },
}

impl CodecError {
    /// True when retrying the same bytes later may succeed (the registry was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, CodecError::RegistryUnavailable { .. })
    }

    fn from_registry(e: SRCError) -> Self {
        if e.retriable {
            CodecError::RegistryUnavailable {
                message: e.to_string(),
            }
        } else {
            CodecError::Invalid {
                reason: e.to_string(),
            }
        }
    }
}

/// Encodes and decodes [`Event`]s, registering and fetching schemas through the registry.
/// Cheap to clone; the schema caches are shared.
#[derive(Debug, Clone)]
pub struct EventCodec {
    encoder: Arc<AvroEncoder>,
    decoder: Arc<AvroDecoder>,
}

impl EventCodec {
    pub fn new(config: &RegistryConfig) -> Result<Self, CodecError> {
        let settings = || {
            SrSettings::new_builder(config.url.trim_end_matches('/').to_owned())
                .no_proxy()
                .set_timeout(config.timeout)
                .build()
                .map_err(|e| CodecError::Setup {
                    message: e.to_string(),
                })
        };
        Ok(Self {
            encoder: Arc::new(AvroEncoder::new(settings()?)),
            decoder: Arc::new(AvroDecoder::new(settings()?)),
        })
    }

    /// Frames `event` for `topic`, registering its schema on first use.
    pub async fn encode(&self, topic: &str, event: &Event) -> Result<Vec<u8>, CodecError> {
        let (name, schema, fields) = match event {
            Event::LikeSet(e) => (LIKE_SET_NAME, LIKE_SET_SCHEMA, like_set_fields(e)),
        };
        let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
            topic.to_owned(),
            SuppliedSchema::new(Some(name.to_owned()), SchemaType::Avro, schema.to_owned()),
        );
        let result = self.encoder.encode(fields, strategy).await;
        if result.is_err() {
            // A registry outage must not stick: forget cached failures so the next call retries.
            self.encoder.remove_errors_from_cache();
        }
        result.map_err(CodecError::from_registry)
    }

    /// Decodes one framed message. A transient registry error is
    /// [`CodecError::RegistryUnavailable`]; anything else means the bytes are not a valid event.
    pub async fn decode(&self, bytes: Option<&[u8]>) -> Result<Event, CodecError> {
        let Some(bytes) = bytes else {
            return Err(CodecError::Invalid {
                reason: "message has no value".to_owned(),
            });
        };
        let decoded = self
            .decoder
            .decode(Some(bytes))
            .await
            .map_err(CodecError::from_registry)?;
        let name = decoded
            .name
            .map(|n| n.fullname(None).to_string())
            .unwrap_or_default();
        match name.as_str() {
            LIKE_SET_NAME => like_set_from(decoded.value).map(Event::LikeSet),
            _ => Err(CodecError::UnknownRecord { name }),
        }
    }
}

fn like_set_fields(e: &LikeSet) -> Vec<(&'static str, Value)> {
    vec![
        ("event_id", Value::Uuid(e.event_id)),
        ("user_id", Value::String(e.user_id.as_str().to_owned())),
        (
            "artwork_id",
            Value::String(e.artwork_id.as_str().to_owned()),
        ),
        ("liked", Value::Boolean(e.liked)),
        ("occurred_at", Value::TimestampMillis(e.occurred_at_ms)),
    ]
}

/// Reads the named fields of a decoded record.
struct Record(Vec<(String, Value)>);

impl Record {
    fn from_value(value: Value) -> Result<Self, CodecError> {
        match value {
            Value::Record(fields) => Ok(Record(fields)),
            other => Err(CodecError::Invalid {
                reason: format!("expected a record, found {other:?}"),
            }),
        }
    }

    fn take(&mut self, field: &'static str) -> Result<Value, CodecError> {
        let pos =
            self.0
                .iter()
                .position(|(n, _)| n == field)
                .ok_or_else(|| CodecError::Invalid {
                    reason: format!("field {field} is missing"),
                })?;
        Ok(self.0.swap_remove(pos).1)
    }

    fn string(&mut self, field: &'static str) -> Result<String, CodecError> {
        match self.take(field)? {
            Value::String(s) => Ok(s),
            other => Err(wrong_type(field, "string", &other)),
        }
    }

    fn uuid(&mut self, field: &'static str) -> Result<Uuid, CodecError> {
        match self.take(field)? {
            Value::Uuid(u) => Ok(u),
            Value::String(s) => Uuid::parse_str(&s).map_err(|e| CodecError::Invalid {
                reason: format!("field {field} is not a UUID: {e}"),
            }),
            other => Err(wrong_type(field, "uuid", &other)),
        }
    }

    fn boolean(&mut self, field: &'static str) -> Result<bool, CodecError> {
        match self.take(field)? {
            Value::Boolean(b) => Ok(b),
            other => Err(wrong_type(field, "boolean", &other)),
        }
    }

    fn timestamp_ms(&mut self, field: &'static str) -> Result<i64, CodecError> {
        match self.take(field)? {
            Value::TimestampMillis(t) | Value::Long(t) => Ok(t),
            other => Err(wrong_type(field, "timestamp-millis", &other)),
        }
    }
}

fn wrong_type(field: &'static str, expected: &str, found: &Value) -> CodecError {
    CodecError::Invalid {
        reason: format!("field {field}: expected {expected}, found {found:?}"),
    }
}

fn like_set_from(value: Value) -> Result<LikeSet, CodecError> {
    let mut r = Record::from_value(value)?;
    let user_id = r.string("user_id")?;
    let artwork_id = r.string("artwork_id")?;
    Ok(LikeSet {
        event_id: r.uuid("event_id")?,
        user_id: UserId::parse(&user_id).map_err(|source| CodecError::Field {
            field: "user_id",
            source,
        })?,
        artwork_id: ArtworkId::parse(&artwork_id).map_err(|source| CodecError::Field {
            field: "artwork_id",
            source,
        })?,
        liked: r.boolean("liked")?,
        occurred_at_ms: r.timestamp_ms("occurred_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_set_fields_round_trip_through_the_record_reader() {
        let event = LikeSet {
            event_id: Uuid::now_v7(),
            user_id: UserId::parse("u1").unwrap_or_else(|e| unreachable!("{e}")),
            artwork_id: ArtworkId::parse("a1").unwrap_or_else(|e| unreachable!("{e}")),
            liked: true,
            occurred_at_ms: 1_700_000_000_000,
        };
        let value = Value::Record(
            like_set_fields(&event)
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v))
                .collect(),
        );
        assert_eq!(like_set_from(value).ok(), Some(event));
    }

    #[test]
    fn the_schema_parses_and_names_the_record() {
        let schema = apache_avro::Schema::parse_str(LIKE_SET_SCHEMA);
        let name = schema.ok().and_then(|s| match s {
            apache_avro::Schema::Record(r) => Some(r.name.fullname(None).to_string()),
            _ => None,
        });
        assert_eq!(name.as_deref(), Some(LIKE_SET_NAME));
    }

    #[test]
    fn a_record_with_a_bad_artwork_id_is_rejected() {
        let value = Value::Record(vec![
            ("event_id".into(), Value::Uuid(Uuid::nil())),
            ("user_id".into(), Value::String("u".into())),
            ("artwork_id".into(), Value::String("no spaces".into())),
            ("liked".into(), Value::Boolean(true)),
            ("occurred_at".into(), Value::TimestampMillis(0)),
        ]);
        assert!(matches!(
            like_set_from(value),
            Err(CodecError::Field {
                field: "artwork_id",
                ..
            })
        ));
    }
}
