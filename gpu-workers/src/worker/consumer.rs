//! The consumer side: a group consumer (read committed, no auto commit, static membership)
//! polled on its own thread, whose rebalance callback catches up on every partition it is
//! given before handing it over, and passes messages and assignment changes to the session.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gallery_infra::kafka;
use gallery_schemas::{Event, EventCodec};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio::runtime::Handle;
use tokio::sync::mpsc::UnboundedSender;

use super::error::WorkerError;
use super::events::terminal_of;
use super::history::History;
use super::scanner::Scanner;

/// How long a blocking Kafka call in the rebalance callback may take (fetching committed
/// offsets waits for the previous owner's open transaction to end).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a catch-up scan of one partition may take.
const SCAN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a revocation waits for the session to drop the partitions' jobs.
const REVOKE_WAIT: Duration = Duration::from_secs(10);
/// Messages waiting for the session beyond which the poller stops fetching for a moment.
const MAX_WAITING: usize = 10_000;

/// A message of the generation topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// A partition the worker now owns, caught up.
#[derive(Debug)]
pub struct Assigned {
    pub partition: i32,
    /// The committed offset (the previous owner's low-water mark), where reading starts.
    pub committed: i64,
    /// Terminals and request ids from the scan.
    pub history: History,
}

/// What the poller tells the session, in order.
#[derive(Debug)]
pub enum Inbound {
    Assigned(Vec<Assigned>),
    /// Drop everything about these partitions, then answer on `done`.
    Revoked {
        partitions: Vec<i32>,
        done: SyncSender<()>,
    },
    Message(Record),
    /// The session cannot go on.
    Failed(WorkerError),
}

/// The consumer's settings.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// Static membership: a restarted worker takes its partitions back at once.
    pub instance_id: String,
    /// Messages scanned before the committed offset, to recognise duplicate requests.
    pub dedup_window: i64,
}

/// The group consumer's context: lag from the statistics, catch-up in the rebalance.
pub struct WorkerContext {
    settings: ConsumerSettings,
    inbound: UnboundedSender<Inbound>,
    lag: Arc<AtomicU64>,
    scanner: Scanner,
}

impl std::fmt::Debug for WorkerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerContext")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: Statistics) {
        // What is not read yet, summed over the partitions this worker reads.
        let lag: u64 = kafka::progress(&statistics)
            .filter(|p| p.assigned && p.topic == self.settings.topic)
            .map(|p| p.progress.lag())
            .sum();
        self.lag.store(lag, Ordering::Relaxed);
    }
}

impl ConsumerContext for WorkerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match kafka::rebalance(self, consumer, err, tpl) {
            Ok(()) => {}
            Err((kafka::Step::Assign, e)) => {
                let _ = self.inbound.send(Inbound::Failed(WorkerError::Kafka {
                    context: "assign partitions",
                    source: e,
                }));
            }
            Err((kafka::Step::Unassign, e)) => {
                tracing::warn!(error = %e, "unassign failed");
            }
        }
    }
}

impl kafka::Member for WorkerContext {
    fn assigned(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let assigned = match self.catch_up(consumer, tpl) {
            Ok(assigned) => assigned,
            Err(e) => {
                tracing::error!(error = %e, "catch-up failed; the session restarts");
                let _ = self.inbound.send(Inbound::Failed(e));
                Vec::new()
            }
        };
        for a in &assigned {
            let _ = tpl.set_partition_offset(
                &self.settings.topic,
                a.partition,
                Offset::Offset(a.committed),
            );
        }
        if !assigned.is_empty() {
            let _ = self.inbound.send(Inbound::Assigned(assigned));
        }
    }

    fn revoked(&self, _: &BaseConsumer<Self>, revoked: kafka::Revoked<'_>) {
        let partitions: Vec<i32> = revoked
            .partitions()
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        let (done, acked) = sync_channel(1);
        if self
            .inbound
            .send(Inbound::Revoked {
                partitions: partitions.clone(),
                done,
            })
            .is_ok()
            && acked.recv_timeout(REVOKE_WAIT).is_err()
        {
            tracing::warn!(
                ?partitions,
                "the session did not confirm the revocation in time"
            );
        }
    }
}

impl WorkerContext {
    /// For each newly assigned partition: the committed offset, then a scan from a window
    /// before it up to the last stable offset, recording terminals and request ids.
    fn catch_up(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> Result<Vec<Assigned>, WorkerError> {
        let topic = &self.settings.topic;
        let mut wanted = TopicPartitionList::new();
        for e in tpl.elements() {
            wanted.add_partition(e.topic(), e.partition());
        }
        // With read_committed this waits while a transaction that carries offsets of these
        // partitions is open (KIP-447), so every terminal the previous owner committed is
        // below the last stable offset read next.
        let committed = consumer
            .committed_offsets(wanted, CALL_TIMEOUT)
            .map_err(WorkerError::kafka("fetch committed offsets"))?;
        let mut assigned = Vec::new();
        for e in committed.elements() {
            if e.topic() != topic {
                continue;
            }
            let partition = e.partition();
            // The scanner reads committed data only, so "high" is the last stable offset.
            let (low, stable) = self.scanner.watermarks(partition)?;
            let committed = match e.offset() {
                Offset::Offset(o) if o >= low => o,
                _ => low,
            };
            let start = committed
                .saturating_sub(self.settings.dedup_window)
                .max(low);
            let started = Instant::now();
            let mut history = History::new();
            self.scanner
                .scan(partition, start, stable, SCAN_TIMEOUT, |offset, event| {
                    observe(&mut history, event, offset);
                })?;
            tracing::info!(
                partition,
                committed,
                scanned_from = start,
                stable,
                remembered = history.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "partition assigned and caught up"
            );
            assigned.push(Assigned {
                partition,
                committed,
                history,
            });
        }
        Ok(assigned)
    }
}

/// What the scan keeps of one event.
fn observe(history: &mut History, event: &Event, offset: i64) {
    if let Event::GenerationRequested(r) = event {
        history.saw_request(r.request_id, offset);
    } else if let Some(request) = terminal_of(event) {
        history.saw_terminal(request, offset);
    }
}

/// The group consumer and the thread that polls it.
pub struct Poller {
    pub consumer: Arc<BaseConsumer<WorkerContext>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Messages handed to the session and not yet taken (the poller pauses above a bound).
    pub waiting: Arc<AtomicUsize>,
    /// Messages not read yet on the worker's partitions (from the statistics).
    pub lag: Arc<AtomicU64>,
    /// Reads ahead of the session while it is paused (see [`super::lookahead`]).
    pub lookahead: Arc<Scanner>,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("waiting", &self.waiting)
            .field("lag", &self.lag)
            .finish_non_exhaustive()
    }
}

impl Poller {
    /// Creates the consumer, subscribes it and starts polling.
    pub fn start(
        settings: ConsumerSettings,
        codec: EventCodec,
        inbound: UnboundedSender<Inbound>,
    ) -> Result<Self, WorkerError> {
        let scanner = Scanner::new(
            &settings.brokers,
            &format!("{}.catch-up", settings.group),
            &settings.topic,
            codec.clone(),
            Handle::current(),
        )?;
        let lookahead = Arc::new(Scanner::new(
            &settings.brokers,
            &format!("{}.lookahead", settings.group),
            &settings.topic,
            codec,
            Handle::current(),
        )?);
        let waiting = Arc::new(AtomicUsize::new(0));
        let lag = Arc::new(AtomicU64::new(0));
        let context = WorkerContext {
            settings: settings.clone(),
            inbound: inbound.clone(),
            lag: lag.clone(),
            scanner,
        };
        let consumer: BaseConsumer<WorkerContext> = BaseConsumer::from_config_and_context(
            ClientConfig::new()
                .set("bootstrap.servers", &settings.brokers)
                .set("group.id", &settings.group)
                .set("group.instance.id", &settings.instance_id)
                .set("isolation.level", "read_committed")
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("partition.assignment.strategy", "cooperative-sticky")
                .set("statistics.interval.ms", "1000"),
            context,
        )
        .map_err(WorkerError::kafka("create the consumer"))?;
        consumer
            .subscribe(&[settings.topic.as_str()])
            .map_err(WorkerError::kafka("subscribe"))?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (consumer, stop, waiting) = (consumer.clone(), stop.clone(), waiting.clone());
            std::thread::Builder::new()
                .name("painter-consumer".into())
                .spawn(move || poll_loop(&consumer, &stop, &waiting, &inbound))
                .map_err(WorkerError::Threads)?
        };
        Ok(Self {
            consumer,
            stop,
            thread: Some(thread),
            waiting,
            lag,
            lookahead,
        })
    }

    /// Stops polling and closes the consumer (off the async runtime: closing blocks).
    pub async fn shut_down(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take();
        let consumer = self.consumer.clone();
        drop(self);
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(t) = thread {
                let _ = t.join();
            }
            drop(consumer);
        })
        .await;
    }

    /// Pauses or resumes every assigned partition.
    pub fn set_paused(&self, paused: bool) {
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let result = if paused {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, paused, "pause/resume failed");
        }
    }
}

fn poll_loop(
    consumer: &BaseConsumer<WorkerContext>,
    stop: &AtomicBool,
    waiting: &AtomicUsize,
    inbound: &UnboundedSender<Inbound>,
) {
    let mut last_error: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if waiting.load(Ordering::Relaxed) > MAX_WAITING {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                waiting.fetch_add(1, Ordering::Relaxed);
                let record = Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                };
                if inbound.send(Inbound::Message(record)).is_err() {
                    return;
                }
            }
            Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                let _ = inbound.send(Inbound::Failed(WorkerError::Kafka {
                    context: "consume (fatal)",
                    source: KafkaError::MessageConsumptionFatal(code),
                }));
                return;
            }
            // Transient (a broker away): librdkafka retries; say so now and then.
            Some(Err(e)) if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) => {
                tracing::warn!(error = %e, "consumer error");
                last_error = Some(Instant::now());
            }
            Some(Err(_)) => {}
        }
    }
}
