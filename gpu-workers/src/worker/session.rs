//! One session of a worker: from a fresh producer and consumer to shutdown or a failure.
//! A single task owns all state: the partitions (ledger and history), the held jobs, the
//! fair queue, the events waiting for a transaction, the transaction in flight. Messages,
//! job reports and transaction results come in one at a time, so there is no lock and no
//! interleaving to reason about.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gallery_schemas::{
    Event, EventCodec, GenerationMode, GenerationRequested, ImageRef, Stream, UserId,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::sync::oneshot::error::RecvError;
use tokio::task::{JoinError, JoinHandle};
use uuid::Uuid;

use super::WorkerSettings;
use super::cache_key::{CacheInputs, cache_key};
use super::consumer::{Assigned, Inbound, Poller, Record};
use super::emitter::{Batch, Destination, Emitter, OutRecord, TxnError};
use super::error::WorkerError;
use super::events::{self, CompletedHow};
use super::history::{Admission, History};
use super::images::check_reference;
use super::job::{self, JobEnv, JobSpec, Outcome, Report, Update};
use super::ledger::Ledger;
use super::lookahead;
use super::painter::{FailureCode, PaintParams, Painter, Painters, Rejection};
use super::scheduler::FairQueue;
use crate::metrics as m;

/// How often the session looks at back-pressure, stalled messages and due commits.
const TICK: Duration = Duration::from_millis(100);
/// Pause before retrying an aborted transaction.
const RETRY_TXN: Duration = Duration::from_millis(200);
/// How long a stopping session waits for its transaction in flight.
const WIND_DOWN: Duration = Duration::from_secs(30);
/// How long a transaction may be in flight before the session counts its producer as wedged
/// and starts again. Each of the transaction's calls is bounded by 30 s, so a healthy
/// transaction ends well within this; yet librdkafka's `send_offsets_to_transaction` was seen
/// waiting for its answer without end (under load, on a healthy broker), and with it the
/// whole painter: no job started again until the process was restarted.
const TXN_WEDGED: Duration = Duration::from_secs(90);
/// How often the partitions' histories are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// How often a paused session looks ahead for cancels of the requests it holds.
const LOOKAHEAD_EVERY: Duration = Duration::from_secs(1);

/// What every session of a worker shares.
#[derive(Debug)]
pub struct Shared {
    pub settings: WorkerSettings,
    pub codec: EventCodec,
    pub painters: Painters,
    pub env: Arc<JobEnv>,
}

/// How a held request will run (absent when it was refused on arrival).
#[derive(Debug)]
struct Plan {
    params: PaintParams,
    source: Option<ImageRef>,
    degraded: bool,
    cache_key: String,
    painter: Arc<dyn Painter>,
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

/// The consumer named on the painter's dead letters.
const DEAD_LETTER_CONSUMER: &str = "painter";

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

async fn wait_lookahead(task: &mut Option<JoinHandle<Vec<Uuid>>>) -> Result<Vec<Uuid>, JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// The result of the transaction in flight, or `None` once it has been in flight for
/// [`TXN_WEDGED`].
async fn wait_txn(txn: &mut Option<InFlight>) -> Option<Result<Result<(), TxnError>, RecvError>> {
    match txn {
        Some(t) => tokio::time::timeout_at((t.since + TXN_WEDGED).into(), &mut t.handle)
            .await
            .ok(),
        None => std::future::pending().await,
    }
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
                tracing::warn!(partition, offset, error = %e, "schema registry unavailable; waiting");
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
        match self.plan(&request, backlog) {
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
                self.jobs.insert(
                    id,
                    Job {
                        request,
                        partition,
                        offset,
                        state: JobState::Queued,
                        plan: Some(plan),
                    },
                );
            }
            Err(rejection) => {
                tracing::info!(code = %rejection.code, reason = %rejection.reason, "request refused");
                count_failure(rejection.code);
                let event = events::failed(&request, &rejection);
                self.jobs.insert(
                    id,
                    Job {
                        request,
                        partition,
                        offset,
                        state: JobState::Finished,
                        plan: None,
                    },
                );
                self.push_terminal(id, event);
            }
        }
    }

    /// Checks a request and decides how it runs: its painter, its limits (degraded while the
    /// backlog is high), its cache key.
    fn plan(&self, request: &GenerationRequested, backlog: u64) -> Result<Plan, Rejection> {
        let settings = &self.shared.settings;
        let painter = self.shared.painters.for_mode(request.mode)?.clone();
        let max = settings.max_prompt_chars;
        for (what, text) in [
            ("prompt", &request.prompt),
            ("negative prompt", &request.negative_prompt),
        ] {
            let chars = text.as_ref().map_or(0, |t| t.as_str().chars().count());
            if chars > max {
                return Err(Rejection::new(
                    FailureCode::InvalidPrompt,
                    format!(
                        "the {what} is {chars} characters long; the painter reads at most {max}"
                    ),
                ));
            }
        }
        let source = match request.mode {
            GenerationMode::ImageToImage => {
                let source = request.source_image.clone().ok_or_else(|| {
                    Rejection::new(
                        FailureCode::InvalidImage,
                        "an image-to-image request needs a source image",
                    )
                })?;
                check_reference(&source, &settings.source_limits)?;
                Some(source)
            }
            GenerationMode::TextToImage => None,
        };
        let positive = |value: i32, what: &str| {
            u32::try_from(value).ok().filter(|v| *v > 0).ok_or_else(|| {
                Rejection::new(
                    FailureCode::UnsupportedMode,
                    format!("{what} must be positive, not {value}"),
                )
            })
        };
        let effective = settings.degradation.apply(
            backlog,
            positive(request.steps, "steps")?,
            positive(request.width, "width")?,
            positive(request.height, "height")?,
        );
        let params = PaintParams {
            mode: request.mode,
            prompt: request.prompt.as_ref().map(|p| p.as_str().to_owned()),
            negative_prompt: request
                .negative_prompt
                .as_ref()
                .map(|p| p.as_str().to_owned()),
            style: request.style.as_str().to_owned(),
            seed: request.seed,
            steps: effective.steps,
            width: effective.width,
            height: effective.height,
        };
        painter.validate(&params)?;
        let cache_key = cache_key(&CacheInputs {
            model: painter.model(),
            weights_digest: painter.weights_digest(),
            scheduler: painter.scheduler(),
            params: &params,
            source_sha256: source.as_ref().map(|s| s.sha256.as_str()),
        });
        Ok(Plan {
            params,
            source,
            degraded: request.degraded || effective.degraded,
            cache_key,
            painter,
        })
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

    // ---- jobs ----

    /// Starts queued jobs while paint threads are free, in fair order; a job identical to
    /// one running waits for it.
    fn dispatch(&mut self) {
        while self.tasks.len() < self.shared.settings.threads {
            let (jobs, flights) = (&self.jobs, &self.flights);
            let next = self.queue.pop_next(|id| {
                jobs.get(id)
                    .and_then(|j| j.plan.as_ref())
                    .is_some_and(|p| !flights.contains_key(&p.cache_key))
            });
            let Some(id) = next else {
                return;
            };
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            let Some(plan) = &job.plan else {
                continue;
            };
            self.seq += 1;
            let seq = self.seq;
            let cancel = Arc::new(AtomicBool::new(false));
            job.state = JobState::Running {
                seq,
                cancel: cancel.clone(),
            };
            self.flights.insert(plan.cache_key.clone(), seq);
            self.tasks.insert(seq, (id, plan.cache_key.clone()));
            tracing::info!(request = %id, user = %job.request.user_id, "job dispatched");
            let spec = JobSpec {
                seq,
                params: plan.params.clone(),
                source: plan.source.clone(),
                cache_key: plan.cache_key.clone(),
                painter: plan.painter.clone(),
                cancel,
            };
            tokio::spawn(job::run(
                self.shared.env.clone(),
                spec,
                self.updates_tx.clone(),
            ));
        }
    }

    fn on_update(&mut self, update: Update) {
        let Some((id, key)) = self.tasks.get(&update.seq).cloned() else {
            return;
        };
        if let Report::Finished(_) = &update.report {
            self.tasks.remove(&update.seq);
            if self.flights.get(&key) == Some(&update.seq) {
                self.flights.remove(&key);
            }
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let current = matches!(&job.state, JobState::Running { seq, .. } if *seq == update.seq);
        if !current {
            return;
        }
        let Some(plan) = &job.plan else {
            return;
        };
        let (partition, offset) = (job.partition, job.offset);
        let (event, terminal) = match update.report {
            Report::Started => (
                events::started(&job.request, &self.transactional_id, plan.painter.model()),
                false,
            ),
            Report::Progress { step, steps } => {
                (events::progressed(&job.request, step, steps), false)
            }
            Report::Finished(outcome) => {
                let event = match outcome {
                    Outcome::Completed {
                        manifest,
                        cache_hit,
                        duration_ms,
                    } => {
                        tracing::info!(request = %id, cache_hit, duration_ms, "completed");
                        count_completed(plan, cache_hit, duration_ms);
                        let how = CompletedHow {
                            cache_hit,
                            degraded: plan.degraded,
                            duration_ms,
                        };
                        events::completed(&job.request, &manifest, how)
                    }
                    Outcome::Failed(rejection) => {
                        tracing::info!(request = %id, code = %rejection.code, reason = %rejection.reason, "failed");
                        count_failure(rejection.code);
                        events::failed(&job.request, &rejection)
                    }
                    Outcome::Cancelled { step } => {
                        tracing::info!(request = %id, step, "cancelled while running");
                        count_finished("cancelled");
                        events::cancel_confirmed(&job.request, step)
                    }
                };
                job.state = JobState::Finished;
                (event, true)
            }
        };
        self.pending.push(Outgoing {
            partition,
            offset,
            request: id,
            event,
            terminal,
        });
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

    // ---- transactions ----

    /// Starts a transaction when none is in flight and there are events, or the offsets
    /// moved a while ago.
    async fn maybe_commit(&mut self) {
        if self.txn.is_some() || self.retry_txn_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let offsets_due =
            self.dirty && self.last_commit.elapsed() >= self.shared.settings.commit_interval;
        if self.pending.is_empty() && self.letters.is_empty() && !offsets_due {
            return;
        }
        if self.partitions.is_empty() {
            self.pending.clear();
            self.letters.clear();
            self.dirty = false;
            return;
        }
        let events = std::mem::take(&mut self.pending);
        let mut records = Vec::with_capacity(events.len() + self.letters.len());
        let mut failure = None;
        for e in &events {
            match self.shared.codec.encode(&self.topic, &e.event).await {
                Ok(payload) => records.push(OutRecord {
                    to: Destination::Generation {
                        partition: e.partition,
                    },
                    key: Some(e.request.to_string().into_bytes()),
                    payload: Some(payload),
                    headers: Vec::new(),
                }),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = failure {
            tracing::warn!(%error, "cannot encode events (schema registry); retrying");
            let mut later = events;
            later.append(&mut self.pending);
            self.pending = later;
            self.retry_txn_at = Some(Instant::now() + Duration::from_secs(1));
            return;
        }
        let letters = std::mem::take(&mut self.letters);
        records.extend(letters.iter().map(|l| self.dead_letter(l)));
        for e in events.iter().filter(|e| e.terminal) {
            if let Some(state) = self.partitions.get_mut(&e.partition) {
                state.ledger.seal(e.offset);
            }
        }
        let offsets = self
            .partitions
            .iter()
            .map(|(p, s)| (*p, s.ledger.low_water()))
            .collect();
        let batch = Batch { records, offsets };
        self.dirty = false;
        let (emitter, consumer) = (self.emitter.clone(), self.poller.consumer.clone());
        // A thread of its own, not the runtime's blocking pool: librdkafka was seen to wait
        // without end inside `send_offsets_to_transaction`, and a runtime waits for its
        // blocking tasks when it shuts down, so one wedged call kept the process from ever
        // exiting (the session itself moves on after TXN_WEDGED). If the thread cannot start,
        // its sender is dropped with it and the session hears that at once.
        let (answer, handle) = oneshot::channel();
        let started = std::thread::Builder::new()
            .name("painter-txn".into())
            .spawn(move || {
                use rdkafka::consumer::Consumer as _;
                let done = consumer
                    .group_metadata()
                    .ok_or(TxnError::NotInGroup)
                    .and_then(|group| emitter.commit(&batch, &group));
                let _ = answer.send(done);
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "could not start a transaction's thread");
        }
        self.txn = Some(InFlight {
            handle,
            since: Instant::now(),
            events,
            letters,
        });
    }

    /// The record that copies `letter` to the dead-letter topic, with why and where from.
    fn dead_letter(&self, letter: &Letter) -> OutRecord {
        use gallery_schemas::dead_letter_headers as h;
        OutRecord {
            to: Destination::DeadLetters,
            key: letter.key.clone(),
            payload: letter.payload.clone(),
            headers: vec![
                (h::REASON, letter.reason.clone()),
                (h::TOPIC, self.topic.clone()),
                (h::PARTITION, letter.partition.to_string()),
                (h::OFFSET, letter.offset.to_string()),
                (h::CONSUMER, DEAD_LETTER_CONSUMER.to_owned()),
            ],
        }
    }

    fn on_txn(&mut self, done: Result<Result<(), TxnError>, RecvError>) -> Result<(), WorkerError> {
        let Some(inflight) = self.txn.take() else {
            return Ok(());
        };
        match done {
            Ok(Ok(())) => {
                metrics::counter!(m::TRANSACTIONS, "result" => "committed").increment(1);
                let mut finished = 0;
                for state in self.partitions.values_mut() {
                    for (offset, id) in state.ledger.settle_sealed() {
                        state.history.saw_terminal(id, offset);
                        self.jobs.remove(&id);
                        finished += 1;
                    }
                }
                tracing::debug!(
                    events = inflight.events.len(),
                    finished,
                    "transaction committed"
                );
                self.last_commit = Instant::now();
                self.retry_txn_at = None;
                Ok(())
            }
            Ok(Err(TxnError::Fatal(source))) => {
                metrics::counter!(m::TRANSACTIONS, "result" => "fatal").increment(1);
                Err(WorkerError::Transaction {
                    context: "commit",
                    source,
                })
            }
            Ok(Err(e)) => {
                metrics::counter!(m::TRANSACTIONS, "result" => "aborted").increment(1);
                tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "transaction aborted; sending its events again");
                for state in self.partitions.values_mut() {
                    state.ledger.unseal_all();
                }
                let mut again: Vec<Outgoing> = inflight
                    .events
                    .into_iter()
                    .filter(|e| {
                        self.partitions.contains_key(&e.partition)
                            && self.jobs.contains_key(&e.request)
                    })
                    .collect();
                again.append(&mut self.pending);
                self.pending = again;
                let mut letters: Vec<Letter> = inflight
                    .letters
                    .into_iter()
                    .filter(|l| self.partitions.contains_key(&l.partition))
                    .collect();
                letters.append(&mut self.letters);
                self.letters = letters;
                self.dirty = true;
                self.retry_txn_at = Some(Instant::now() + RETRY_TXN);
                Ok(())
            }
            Err(RecvError { .. }) => Err(WorkerError::TransactionThread),
        }
    }

    // ---- housekeeping ----

    /// Starts a look ahead for cancels of the requests held and not finished.
    fn look_ahead(&mut self) {
        self.last_lookahead = Instant::now();
        let held: HashSet<Uuid> = self
            .jobs
            .iter()
            .filter(|(_, job)| !matches!(job.state, JobState::Finished))
            .map(|(id, _)| *id)
            .collect();
        if held.is_empty() {
            return;
        }
        let from: Vec<(i32, i64)> = self
            .partitions
            .iter()
            .map(|(p, s)| (*p, s.ledger.next()))
            .collect();
        let scanner = self.poller.lookahead.clone();
        self.lookahead = Some(tokio::task::spawn_blocking(move || {
            lookahead::cancels(&scanner, &from, &held)
        }));
    }

    fn on_lookahead(&mut self, found: Result<Vec<Uuid>, JoinError>) {
        self.lookahead = None;
        match found {
            Ok(cancelled) => {
                for id in cancelled {
                    tracing::info!(request = %id, "a cancel read ahead while paused");
                    self.on_cancel(id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "the lookahead failed"),
        }
    }

    async fn on_tick(&mut self) {
        if let Some(record) = self.stalled.take() {
            self.on_record(record).await;
        }
        let max_held = self.shared.settings.max_held;
        let held = self.jobs.len();
        metrics::gauge!(m::HELD).set(held as f64);
        metrics::gauge!(m::RUNNING).set(self.tasks.len() as f64);
        if held >= max_held {
            if !self.paused {
                tracing::info!(
                    held,
                    "holding the most requests allowed; pausing the partitions"
                );
            }
            self.paused = true;
            // Again on every tick, for partitions assigned since.
            self.poller.set_paused(true);
        } else if self.paused && held <= max_held * 3 / 4 {
            tracing::info!(held, "resuming the partitions");
            self.paused = false;
            self.poller.set_paused(false);
        }
        if self.paused
            && self.lookahead.is_none()
            && self.last_lookahead.elapsed() >= LOOKAHEAD_EVERY
        {
            self.look_ahead();
        }
        if self.last_prune.elapsed() >= PRUNE_EVERY {
            self.last_prune = Instant::now();
            let window = self.shared.settings.dedup_window;
            for state in self.partitions.values_mut() {
                state.history.prune(state.ledger.low_water(), window);
            }
        }
    }
}

fn count_finished(outcome: &'static str) {
    metrics::counter!(m::JOBS_FINISHED, "outcome" => outcome).increment(1);
}

fn count_failure(code: FailureCode) {
    count_finished("failed");
    metrics::counter!(m::JOBS_FAILED, "code" => code.as_str()).increment(1);
}

fn count_completed(plan: &Plan, cache_hit: bool, duration_ms: i64) {
    count_finished("completed");
    if plan.degraded {
        metrics::counter!(m::DEGRADED).increment(1);
    }
    if cache_hit {
        metrics::counter!(m::CACHE_HITS).increment(1);
        return;
    }
    // Milliseconds as seconds: exact enough for a histogram.
    #[allow(clippy::cast_precision_loss)]
    let seconds = duration_ms.max(0) as f64 / 1000.0;
    metrics::histogram!(m::PAINT_SECONDS, "mode" => plan.params.mode.name()).record(seconds);
}
