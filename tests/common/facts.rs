//! Like and favorite facts produced straight to Kafka (an rdkafka producer and the event
//! codec, much faster than HTTP), their ground truth computed from the produced positions, and
//! the comparison of that truth with the read model's tables.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use gallery::Config;
use gallery_schemas::{ArtworkId, Event, EventCodec, FavoriteSet, LikeSet, UserId};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Like,
    Favorite,
}

/// "user set kind(artwork) = on".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub kind: Kind,
    pub artwork: String,
    pub user: String,
    pub on: bool,
}

/// A fact, its event id and where Kafka put it.
#[derive(Debug, Clone)]
pub struct Produced {
    pub fact: Fact,
    pub event_id: uuid::Uuid,
    pub partition: i32,
    pub offset: i64,
}

/// A fact encoded once, so it can be sent again byte for byte.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub fact: Fact,
    pub event_id: uuid::Uuid,
    pub bytes: Vec<u8>,
}

pub struct FactProducer {
    producer: FutureProducer,
    codec: EventCodec,
    pub topic: String,
}

impl FactProducer {
    pub fn new(config: &Config) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()
            .unwrap();
        Self {
            producer,
            codec: EventCodec::new(&config.registry()).unwrap(),
            topic: config.topics().interactions(),
        }
    }

    pub async fn encode(&self, fact: Fact) -> Encoded {
        let occurred_at = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        self.encode_as(fact, uuid::Uuid::now_v7(), occurred_at)
            .await
    }

    /// `fact` as the event `event_id` at `occurred_at` (ms): the same id again with another
    /// time is what a command re-sent after a crash may write.
    pub async fn encode_as(&self, fact: Fact, event_id: uuid::Uuid, occurred_at: i64) -> Encoded {
        let user_id = UserId::parse(&fact.user).unwrap();
        let artwork_id = ArtworkId::parse(&fact.artwork).unwrap();
        let event = match fact.kind {
            Kind::Like => Event::LikeSet(LikeSet {
                event_id,
                user_id,
                artwork_id,
                liked: fact.on,
                occurred_at,
            }),
            Kind::Favorite => Event::FavoriteSet(FavoriteSet {
                event_id,
                user_id,
                artwork_id,
                favorited: fact.on,
                occurred_at,
            }),
        };
        let bytes = self.codec.encode(&self.topic, &event).await.unwrap();
        Encoded {
            fact,
            event_id,
            bytes,
        }
    }

    /// Sends `encoded` (keyed by its artwork, as the command service does) and waits for the
    /// acknowledgement.
    pub async fn send(&self, encoded: &Encoded) -> Produced {
        let record = FutureRecord::to(&self.topic)
            .key(encoded.fact.artwork.as_str())
            .payload(encoded.bytes.as_slice());
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        Produced {
            fact: encoded.fact.clone(),
            event_id: encoded.event_id,
            partition: delivery.partition,
            offset: delivery.offset,
        }
    }

    /// Encodes and sends every fact, `parallel` at a time; returns them in send order.
    pub async fn send_all(&self, facts: Vec<Fact>, parallel: usize) -> Vec<Produced> {
        let mut out = Vec::with_capacity(facts.len());
        for chunk in facts.chunks(parallel.max(1)) {
            let mut encoded = Vec::with_capacity(chunk.len());
            for f in chunk {
                encoded.push(self.encode(f.clone()).await);
            }
            out.extend(futures::future::join_all(encoded.iter().map(|e| self.send(e))).await);
        }
        out
    }
}

/// A small deterministic generator, so a failure can be replayed from its seed.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn from_clock() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        eprintln!("seed {seed}");
        Lcg(seed)
    }

    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    /// A random like or favorite by one of `users` on one of `artworks`.
    pub fn fact(&mut self, users: u64, artworks: u64) -> Fact {
        Fact {
            kind: if self.next(2) == 0 {
                Kind::Like
            } else {
                Kind::Favorite
            },
            artwork: format!("art-{}", self.next(artworks)),
            user: format!("user-{}", self.next(users)),
            on: self.next(3) != 0,
        }
    }
}

/// The latest fact per (kind, artwork, user), by (partition, offset): all facts of an artwork
/// share a partition, so the offset orders them. An event sent again (the same event id) is
/// applied once, at its first offset: its copies change nothing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Truth {
    pub latest: BTreeMap<(Kind, String, String), bool>,
}

impl Truth {
    pub fn of(produced: &[Produced]) -> Self {
        let mut first: BTreeMap<uuid::Uuid, i64> = BTreeMap::new();
        for p in produced {
            let offset = first.entry(p.event_id).or_insert(p.offset);
            *offset = (*offset).min(p.offset);
        }
        let mut at: BTreeMap<(Kind, String, String), (i32, i64, bool)> = BTreeMap::new();
        for p in produced.iter().filter(|p| first[&p.event_id] == p.offset) {
            let key = (p.fact.kind, p.fact.artwork.clone(), p.fact.user.clone());
            let entry = at.entry(key).or_insert((p.partition, -1, false));
            assert_eq!(entry.0, p.partition, "one artwork, one partition");
            if p.offset > entry.1 {
                *entry = (p.partition, p.offset, p.fact.on);
            }
        }
        Truth {
            latest: at.into_iter().map(|(k, (_, _, on))| (k, on)).collect(),
        }
    }

    /// How many users' latest `kind` fact on `artwork` is on.
    pub fn count(&self, kind: Kind, artwork: &str) -> i64 {
        self.latest
            .iter()
            .filter(|((k, a, _), on)| *k == kind && a == artwork && **on)
            .count() as i64
    }

    pub fn artworks(&self) -> BTreeSet<String> {
        self.latest.keys().map(|(_, a, _)| a.clone()).collect()
    }

    /// Every user's set of artworks whose latest `kind` fact is on.
    pub fn lists(&self, kind: Kind) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for ((k, a, u), on) in &self.latest {
            if *k == kind && *on {
                out.entry(u.clone()).or_default().insert(a.clone());
            }
        }
        out
    }
}

/// Asserts that every count and every user's likes and favorites in the read model (the
/// tables of `schema`) equal `truth`.
pub async fn assert_tables_match(db: &tokio_postgres::Client, schema: &str, truth: &Truth) {
    let differences = table_differences(db, schema, truth).await;
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// Where the read model (the tables of `schema`) differs from `truth`: every like and
/// favorite count, and every user's likes and favorites, one line per difference.
pub async fn table_differences(
    db: &tokio_postgres::Client,
    schema: &str,
    truth: &Truth,
) -> Vec<String> {
    let mut differences = Vec::new();
    let rows = db
        .query(
            &format!("SELECT artwork_id, like_count, favorite_count FROM {schema}.artwork_stats"),
            &[],
        )
        .await
        .unwrap();
    let stats: BTreeMap<String, (i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    for artwork in truth.artworks() {
        let stored = stats.get(&artwork).copied().unwrap_or((0, 0));
        let expected = (
            truth.count(Kind::Like, &artwork),
            truth.count(Kind::Favorite, &artwork),
        );
        if stored != expected {
            differences.push(format!(
                "(likes, favorites) of {artwork}: stored {stored:?}, expected {expected:?}"
            ));
        }
    }
    for (kind, table, flag) in [
        (Kind::Like, "artwork_likes", "liked"),
        (Kind::Favorite, "artwork_favorites", "favorited"),
    ] {
        let rows = db
            .query(
                &format!("SELECT user_id, artwork_id FROM {schema}.{table} WHERE {flag}"),
                &[],
            )
            .await
            .unwrap();
        let mut lists: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in rows {
            lists.entry(r.get(0)).or_default().insert(r.get(1));
        }
        let expected = truth.lists(kind);
        let users: BTreeSet<&String> = lists.keys().chain(expected.keys()).collect();
        for user in users {
            let (stored, wanted) = (lists.get(user), expected.get(user));
            if stored != wanted {
                differences.push(format!(
                    "{table} of {user}: stored {stored:?}, expected {wanted:?}"
                ));
            }
        }
    }
    differences
}
