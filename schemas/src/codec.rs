//! Confluent-framed Avro through a schema registry: `0x00`, the schema id (4 bytes, big
//! endian), then the Avro body. Schemas are registered under the topic-record-name strategy
//! (`<topic>-<record full name>`), so one topic can carry several event types.
//!
//! Encoding is typed: an event is serialized straight into Avro binary by its record's
//! schema, with no intermediate [`Value`] tree, and the schema id comes from a per-codec
//! table filled on first use. So a command's event costs one buffer, not a registry lookup
//! and a tree of values (it was a tenth of the command service's time under load). The bytes
//! are the same as the generic path's ([`to_avro`] and a datum writer), which the contract
//! tests check for every record.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::Duration;

use apache_avro::schema::ResolvedSchema;
use apache_avro::types::Value;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

use crate::events::Stream;
use crate::events::{
    ArtworkAdded, ArtworkRemoved, ArtworkViewed, CommentDeleted, CommentPosted, Event,
    ExhibitionClosed, ExhibitionCreated, ExhibitionPublished, FavoriteSet,
    GenerationCancelConfirmed, GenerationCancelled, GenerationCompleted, GenerationFailed,
    GenerationProgressed, GenerationRequested, GenerationStarted, LikeSet, UserRegistered,
};
use crate::topics::Topics;

macro_rules! schema {
    ($name:literal) => {
        ($name, include_str!(concat!("../avro/", $name, ".avsc")))
    };
}

/// Applies `$body` to the inner record of an [`Event`], whatever its type.
macro_rules! with_record {
    ($event:expr, |$e:ident| $body:expr) => {
        match $event {
            Event::UserRegistered($e) => $body,
            Event::ExhibitionCreated($e) => $body,
            Event::ArtworkAdded($e) => $body,
            Event::ArtworkRemoved($e) => $body,
            Event::ExhibitionPublished($e) => $body,
            Event::ExhibitionClosed($e) => $body,
            Event::LikeSet($e) => $body,
            Event::FavoriteSet($e) => $body,
            Event::CommentPosted($e) => $body,
            Event::CommentDeleted($e) => $body,
            Event::ArtworkViewed($e) => $body,
            Event::GenerationRequested($e) => $body,
            Event::GenerationCancelled($e) => $body,
            Event::GenerationStarted($e) => $body,
            Event::GenerationProgressed($e) => $body,
            Event::GenerationCompleted($e) => $body,
            Event::GenerationFailed($e) => $body,
            Event::GenerationCancelConfirmed($e) => $body,
        }
    };
}

/// Every record's schema, by full name: the `.avsc` files under `avro/`.
pub const SCHEMAS: &[(&str, &str)] = &[
    schema!("gallery.users.UserRegistered"),
    schema!("gallery.catalog.ExhibitionCreated"),
    schema!("gallery.catalog.ArtworkAdded"),
    schema!("gallery.catalog.ArtworkRemoved"),
    schema!("gallery.catalog.ExhibitionPublished"),
    schema!("gallery.catalog.ExhibitionClosed"),
    schema!("gallery.interactions.LikeSet"),
    schema!("gallery.interactions.FavoriteSet"),
    schema!("gallery.interactions.CommentPosted"),
    schema!("gallery.interactions.CommentDeleted"),
    schema!("gallery.interactions.ArtworkViewed"),
    schema!("gallery.generation.GenerationRequested"),
    schema!("gallery.generation.GenerationCancelled"),
    schema!("gallery.generation.GenerationStarted"),
    schema!("gallery.generation.GenerationProgressed"),
    schema!("gallery.generation.GenerationCompleted"),
    schema!("gallery.generation.GenerationFailed"),
    schema!("gallery.generation.GenerationCancelConfirmed"),
];

/// The stream (topic family) of a record, from its namespace `gallery.<stream>`.
pub fn stream_of(record: &str) -> Option<Stream> {
    match record.split('.').nth(1)? {
        "users" => Some(Stream::Users),
        "catalog" => Some(Stream::Catalog),
        "interactions" => Some(Stream::Interactions),
        "generation" => Some(Stream::Generation),
        _ => None,
    }
}

/// Sends a registry request with a JSON body and checks its status.
async fn call(
    request: reqwest::RequestBuilder,
    subject: &str,
    body: &serde_json::Value,
) -> Result<(), CodecError> {
    let response = request
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| CodecError::RegistryUnavailable(RegistryFailure::NoAnswer(e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    if status.is_server_error() {
        return Err(CodecError::RegistryUnavailable(RegistryFailure::Answered {
            status: status.as_u16(),
            body: text,
        }));
    }
    Err(CodecError::Refused {
        subject: subject.to_owned(),
        status: status.as_u16(),
        reason: text,
    })
}

/// How often a registry request that lost a race (`409`) is sent again.
const CONFLICT_ATTEMPTS: u32 = 5;

/// Runs `request` until it is not refused with `409 Conflict` by a concurrent writer, at most
/// [`CONFLICT_ATTEMPTS`] times, pausing a little longer each time. A conflict that persists
/// (a schema incompatible with the subject's versions is `409` too) is returned.
async fn settled<F, Fut>(mut request: F) -> Result<(), CodecError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), CodecError>>,
{
    let mut attempt = 1;
    loop {
        match request().await {
            Err(CodecError::Refused { status: 409, .. }) if attempt < CONFLICT_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(25 * u64::from(attempt))).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// The schema text of a record, by full name.
pub fn schema_of(record: &str) -> Option<&'static str> {
    SCHEMAS.iter().find(|(n, _)| *n == record).map(|(_, s)| *s)
}

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
    #[error("schema registry unavailable")]
    RegistryUnavailable(#[source] RegistryFailure),
    /// The bytes are not a valid event: a poison message, to be dead-lettered.
    #[error("invalid event: {reason}")]
    Invalid { reason: String },
    #[error("record {name} is not an event this version of Gallery knows")]
    UnknownRecord { name: String },
    /// The registry refused a schema or setting (e.g. a schema incompatible with the
    /// subject's earlier versions).
    #[error("the schema registry refused {subject} ({status}): {reason}")]
    Refused {
        subject: String,
        status: u16,
        reason: String,
    },
    #[error("could not set up the schema registry client")]
    Setup(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why the schema registry gave no usable answer (the source of
/// [`CodecError::RegistryUnavailable`]).
#[derive(Debug, thiserror::Error)]
pub enum RegistryFailure {
    /// The request had no answer: the connection failed or timed out.
    #[error("no answer")]
    NoAnswer(#[source] reqwest::Error),
    /// The registry answered with an error of its own (a server error).
    #[error("answered {status}: {body}")]
    Answered { status: u16, body: String },
    /// The registry client of the encoder or decoder failed in a way it calls retriable.
    #[error("the registry client failed")]
    Client(#[source] SRCError),
}

impl CodecError {
    /// True when retrying the same bytes later may succeed (the registry was unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, CodecError::RegistryUnavailable(_))
    }

    fn from_registry(e: SRCError) -> Self {
        if e.retriable {
            CodecError::RegistryUnavailable(RegistryFailure::Client(e))
        } else {
            CodecError::Invalid {
                reason: e.to_string(),
            }
        }
    }
}

/// The first byte of a Confluent-framed message.
const MAGIC_BYTE: u8 = 0;
/// Room for the frame and a typical event, so that encoding one allocates once.
const FRAME_CAPACITY: usize = 256;

/// The most bytes the Avro reader allocates for one value of a message (a string's or bytes'
/// length, an array's items): a Kafka message is at most 1 MiB by default, and no field of an
/// event comes near it. Avro's own bound is 512 MiB, so a message of a few bytes announcing a
/// 400 MB string made a consumer allocate 400 MB before it noticed the bytes were missing (a
/// poison message could stop the process where memory is not overcommitted).
pub const MAX_DECODE_ALLOCATION: usize = 1 << 20;

/// Bounds what the Avro reader allocates to [`MAX_DECODE_ALLOCATION`]. The bound is the
/// process's and the first setting wins: every decoding path here sets it before it reads.
fn bound_allocations() {
    apache_avro::util::max_allocation_bytes(MAX_DECODE_ALLOCATION);
}

/// The registry's id of each record's schema, per topic, learnt on first use.
#[derive(Debug, Default)]
struct SchemaIds(RwLock<HashMap<String, HashMap<&'static str, u32>>>);

impl SchemaIds {
    fn get(&self, topic: &str, record: &str) -> Option<u32> {
        let ids = self.0.read().unwrap_or_else(PoisonError::into_inner);
        ids.get(topic)?.get(record).copied()
    }

    fn insert(&self, topic: &str, record: &'static str, id: u32) {
        let mut ids = self.0.write().unwrap_or_else(PoisonError::into_inner);
        ids.entry(topic.to_owned()).or_default().insert(record, id);
    }
}

/// Encodes and decodes [`Event`]s, registering and fetching schemas through the registry.
/// Cheap to clone; the schema caches are shared.
#[derive(Debug, Clone)]
pub struct EventCodec {
    encoder: Arc<AvroEncoder>,
    decoder: Arc<AvroDecoder>,
    ids: Arc<SchemaIds>,
    registry: RegistryConfig,
}

impl EventCodec {
    pub fn new(config: &RegistryConfig) -> Result<Self, CodecError> {
        let settings = || {
            SrSettings::new_builder(config.url.trim_end_matches('/').to_owned())
                .no_proxy()
                .set_timeout(config.timeout)
                .build()
                .map_err(|e| CodecError::Setup(Box::new(e)))
        };
        Ok(Self {
            encoder: Arc::new(AvroEncoder::new(settings()?)),
            decoder: Arc::new(AvroDecoder::new(settings()?)),
            ids: Arc::default(),
            registry: config.clone(),
        })
    }

    /// Registers every event schema under its subject (`<topic>-<record>`) and sets the
    /// subject's compatibility to BACKWARD, so the registry itself refuses a schema that cannot
    /// read the events already written. A writer calls it at start: an incompatible schema
    /// stops the process instead of failing its first command.
    ///
    /// Idempotent, also when several roles start at the same moment on a fresh deployment:
    /// the registry answers a request that lost a race to create the same subject or rule with
    /// `409`, and such a request is sent again (it then finds what the winner created).
    pub async fn register_all(&self, topics: &Topics) -> Result<(), CodecError> {
        let client = reqwest::Client::builder()
            .timeout(self.registry.timeout)
            .no_proxy()
            .build()
            .map_err(|e| CodecError::Setup(Box::new(e)))?;
        let base = self.registry.url.trim_end_matches('/');
        for (record, schema) in SCHEMAS {
            let topic = topics.of(stream_of(record).ok_or_else(|| CodecError::UnknownRecord {
                name: (*record).to_owned(),
            })?);
            let subject = format!("{topic}-{record}");
            let body = serde_json::json!({ "schema": schema });
            let versions = format!("{base}/subjects/{subject}/versions");
            settled(|| call(client.post(&versions), &subject, &body)).await?;
            let config = serde_json::json!({ "compatibility": "BACKWARD" });
            let rule = format!("{base}/config/{subject}");
            settled(|| call(client.put(&rule), &subject, &config)).await?;
        }
        Ok(())
    }

    /// Frames `event` for `topic`, registering its schema on first use.
    pub async fn encode(&self, topic: &str, event: &Event) -> Result<Vec<u8>, CodecError> {
        let record = event.record_name();
        let id = match self.ids.get(topic, record) {
            Some(id) => id,
            None => self.schema_id(topic, record).await?,
        };
        frame(id, event)
    }

    /// Registers `record`'s schema under its subject for `topic` (the registry answers the id
    /// of an identical schema it already holds) and remembers the id.
    async fn schema_id(&self, topic: &str, record: &'static str) -> Result<u32, CodecError> {
        let schema = schema_of(record).ok_or_else(|| CodecError::UnknownRecord {
            name: record.to_owned(),
        })?;
        let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
            topic.to_owned(),
            SuppliedSchema::new(Some(record.to_owned()), SchemaType::Avro, schema.to_owned()),
        );
        let subject = strategy.get_subject().map_err(CodecError::from_registry)?;
        match self.encoder.get_schema_and_id(&subject, strategy).await {
            Ok(registered) => {
                self.ids.insert(topic, record, registered.id);
                Ok(registered.id)
            }
            Err(e) => {
                // A registry outage must not stick: forget cached failures so the next call
                // retries.
                self.encoder.remove_errors_from_cache();
                Err(CodecError::from_registry(e))
            }
        }
    }

    /// Decodes one framed message. A transient registry error is
    /// [`CodecError::RegistryUnavailable`]; anything else means the bytes are not a valid event.
    pub async fn decode(&self, bytes: Option<&[u8]>) -> Result<Event, CodecError> {
        let Some(bytes) = bytes else {
            return Err(CodecError::Invalid {
                reason: "message has no value".to_owned(),
            });
        };
        bound_allocations();
        let decoded = self
            .decoder
            .decode(Some(bytes))
            .await
            .map_err(CodecError::from_registry)?;
        let name = decoded
            .name
            .map(|n| n.fullname(None).to_string())
            .unwrap_or_default();
        from_avro(&name, &decoded.value)
    }
}

/// Parsed schemas, by full name (parsed once).
static PARSED: LazyLock<HashMap<&'static str, Result<apache_avro::Schema, String>>> =
    LazyLock::new(|| {
        SCHEMAS
            .iter()
            .map(|(name, text)| {
                (
                    *name,
                    apache_avro::Schema::parse_str(text).map_err(|e| e.to_string()),
                )
            })
            .collect()
    });

/// Each record's schema with its named types resolved, for the typed writer.
static RESOLVED: LazyLock<HashMap<&'static str, Result<ResolvedSchema<'static>, String>>> =
    LazyLock::new(|| {
        PARSED
            .iter()
            .filter_map(|(name, parsed)| parsed.as_ref().ok().map(|schema| (*name, schema)))
            .map(|(name, schema)| {
                (
                    name,
                    ResolvedSchema::try_from(schema).map_err(|e| e.to_string()),
                )
            })
            .collect()
    });

/// A record's schema and its resolved names, by full name.
fn parsed_and_resolved(
    name: &str,
) -> Result<
    (
        &'static apache_avro::Schema,
        &'static ResolvedSchema<'static>,
    ),
    CodecError,
> {
    match (PARSED.get(name), RESOLVED.get(name)) {
        (Some(Ok(schema)), Some(Ok(resolved))) => Ok((schema, resolved)),
        (Some(Err(e)), _) | (_, Some(Err(e))) => Err(CodecError::Invalid {
            reason: format!("{name}: schema does not parse: {e}"),
        }),
        _ => Err(CodecError::UnknownRecord {
            name: name.to_owned(),
        }),
    }
}

/// The schema id and the Avro body of a Confluent-framed message: the magic byte `0`, the id
/// (4 bytes, big endian), then the body. What the registry's decoder reads first.
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    match bytes {
        [MAGIC_BYTE, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        _ => Err(CodecError::Invalid {
            reason: "not a Confluent-framed message (magic byte 0, then a 4-byte schema id)"
                .to_owned(),
        }),
    }
}

/// Decodes the Avro body of a `record` written with this version's schema of it (the one
/// [`EventCodec::register_all`] registers): what [`EventCodec::decode`] does once the registry
/// has named the writer's schema, with the same reader, without asking the registry.
pub fn decode_body(record: &str, body: &[u8]) -> Result<Event, CodecError> {
    let (schema, resolved) = parsed_and_resolved(record)?;
    bound_allocations();
    let value = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .resolved_writer_schemata(resolved.clone())
        .build()
        .and_then(|reader| reader.read_value(&mut std::io::Cursor::new(body)))
        .map_err(|e| CodecError::Invalid {
            reason: format!("{record}: {e}"),
        })?;
    from_avro(record, &value)
}

/// The Confluent frame of `event` under schema id `id`: the typed path of [`EventCodec::encode`].
pub fn frame(id: u32, event: &Event) -> Result<Vec<u8>, CodecError> {
    let name = event.record_name();
    let (schema, resolved) = parsed_and_resolved(name)?;
    let mut out = Vec::with_capacity(FRAME_CAPACITY);
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&id.to_be_bytes());
    with_record!(event, |e| apache_avro::write_avro_datum_ref(
        schema,
        resolved.get_names(),
        e,
        &mut out
    ))
    .map_err(|e| CodecError::Invalid {
        reason: format!("{name}: {e}"),
    })?;
    Ok(out)
}

/// The Avro value of an event's record, resolved against its schema (logical types such as
/// `uuid` and `timestamp-millis` in place).
pub fn to_avro(event: &Event) -> Result<Value, CodecError> {
    let name = event.record_name();
    let invalid = |reason: String| CodecError::Invalid {
        reason: format!("{name}: {reason}"),
    };
    let schema = match PARSED.get(name) {
        Some(Ok(schema)) => schema,
        Some(Err(e)) => return Err(invalid(format!("schema does not parse: {e}"))),
        None => {
            return Err(CodecError::UnknownRecord {
                name: name.to_owned(),
            });
        }
    };
    with_record!(event, |e| apache_avro::to_value(e))
        .and_then(|v| v.resolve(schema))
        .map_err(|e| invalid(e.to_string()))
}

/// An event from a decoded Avro record of the given full name. Ids and texts are checked as
/// a command would check them.
pub fn from_avro(name: &str, value: &Value) -> Result<Event, CodecError> {
    fn read<T: serde::de::DeserializeOwned>(name: &str, value: &Value) -> Result<T, CodecError> {
        apache_avro::from_value(value).map_err(|e| CodecError::Invalid {
            reason: format!("{name}: {e}"),
        })
    }
    Ok(match name {
        UserRegistered::RECORD => Event::UserRegistered(read(name, value)?),
        ExhibitionCreated::RECORD => Event::ExhibitionCreated(read(name, value)?),
        ArtworkAdded::RECORD => Event::ArtworkAdded(read(name, value)?),
        ArtworkRemoved::RECORD => Event::ArtworkRemoved(read(name, value)?),
        ExhibitionPublished::RECORD => Event::ExhibitionPublished(read(name, value)?),
        ExhibitionClosed::RECORD => Event::ExhibitionClosed(read(name, value)?),
        LikeSet::RECORD => Event::LikeSet(read(name, value)?),
        FavoriteSet::RECORD => Event::FavoriteSet(read(name, value)?),
        CommentPosted::RECORD => Event::CommentPosted(read(name, value)?),
        CommentDeleted::RECORD => Event::CommentDeleted(read(name, value)?),
        ArtworkViewed::RECORD => Event::ArtworkViewed(read(name, value)?),
        GenerationRequested::RECORD => Event::GenerationRequested(read(name, value)?),
        GenerationCancelled::RECORD => Event::GenerationCancelled(read(name, value)?),
        GenerationStarted::RECORD => Event::GenerationStarted(read(name, value)?),
        GenerationProgressed::RECORD => Event::GenerationProgressed(read(name, value)?),
        GenerationCompleted::RECORD => Event::GenerationCompleted(read(name, value)?),
        GenerationFailed::RECORD => Event::GenerationFailed(read(name, value)?),
        GenerationCancelConfirmed::RECORD => Event::GenerationCancelConfirmed(read(name, value)?),
        _ => {
            return Err(CodecError::UnknownRecord {
                name: name.to_owned(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_registry_is_transient_and_keeps_the_transport_error() {
        // Nothing listens on the discard port: the connection is refused at once.
        let config = RegistryConfig {
            url: "http://127.0.0.1:9".into(),
            timeout: Duration::from_secs(5),
        };
        let codec = EventCodec::new(&config).unwrap_or_else(|e| unreachable!("{e}"));
        let Err(e) = codec.register_all(&Topics::new("t.")).await else {
            unreachable!("nothing answers")
        };
        assert!(e.is_transient(), "{e:?}");
        let failure =
            std::error::Error::source(&e).and_then(|s| s.downcast_ref::<RegistryFailure>());
        let Some(RegistryFailure::NoAnswer(cause)) = failure else {
            unreachable!("{e:?}")
        };
        assert!(cause.is_connect(), "{cause:?}");
    }

    /// Avro's zig-zag varint.
    fn long(n: i64) -> Vec<u8> {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    /// Found by the `avro_frame` fuzz target (its corpus keeps the input).
    #[test]
    fn a_length_beyond_the_bound_is_refused_before_it_is_allocated() {
        // A LikeSet whose event id announces a 300 MB string and holds 3 bytes of it.
        let mut body = long(300_000_000);
        body.extend_from_slice(b"abc");
        let refused = decode_body(LikeSet::RECORD, &body);
        let Err(CodecError::Invalid { reason }) = refused else {
            unreachable!("{refused:?}")
        };
        assert!(reason.contains("maximum allowed"), "{reason}");
        assert_eq!(
            apache_avro::util::max_allocation_bytes(usize::MAX),
            MAX_DECODE_ALLOCATION
        );
    }

    #[test]
    fn frames_are_the_magic_byte_and_a_big_endian_schema_id() {
        assert_eq!(unframe(&[0, 0, 0, 1, 2, 9]).ok(), Some((258, &[9_u8][..])));
        assert_eq!(unframe(&[0, 0, 0, 1, 2]).ok(), Some((258, &[][..])));
        for bad in [&[][..], &[0, 0, 0, 1], &[1, 0, 0, 1, 2, 9]] {
            assert!(unframe(bad).is_err(), "{bad:?}");
        }
    }
}
