//! The watcher: many open `artworkStats` subscriptions over `graphql-transport-ws`, one per
//! WebSocket connection, held by one small single-threaded process (1 KiB read buffers, no
//! write buffering), every message checked. Connection `g` (counted over all watchers) goes to
//! server `g mod servers` from source address `127.0.0.(2 + g / per_source)` and watches the
//! artwork [`Layout::artwork`] gives it.
//!
//! It prints one JSON line (a [`Ready`]) once every connection got its first value (or failed,
//! or its patience ran out), then reads commands on its standard input: `report <like log>
//! <since>` answers one JSON line (a [`WatchReport`]): for every like of the log whose 202 came
//! at or after `since` (monotonic nanoseconds), the time until each of its artwork's watchers
//! first saw a count that includes it; `quit` (or the end of the input) ends it.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::latency::{self, Recorded, monotonic_ns};
use crate::load::artwork_name;

/// Who watches what, and over which addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Every `hot_every`-th connection watches artwork 0 (the hot one).
    pub hot_every: u64,
    /// The others are spread evenly over artworks `1..=artworks`.
    pub artworks: u64,
    /// Connections per source address (each address has its own ephemeral ports).
    pub per_source: u64,
}

impl Layout {
    /// The artwork connection `g` watches.
    pub fn artwork(&self, g: u64) -> u64 {
        let every = self.hot_every.max(1);
        if g.is_multiple_of(every) {
            return 0;
        }
        // The connections before `g` that are not hot: g + 1 - (g / every + 1).
        let ordinal = g - g / every - 1;
        1 + ordinal % self.artworks.max(1)
    }

    /// The source address of connection `g`.
    pub fn source(&self, g: u64) -> anyhow::Result<Ipv4Addr> {
        let last = u8::try_from(2 + g / self.per_source.max(1))
            .ok()
            .filter(|l| *l < 255)
            .context("more connections than 127.0.0.2 to 127.0.0.254 can hold")?;
        Ok(Ipv4Addr::new(127, 0, 0, last))
    }
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The query API instances (loopback addresses).
    #[arg(long, value_delimiter = ',', required = true)]
    servers: Vec<SocketAddr>,
    /// Global index of this process's first connection.
    #[arg(long)]
    first: u64,
    /// Connections of this process.
    #[arg(long)]
    connections: u64,
    #[arg(long)]
    hot_every: u64,
    #[arg(long)]
    artworks: u64,
    #[arg(long, default_value_t = 16_000)]
    per_source: u64,
    /// Connections opened per second.
    #[arg(long, default_value_t = 2_000.0)]
    open_rate: f64,
    /// Longest wait, in seconds, for every connection's first value.
    #[arg(long, default_value_t = 180.0)]
    patience: f64,
}

/// Printed once every connection got its first value (or failed).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ready {
    pub ready: u64,
    pub failed: u64,
    pub first_failure: Option<String>,
}

/// What the watchers saw of the likes of one report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatchReport {
    /// Latencies (202 to the count seen) on the hot artwork, and on the others.
    pub hot: Recorded,
    pub spread: Recorded,
    /// (watcher, like) pairs never seen.
    pub missed: u64,
    /// Messages received since the previous report.
    pub messages: u64,
    pub failures: BTreeMap<String, u64>,
    pub first_failure: Option<String>,
}

/// One like as the log holds it: artwork, the count it makes, its 202's monotonic time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Like {
    pub artwork: u64,
    pub count: i64,
    pub at_ns: u64,
}

impl Like {
    pub fn line(&self) -> String {
        format!("{} {} {}\n", self.artwork, self.count, self.at_ns)
    }

    fn parse(line: &str) -> Option<Like> {
        let mut words = line.split_whitespace();
        let like = Like {
            artwork: words.next()?.parse().ok()?,
            count: words.next()?.parse().ok()?,
            at_ns: words.next()?.parse().ok()?,
        };
        words.next().is_none().then_some(like)
    }
}

/// What one connection saw since the last report.
#[derive(Debug, Default)]
struct Slot {
    artwork: u64,
    /// The highest count seen (`None` before the first value).
    last: Option<i64>,
    /// Each count seen for the first time, with when.
    seen: Vec<(i64, u64)>,
}

#[derive(Debug, Default)]
struct Failures {
    counts: BTreeMap<String, u64>,
    first: Option<String>,
}

impl Failures {
    fn add(&mut self, kind: &str, sample: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(sample());
        }
        *self.counts.entry(kind.to_owned()).or_default() += 1;
    }
}

struct Shared {
    slots: Vec<Mutex<Slot>>,
    failures: Mutex<Failures>,
    ready: AtomicU64,
    broken: AtomicU64,
    messages: AtomicU64,
}

impl Shared {
    fn fail(&self, kind: &str, sample: impl FnOnce() -> String) {
        if let Ok(mut f) = self.failures.lock() {
            f.add(kind, sample);
        }
    }
}

/// A server's message, as far as a watcher reads it.
#[derive(Debug, PartialEq, Eq)]
enum Said {
    Ack,
    Ping,
    /// The subscription's next count.
    Count(i64),
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: Option<&'a str>,
    payload: Option<Payload>,
}

#[derive(Deserialize)]
struct Payload {
    data: Option<Data>,
    errors: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    artwork_stats: Option<Likes>,
}

#[derive(Deserialize)]
struct Likes {
    likes: i64,
}

/// Reads one message of the subscription `id`, whose highest count so far is `last`: what it
/// says, or what is wrong with it (a short, stable description).
fn judge(text: &str, id: &str, last: Option<i64>) -> Result<Said, &'static str> {
    let message: Incoming<'_> = serde_json::from_str(text).map_err(|_| "not a protocol message")?;
    match message.kind {
        "connection_ack" => return Ok(Said::Ack),
        "ping" => return Ok(Said::Ping),
        "next" => {}
        "complete" => return Err("subscription completed"),
        "error" => return Err("subscription error"),
        _ => return Err("unexpected message type"),
    }
    if message.id != Some(id) {
        return Err("another subscription's id");
    }
    let payload = message.payload.ok_or("next without payload")?;
    if payload.errors.is_some() {
        return Err("errors in next");
    }
    let likes = payload
        .data
        .and_then(|d| d.artwork_stats)
        .ok_or("next without artworkStats")?
        .likes;
    if likes < 0 {
        return Err("negative count");
    }
    if last.is_some_and(|l| likes < l) {
        return Err("count went down");
    }
    Ok(Said::Count(likes))
}

fn subscribe_message(id: &str) -> String {
    serde_json::json!({
        "id": id,
        "type": "subscribe",
        "payload": {
            "query": "subscription($id: ID!) { artworkStats(id: $id) { likes } }",
            "variables": {"id": id},
        },
    })
    .to_string()
}

async fn watch_one(
    shared: Arc<Shared>,
    index: usize,
    server: SocketAddr,
    source: Ipv4Addr,
) -> anyhow::Result<()> {
    let artwork = shared.slots[index]
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .artwork;
    let id = artwork_name(artwork);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.into(), 0))?;
    let stream = socket.connect(server).await.context("connect")?;
    stream.set_nodelay(true)?;
    let mut request = format!("ws://{server}/graphql/ws").into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .context("WebSocket handshake")?;
    ws.send(Message::text(r#"{"type":"connection_init","payload":{}}"#))
        .await?;
    let mut subscribed = false;
    while let Some(message) = ws.next().await {
        let text = match message.context("connection error")? {
            Message::Text(text) => text,
            Message::Close(frame) => anyhow::bail!("closed by the server: {frame:?}"),
            _ => continue,
        };
        let at = monotonic_ns();
        shared.messages.fetch_add(1, Ordering::Relaxed);
        // The slot is locked only here, never across an await.
        let said = {
            let mut slot = shared.slots[index]
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            let said = judge(&text, &id, slot.last);
            if let Ok(Said::Count(count)) = said {
                if slot.last.is_none() {
                    shared.ready.fetch_add(1, Ordering::Relaxed);
                }
                if slot.last != Some(count) {
                    slot.seen.push((count, at));
                }
                slot.last = Some(count);
            }
            said.map_err(|kind| (kind, slot.last.is_none()))
        };
        match said {
            Ok(Said::Ack) if !subscribed => {
                subscribed = true;
                ws.send(Message::text(subscribe_message(&id))).await?;
            }
            Ok(Said::Ping) => ws.send(Message::text(r#"{"type":"pong"}"#)).await?,
            Ok(Said::Count(_)) => {}
            Ok(Said::Ack) => shared.fail("a second connection_ack", || text.to_string()),
            Err((kind, first)) => {
                shared.fail(kind, || text.to_string());
                if first || matches!(kind, "subscription completed" | "subscription error") {
                    anyhow::bail!("{kind}");
                }
            }
        }
    }
    anyhow::bail!("closed by the server")
}

/// The latencies of `likes` (since `since`) as `slots` saw them, and the pairs never seen.
fn resolve(
    likes: &[Like],
    since: u64,
    slots: &[Mutex<Slot>],
    failures: &mut Failures,
) -> anyhow::Result<(Recorded, Recorded, u64)> {
    let mut by_artwork: HashMap<u64, Vec<Like>> = HashMap::new();
    let mut highest: HashMap<u64, i64> = HashMap::new();
    for like in likes {
        let top = highest.entry(like.artwork).or_insert(0);
        *top = (*top).max(like.count);
        if like.at_ns >= since {
            by_artwork.entry(like.artwork).or_default().push(*like);
        }
    }
    for list in by_artwork.values_mut() {
        list.sort_by_key(|l| l.count);
    }
    let (mut hot, mut spread) = (latency::histogram()?, latency::histogram()?);
    let mut missed = 0;
    for slot in slots {
        let mut slot = slot.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let seen = std::mem::take(&mut slot.seen);
        if slot.last.is_none() {
            continue;
        }
        let top = highest.get(&slot.artwork).copied().unwrap_or(0);
        if let Some((count, _)) = seen.iter().find(|(count, _)| *count > top) {
            failures.add("a count above the likes sent", || {
                format!(
                    "{} on {} after {top} likes",
                    count,
                    artwork_name(slot.artwork)
                )
            });
        }
        let histogram = if slot.artwork == 0 {
            &mut hot
        } else {
            &mut spread
        };
        let mut next = seen.iter().peekable();
        for like in by_artwork.get(&slot.artwork).into_iter().flatten() {
            while next.peek().is_some_and(|(count, _)| *count < like.count) {
                next.next();
            }
            match next.peek() {
                Some((_, at)) => latency::record(
                    histogram,
                    Duration::from_nanos(at.saturating_sub(like.at_ns)),
                ),
                None => missed += 1,
            }
        }
    }
    Ok((Recorded::of(&hot), Recorded::of(&spread), missed))
}

fn report(shared: &Shared, log: &str, since: u64) -> anyhow::Result<WatchReport> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {log}"))?;
    let likes: Vec<Like> = text
        .lines()
        .map(|l| Like::parse(l).with_context(|| format!("a bad like line: {l}")))
        .collect::<anyhow::Result<_>>()?;
    let mut failures = Failures::default();
    let (hot, spread, missed) = resolve(&likes, since, &shared.slots, &mut failures)?;
    if let Ok(mut f) = shared.failures.lock() {
        let f = std::mem::take(&mut *f);
        for (kind, n) in f.counts {
            *failures.counts.entry(kind).or_default() += n;
        }
        failures.first = f.first.or(failures.first);
    }
    Ok(WatchReport {
        hot,
        spread,
        missed,
        messages: shared.messages.swap(0, Ordering::Relaxed),
        failures: failures.counts,
        first_failure: failures.first,
    })
}

pub fn run(args: &WatchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.servers.iter().all(|s| s.ip().is_loopback()),
        "the watcher connects only to loopback addresses"
    );
    anyhow::ensure!(
        args.open_rate > 0.0 && args.patience > 0.0,
        "--open-rate and --patience must be positive"
    );
    let layout = Layout {
        hot_every: args.hot_every,
        artworks: args.artworks,
        per_source: args.per_source,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shared = Arc::new(Shared {
            slots: (0..args.connections)
                .map(|i| {
                    Mutex::new(Slot {
                        artwork: layout.artwork(args.first + i),
                        ..Slot::default()
                    })
                })
                .collect(),
            failures: Mutex::default(),
            ready: AtomicU64::new(0),
            broken: AtomicU64::new(0),
            messages: AtomicU64::new(0),
        });
        let every = Duration::from_secs_f64(1.0 / args.open_rate);
        let start = tokio::time::Instant::now();
        let deadline = start + Duration::from_secs_f64(args.patience);
        for i in 0..args.connections {
            let g = args.first + i;
            let server = args.servers[usize::try_from(g % args.servers.len() as u64)?];
            let source = layout.source(g)?;
            tokio::time::sleep_until(start + every.mul_f64(i as f64)).await;
            let shared = shared.clone();
            tokio::spawn(async move {
                let index = usize::try_from(i).unwrap_or(usize::MAX);
                if let Err(e) = watch_one(shared.clone(), index, server, source).await {
                    shared.broken.fetch_add(1, Ordering::Relaxed);
                    shared.fail("connection ended", || format!("{e:#}"));
                }
            });
        }
        loop {
            let (ready, broken) = (
                shared.ready.load(Ordering::Relaxed),
                shared.broken.load(Ordering::Relaxed),
            );
            if ready + broken >= args.connections || tokio::time::Instant::now() >= deadline {
                let first_failure = shared.failures.lock().ok().and_then(|f| f.first.clone());
                let ready = Ready {
                    ready,
                    failed: args.connections - ready.min(args.connections),
                    first_failure,
                };
                println!("{}", serde_json::to_string(&ready)?);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["report", log, since] => {
                    let report = report(&shared, log, since.parse()?)?;
                    println!("{}", serde_json::to_string(&report)?);
                }
                ["quit"] => break,
                _ => anyhow::bail!("unknown command: {line}"),
            }
        }
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifth_watch_the_hot_artwork_and_the_rest_spread_evenly() {
        let layout = Layout {
            hot_every: 5,
            artworks: 1000,
            per_source: 16_000,
        };
        let mut per: HashMap<u64, u64> = HashMap::new();
        for g in 0..100_000 {
            *per.entry(layout.artwork(g)).or_default() += 1;
        }
        assert_eq!(per[&0], 20_000);
        assert_eq!(per.len(), 1001);
        assert!(per.iter().filter(|(a, _)| **a != 0).all(|(_, n)| *n == 80));
        assert_eq!(layout.source(0).unwrap(), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(layout.source(99_999).unwrap(), Ipv4Addr::new(127, 0, 0, 8));
        assert!(layout.source(16_000 * 253).is_err());
    }

    #[test]
    fn messages_are_checked_for_their_subscription_and_count() {
        let next = |id: &str, likes: i64| {
            format!(
                r#"{{"type":"next","id":"{id}","payload":{{"data":{{"artworkStats":{{"likes":{likes}}}}}}}}}"#
            )
        };
        assert_eq!(
            judge(&next("art-1", 3), "art-1", Some(2)),
            Ok(Said::Count(3))
        );
        assert_eq!(judge(&next("art-1", 3), "art-1", None), Ok(Said::Count(3)));
        assert_eq!(
            judge(&next("art-2", 3), "art-1", None),
            Err("another subscription's id")
        );
        assert_eq!(
            judge(&next("art-1", 1), "art-1", Some(2)),
            Err("count went down")
        );
        let error =
            r#"{"type":"next","id":"art-1","payload":{"data":null,"errors":[{"message":"x"}]}}"#;
        assert_eq!(judge(error, "art-1", None), Err("errors in next"));
        assert_eq!(
            judge(r#"{"type":"connection_ack"}"#, "art-1", None),
            Ok(Said::Ack)
        );
        assert_eq!(
            judge(r#"{"type":"complete","id":"art-1"}"#, "art-1", None),
            Err("subscription completed")
        );
        assert_eq!(
            judge("nonsense", "art-1", None),
            Err("not a protocol message")
        );
    }

    fn slot(artwork: u64, seen: &[(i64, u64)]) -> Mutex<Slot> {
        Mutex::new(Slot {
            artwork,
            last: seen.last().map(|s| s.0).or(Some(0)),
            seen: seen.to_vec(),
        })
    }

    #[test]
    fn each_like_is_timed_to_the_first_count_that_includes_it() {
        let ms = 1_000_000;
        let likes = [
            Like {
                artwork: 0,
                count: 1,
                at_ns: 100 * ms,
            },
            Like {
                artwork: 0,
                count: 2,
                at_ns: 110 * ms,
            },
            Like {
                artwork: 0,
                count: 3,
                at_ns: 120 * ms,
            },
            Like {
                artwork: 1,
                count: 1,
                at_ns: 100 * ms,
            },
            // Before the report's start: its count bounds, it is not timed.
            Like {
                artwork: 2,
                count: 1,
                at_ns: 10 * ms,
            },
        ];
        let slots = [
            // Saw 2 (both first likes) at 130 ms, 3 at 150 ms.
            slot(0, &[(2, 130 * ms), (3, 150 * ms)]),
            // Saw only the first like.
            slot(0, &[(1, 105 * ms)]),
            slot(1, &[(1, 101 * ms)]),
            // A count no like made.
            slot(2, &[(2, 101 * ms)]),
        ];
        let mut failures = Failures::default();
        let (hot, spread, missed) = resolve(&likes, 50 * ms, &slots, &mut failures).unwrap();
        let hot = hot.histogram().unwrap();
        assert_eq!(hot.len(), 4);
        assert_eq!(missed, 2);
        // 30, 20, 30 ms for the first watcher; 5 ms for the second.
        assert!(hot.equivalent(hot.max(), 30_000));
        assert!(hot.equivalent(hot.min(), 5_000));
        assert_eq!(spread.histogram().unwrap().len(), 1);
        assert_eq!(
            failures.counts.get("a count above the likes sent"),
            Some(&1)
        );
        // Reported receipts are forgotten.
        assert!(slots.iter().all(|s| s.lock().unwrap().seen.is_empty()));
        assert_eq!(Like::parse(&likes[1].line()), Some(likes[1]));
        assert_eq!(Like::parse("1 2"), None);
    }
}
