//! The session's transactions: the pending events, the dead letters and every partition's
//! low-water offset committed together in one Kafka transaction on a thread of its own; a
//! commit settles the finished jobs, an abort sends everything again, a fatal error ends the
//! session (see the argument in the worker's module documentation).

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::sync::oneshot::error::RecvError;

use super::{InFlight, Letter, Outgoing, Session, TXN_WEDGED};
use crate::metrics as m;
use crate::worker::emitter::{Batch, Destination, OutRecord, TxnError};
use crate::worker::error::WorkerError;

/// Pause before retrying an aborted transaction.
const RETRY_TXN: Duration = Duration::from_millis(200);

/// The consumer named on the painter's dead letters.
const DEAD_LETTER_CONSUMER: &str = "painter";

/// The result of the transaction in flight, or `None` once it has been in flight for
/// [`TXN_WEDGED`].
pub(super) async fn wait_txn(
    txn: &mut Option<InFlight>,
) -> Option<Result<Result<(), TxnError>, RecvError>> {
    match txn {
        Some(t) => tokio::time::timeout_at((t.since + TXN_WEDGED).into(), &mut t.handle)
            .await
            .ok(),
        None => std::future::pending().await,
    }
}

impl Session {
    /// Starts a transaction when none is in flight and there are events, or the offsets
    /// moved a while ago.
    pub(super) async fn maybe_commit(&mut self) {
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

    pub(super) fn on_txn(
        &mut self,
        done: Result<Result<(), TxnError>, RecvError>,
    ) -> Result<(), WorkerError> {
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
}
