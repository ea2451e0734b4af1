//! One session of a worker: from a fresh producer and consumer to shutdown or a failure.
//! A single task owns all state: the partitions (ledger and history), the held jobs, the
//! fair queue, the events waiting for a transaction, the transaction in flight. Messages,
//! job reports and transaction results come in one at a time, so there is no lock and no
//! interleaving to reason about.
//!
//! This module owns the state, the loop that wakes on each of those, and what comes in:
//! assignments and revocations, requests (held with their [`plan`](super::plan), or refused),
//! cancels and terminals read back. The rest of the session's work is split by what it owns:
//! [`jobs`] (running jobs and their events), [`transactions`] (committing events and offsets)
//! and [`housekeeping`] (back-pressure, the look ahead for cancels, pruning).

mod housekeeping;
mod jobs;
mod transactions;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gallery_schemas::{Event, EventCodec, GenerationRequested, Stream, UserId};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::RecvError;
use tokio::task::{JoinError, JoinHandle};
use uuid::Uuid;

use super::WorkerSettings;
use super::consumer::{Assigned, Inbound, Poller, Record};
use super::emitter::{Emitter, TxnError};
use super::error::WorkerError;
use super::events;
use super::history::{Admission, History};
use super::job::{JobEnv, Update};
use super::ledger::Ledger;
use super::painter::Painters;
use super::plan::{Plan, plan};
use super::scheduler::FairQueue;
use crate::metrics as m;
use housekeeping::wait_lookahead;
use jobs::{count_failure, count_finished};
use transactions::wait_txn;

/// How often the session looks at back-pressure, stalled messages and due commits.
const TICK: Duration = Duration::from_millis(100);
/// How long a stopping session waits for its transaction in flight.
const WIND_DOWN: Duration = Duration::from_secs(30);
/// How long a transaction may be in flight before the session counts its producer as wedged
/// and starts again. Each of the transaction's calls is bounded by 30 s, so a healthy
/// transaction ends well within this; yet librdkafka's `send_offsets_to_transaction` was seen
/// waiting for its answer without end (under load, on a healthy broker), and with it the
/// whole painter: no job started again until the process was restarted.
const TXN_WEDGED: Duration = Duration::from_secs(90);

/// What every session of a worker shares.
#[derive(Debug)]
pub struct Shared {
    pub settings: WorkerSettings,
    pub codec: EventCodec,
    pub painters: Painters,
    pub env: Arc<JobEnv>,
}

#[derive(Debug)]
enum JobState {
    Queued,
    Running {
        seq: u64,
        cancel: Arc<AtomicBool>,
    },
    /// Its terminal event is waiting for a transaction or in one.
    Finished,
}

#[derive(Debug)]
struct Job {
    request: GenerationRequested,
    partition: i32,
    offset: i64,
    state: JobState,
    /// How it runs; absent when it was refused on arrival.
    plan: Option<Plan>,
}

/// An event waiting for a transaction.
#[derive(Debug, Clone)]
struct Outgoing {
    partition: i32,
    /// The offset of its request.
    offset: i64,
    request: Uuid,
    event: Event,
    terminal: bool,
}

/// A message of the generation topic that is not a valid event, on its way to the
/// dead-letter topic in the transaction that commits the offsets past it.
#[derive(Debug, Clone)]
struct Letter {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    reason: String,
}

#[derive(Debug)]
struct PartitionState {
    ledger: Ledger,
    history: History,
}

#[derive(Debug)]
struct InFlight {
    /// The answer of the transaction's own thread (see [`Session::maybe_commit`]).
    handle: oneshot::Receiver<Result<(), TxnError>>,
    /// When the transaction was handed to its blocking thread.
    since: Instant,
    events: Vec<Outgoing>,
    letters: Vec<Letter>,
}

enum Wake {
    Shutdown,
    Txn(Result<Result<(), TxnError>, RecvError>),
    /// The transaction in flight has taken longer than [`TXN_WEDGED`].
    TxnWedged,
    Inbound(Option<Inbound>),
    Update(Option<Update>),
    Lookahead(Result<Vec<Uuid>, JoinError>),
    Tick,
}

#[derive(Debug)]
pub struct Session {
    shared: Arc<Shared>,
    transactional_id: String,
    topic: String,
    poller: Poller,
    emitter: Arc<Emitter>,
    inbound: UnboundedReceiver<Inbound>,
    updates_tx: UnboundedSender<Update>,
    updates: UnboundedReceiver<Update>,
    partitions: HashMap<i32, PartitionState>,
    jobs: HashMap<Uuid, Job>,
    queue: FairQueue<UserId, Uuid>,
    /// Cache key -> the run painting it: identical jobs wait for it and take its result.
    flights: HashMap<String, u64>,
    /// Runs not finished yet -> their request and cache key.
    tasks: HashMap<u64, (Uuid, String)>,
    pending: Vec<Outgoing>,
    letters: Vec<Letter>,
    txn: Option<InFlight>,
    /// A message whose decoding waits for the schema registry (nothing after it is read).
    stalled: Option<Record>,
    seq: u64,
    paused: bool,
    /// Offsets moved since the last commit.
    dirty: bool,
    last_commit: Instant,
    retry_txn_at: Option<Instant>,
    last_prune: Instant,
    /// A look ahead for cancels under way (only while paused).
    lookahead: Option<JoinHandle<Vec<Uuid>>>,
    last_lookahead: Instant,
}

impl Session {
    pub fn new(
        shared: Arc<Shared>,
        poller: Poller,
        emitter: Emitter,
        inbound: UnboundedReceiver<Inbound>,
    ) -> Self {
        let (updates_tx, updates) = tokio::sync::mpsc::unbounded_channel();
        let transactional_id = shared.settings.transactional_id();
        let topic = shared.settings.topics.generation();
        Self {
            shared,
            transactional_id,
            topic,
            poller,
            emitter: Arc::new(emitter),
            inbound,
            updates_tx,
            updates,
            partitions: HashMap::new(),
            jobs: HashMap::new(),
            queue: FairQueue::new(),
            flights: HashMap::new(),
            tasks: HashMap::new(),
            pending: Vec::new(),
            letters: Vec::new(),
            txn: None,
            stalled: None,
            seq: 0,
            paused: false,
            dirty: false,
            last_commit: Instant::now(),
            retry_txn_at: None,
            last_prune: Instant::now(),
            lookahead: None,
            last_lookahead: Instant::now(),
        }
    }

    /// Runs until `shutdown` resolves (`Ok`) or the session fails (`Err`); either way the
    /// consumer is closed and running jobs are stopped before it returns.
    pub async fn run<S: Future<Output = ()>>(
        mut self,
        shutdown: &mut Pin<&mut S>,
    ) -> Result<(), WorkerError> {
        let result = self.serve(shutdown).await;
        // Nothing is taken from the poller any more: a revocation while the consumer closes
        // does not wait for an answer.
        self.inbound.close();
        self.wind_down().await;
        self.poller.shut_down().await;
        result
    }

    async fn serve<S: Future<Output = ()>>(
        &mut self,
        shutdown: &mut Pin<&mut S>,
    ) -> Result<(), WorkerError> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.dispatch();
            self.maybe_commit().await;
            let wake = tokio::select! {
                biased;
                () = shutdown.as_mut() => Wake::Shutdown,
                done = wait_txn(&mut self.txn) => done.map_or(Wake::TxnWedged, Wake::Txn),
                update = self.updates.recv() => Wake::Update(update),
                found = wait_lookahead(&mut self.lookahead) => Wake::Lookahead(found),
                inbound = self.inbound.recv(), if self.stalled.is_none() => Wake::Inbound(inbound),
                _ = tick.tick() => Wake::Tick,
            };
            match wake {
                Wake::Shutdown => return Ok(()),
                Wake::Txn(done) => self.on_txn(done)?,
                Wake::TxnWedged => {
                    metrics::counter!(m::TRANSACTIONS, "result" => "wedged").increment(1);
                    tracing::error!(after = ?TXN_WEDGED, "a transaction has not finished; starting the session again with a new producer, which fences this one");
                    return Err(WorkerError::TransactionWedged { after: TXN_WEDGED });
                }
                Wake::Update(Some(update)) => self.on_update(update),
                Wake::Update(None) => {}
                Wake::Inbound(Some(inbound)) => self.on_inbound(inbound).await?,
                Wake::Inbound(None) => return Err(WorkerError::PollerGone),
                Wake::Lookahead(found) => self.on_lookahead(found),
                Wake::Tick => self.on_tick().await,
            }
        }
    }

    /// Stops the running jobs (their partitions' next owner redoes them) and lets the
    /// transaction in flight finish.
    async fn wind_down(&mut self) {
        for job in self.jobs.values() {
            if let JobState::Running { cancel, .. } = &job.state {
                cancel.store(true, Ordering::Release);
            }
        }
        if let Some(t) = self.txn.take()
            && tokio::time::timeout(WIND_DOWN, t.handle).await.is_err()
        {
            tracing::warn!("the last transaction did not finish in time");
        }
    }

    // ---- inbound: assignment and messages ----

    async fn on_inbound(&mut self, inbound: Inbound) -> Result<(), WorkerError> {
        match inbound {
            Inbound::Message(record) => {
                self.poller.waiting.fetch_sub(1, Ordering::Relaxed);
                self.on_record(record).await;
            }
            Inbound::Assigned(assigned) => {
                for Assigned {
                    partition,
                    committed,
                    history,
                } in assigned
                {
                    self.drop_partition(partition);
                    self.partitions.insert(
                        partition,
                        PartitionState {
                            ledger: Ledger::starting_at(committed),
                            history,
                        },
                    );
                }
            }
            Inbound::Revoked { partitions, done } => {
                for partition in &partitions {
                    self.drop_partition(*partition);
                }
                tracing::info!(?partitions, "dropped the revoked partitions' jobs");
                let _ = done.send(());
            }
            Inbound::Failed(e) => return Err(e),
        }
        Ok(())
    }

    async fn on_record(&mut self, record: Record) {
        let (partition, offset) = (record.partition, record.offset);
        match self.partitions.get(&partition) {
            Some(state) if offset >= state.ledger.next() => {}
            // Revoked meanwhile, or read before (a re-fetch after a pause).
            _ => return,
        }
        let reason = match self.shared.codec.decode(record.payload.as_deref()).await {
            Ok(event) if event.stream() == Stream::Generation => {
                self.apply(partition, offset, event);
                return;
            }
            Ok(event) => format!(
                "a {} event does not belong on topic {}",
                event.record_name(),
                self.topic
            ),
            Err(e) if e.is_transient() => {
                tracing::warn!(partition, offset, error = %e, source = ?std::error::Error::source(&e), "schema registry unavailable; waiting");
                self.stalled = Some(record);
                return;
            }
            Err(e) => e.to_string(),
        };
        tracing::warn!(partition, offset, %reason, "not a generation event; dead-lettered");
        metrics::counter!(m::DEAD_LETTERS).increment(1);
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.ledger.read(offset);
        }
        self.letters.push(Letter {
            partition,
            offset,
            key: record.key,
            payload: record.payload,
            reason,
        });
        self.dirty = true;
    }

    fn apply(&mut self, partition: i32, offset: i64, event: Event) {
        self.dirty = true;
        if let Event::GenerationRequested(request) = event {
            self.on_request(partition, offset, request);
            return;
        }
        let Some(state) = self.partitions.get_mut(&partition) else {
            return;
        };
        state.ledger.read(offset);
        if let Event::GenerationCancelled(cancel) = &event {
            self.on_cancel(cancel.request_id);
        } else if let Some(request) = events::terminal_of(&event) {
            state.history.saw_terminal(request, offset);
            self.on_terminal_read(request);
        }
    }

    #[tracing::instrument(skip_all, fields(request = %request.request_id, user = %request.user_id, partition = partition, offset = offset))]
    fn on_request(&mut self, partition: i32, offset: i64, request: GenerationRequested) {
        let id = request.request_id;
        let held = self.jobs.len();
        let lag = self.poller.lag.load(Ordering::Relaxed);
        let Some(state) = self.partitions.get_mut(&partition) else {
            return;
        };
        match state.history.admit(id, offset) {
            Admission::Finished => {
                tracing::debug!("already finished; skipped");
                state.ledger.read(offset);
                return;
            }
            Admission::Duplicate { first } => {
                tracing::info!(first, "the same request again; it runs once");
                state.ledger.read(offset);
                return;
            }
            Admission::Run if self.jobs.contains_key(&id) => {
                state.ledger.read(offset);
                return;
            }
            Admission::Run => state.ledger.hold(offset, id),
        }
        // This request included: the backlog it joins.
        let backlog = u64::try_from(held + 1)
            .unwrap_or(u64::MAX)
            .saturating_add(lag);
        let planned = plan(
            &request,
            &self.shared.settings,
            &self.shared.painters,
            backlog,
        );
        let (state, plan, refused) = match planned {
            Ok(plan) => {
                tracing::info!(
                    mode = ?request.mode,
                    style = %request.style,
                    steps = plan.params.steps,
                    width = plan.params.width,
                    height = plan.params.height,
                    degraded = plan.degraded,
                    "request held"
                );
                self.queue.push(request.user_id.clone(), id);
                (JobState::Queued, Some(plan), None)
            }
            Err(rejection) => {
                tracing::info!(code = %rejection.code, reason = %rejection.reason, "request refused");
                count_failure(rejection.code);
                let event = events::failed(&request, &rejection);
                (JobState::Finished, None, Some(event))
            }
        };
        self.jobs.insert(
            id,
            Job {
                request,
                partition,
                offset,
                state,
                plan,
            },
        );
        if let Some(event) = refused {
            self.push_terminal(id, event);
        }
    }

    fn on_cancel(&mut self, id: Uuid) {
        let Some(job) = self.jobs.get_mut(&id) else {
            tracing::debug!(request = %id, "cancel for a request not held; nothing to do");
            return;
        };
        match &job.state {
            JobState::Queued => {
                self.queue.remove(&job.request.user_id, &id);
                job.state = JobState::Finished;
                let event = events::cancel_confirmed(&job.request, 0);
                tracing::info!(request = %id, "cancelled before it ran");
                count_finished("cancelled");
                self.push_terminal(id, event);
            }
            JobState::Running { cancel, .. } => {
                tracing::info!(request = %id, "cancelling the running job");
                cancel.store(true, Ordering::Release);
            }
            JobState::Finished => {}
        }
    }

    /// A committed terminal was read. This worker's own come back this way (and are known);
    /// one for a request it still works on was written by someone else: that request is done.
    fn on_terminal_read(&mut self, id: Uuid) {
        let foreign = self
            .jobs
            .get(&id)
            .is_some_and(|job| !matches!(job.state, JobState::Finished));
        if foreign {
            tracing::warn!(request = %id, "another worker finished a request held here; dropping it");
            self.drop_job(id);
        }
    }

    fn drop_job(&mut self, id: Uuid) {
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        match &job.state {
            JobState::Queued => {
                self.queue.remove(&job.request.user_id, &id);
            }
            JobState::Running { cancel, .. } => cancel.store(true, Ordering::Release),
            JobState::Finished => {}
        }
        if let Some(state) = self.partitions.get_mut(&job.partition) {
            state.ledger.forget(job.offset);
        }
        self.pending.retain(|e| e.request != id);
    }

    fn drop_partition(&mut self, partition: i32) {
        let ids: Vec<Uuid> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.partition == partition)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.drop_job(id);
        }
        self.pending.retain(|e| e.partition != partition);
        self.letters.retain(|l| l.partition != partition);
        self.partitions.remove(&partition);
    }

    fn push_terminal(&mut self, id: Uuid, event: Event) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        self.pending.push(Outgoing {
            partition: job.partition,
            offset: job.offset,
            request: id,
            event,
            terminal: true,
        });
    }
}
