//! The generation backlog: how many messages of the generation topic the GPU workers' consumer
//! group has not yet committed, and what the write side does when it is too long.
//!
//! [`BacklogMonitor`] measures the lag every few seconds in the background and publishes it
//! through a [`Backlog`] handle that reads without blocking; [`BacklogAdmission`] is the
//! decision a generation command takes from it (the scale-down itself is the shared rule,
//! `gallery_schemas::GenerationSize::degraded`, applied by `decide::generation::check`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gallery_infra::kafka::Progress;
use gallery_schemas::Topics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// What to do with a generation request while the backlog is over its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverloadPolicy {
    /// Accept it, capped to the degraded steps and size.
    Degrade,
    /// Refuse it (`503` with `Retry-After`).
    Refuse,
}

/// When the AI painter counts as overloaded, and what a degraded request may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationPolicy {
    /// Backlog (messages) from which the painter is overloaded.
    pub backlog_threshold: u64,
    pub overload: OverloadPolicy,
    /// Most diffusion steps of a degraded request.
    pub degraded_max_steps: u32,
    /// Longest side, in pixels, of a degraded request's image.
    pub degraded_max_side: u32,
}

impl Default for GenerationPolicy {
    fn default() -> Self {
        crate::settings::GenerationSettings::default().policy()
    }
}

/// The write side's admission of generation requests: the measured backlog against the policy.
#[derive(Debug, Clone)]
pub struct BacklogAdmission {
    pub backlog: Backlog,
    pub policy: GenerationPolicy,
    /// What a refused client is told to wait, in seconds.
    pub retry_after_secs: u64,
}

impl crate::ports::AdmissionPolicy for BacklogAdmission {
    fn admit(&self) -> Result<crate::decide::generation::Admission, crate::ports::Overload> {
        use crate::decide::generation::Admission as Decided;
        let backlog = self.backlog.current();
        let overloaded = backlog.is_some_and(|b| b >= self.policy.backlog_threshold);
        if !overloaded {
            return Ok(Decided::Normal);
        }
        match self.policy.overload {
            OverloadPolicy::Refuse => Err(crate::ports::Overload {
                backlog: backlog.unwrap_or(0),
                retry_after: self.retry_after_secs,
            }),
            // The scale-down rule raises limits below one step or one side multiple to them.
            OverloadPolicy::Degrade => Ok(Decided::Degraded {
                max_steps: i32::try_from(self.policy.degraded_max_steps).unwrap_or(i32::MAX),
                max_side: i32::try_from(self.policy.degraded_max_side).unwrap_or(i32::MAX),
            }),
        }
    }
}

/// The painters' lag over `partitions`: per partition from the group's committed offset (the
/// low watermark without a commit, a commit outside the log clamped into it) to the end a
/// `read_committed` painter reaches (the last stable offset, which librdkafka's default
/// isolation gives as the partition's upper watermark).
pub fn lag(partitions: &[Progress]) -> u64 {
    partitions.iter().map(Progress::lag).sum()
}

/// The latest measured backlog; cheap to clone and read from any thread.
#[derive(Debug, Clone)]
pub struct Backlog(Arc<AtomicU64>);

const UNKNOWN: u64 = u64::MAX;

impl Backlog {
    /// A backlog not measured yet.
    pub fn unknown() -> Self {
        Self(Arc::new(AtomicU64::new(UNKNOWN)))
    }

    /// The last measurement, `None` until the first one.
    pub fn current(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            UNKNOWN => None,
            n => Some(n),
        }
    }

    fn set(&self, n: u64) {
        self.0.store(n.min(UNKNOWN - 1), Ordering::Relaxed);
    }
}

/// Why the backlog could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum BacklogError {
    #[error("Kafka: {context} of {topic}")]
    Kafka {
        context: &'static str,
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic {topic} does not exist")]
    NoSuchTopic { topic: String },
    #[error("backlog measurement task failed")]
    Join(#[source] tokio::task::JoinError),
}

/// Where and how often to measure.
#[derive(Debug, Clone)]
pub struct BacklogConfig {
    pub brokers: String,
    pub topics: Topics,
    pub interval: Duration,
    /// Bound of each Kafka request of a measurement.
    pub request_timeout: Duration,
}

impl BacklogConfig {
    pub fn new(brokers: impl Into<String>, topics: Topics) -> Self {
        Self {
            brokers: brokers.into(),
            topics,
            interval: Duration::from_secs(3),
            request_timeout: Duration::from_secs(2),
        }
    }
}

struct Measurer {
    /// A client of the workers' group that never joins it: it only reads its commits.
    consumer: BaseConsumer,
    topic: String,
    timeout: Duration,
}

impl Measurer {
    fn kafka(&self, context: &'static str) -> impl FnOnce(KafkaError) -> BacklogError + '_ {
        move |source| BacklogError::Kafka {
            context,
            topic: self.topic.clone(),
            source,
        }
    }

    /// One blocking measurement.
    fn measure(&self) -> Result<u64, BacklogError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), self.timeout)
            .map_err(self.kafka("metadata"))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(BacklogError::NoSuchTopic {
                topic: self.topic.clone(),
            });
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(&self.topic, *p);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, self.timeout)
            .map_err(self.kafka("committed offsets"))?;
        let mut offsets = Vec::with_capacity(partitions.len());
        for p in partitions {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, self.timeout)
                .map_err(self.kafka("watermarks"))?;
            let committed =
                committed
                    .find_partition(&self.topic, p)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
            offsets.push(Progress {
                start: low,
                end: high,
                position: committed,
            });
        }
        Ok(lag(&offsets))
    }
}

/// Measures the generation backlog in the background (see [`BacklogMonitor::run`]).
pub struct BacklogMonitor {
    measurer: Arc<Measurer>,
    backlog: Backlog,
    interval: Duration,
}

impl std::fmt::Debug for BacklogMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BacklogMonitor")
            .field("topic", &self.measurer.topic)
            .field("backlog", &self.backlog.current())
            .finish_non_exhaustive()
    }
}

impl BacklogMonitor {
    /// A monitor and the handle its measurements go to.
    pub fn new(config: &BacklogConfig) -> Result<(Self, Backlog), BacklogError> {
        let topic = config.topics.generation();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", config.topics.workers_group())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .map_err(|source| BacklogError::Kafka {
                context: "client",
                topic: topic.clone(),
                source,
            })?;
        let backlog = Backlog::unknown();
        let monitor = Self {
            measurer: Arc::new(Measurer {
                consumer,
                topic,
                timeout: config.request_timeout,
            }),
            backlog: backlog.clone(),
            interval: config.interval,
        };
        Ok((monitor, backlog))
    }

    /// Measures once now and publishes the result.
    pub async fn refresh(&self) -> Result<u64, BacklogError> {
        let measurer = self.measurer.clone();
        let n = tokio::task::spawn_blocking(move || measurer.measure())
            .await
            .map_err(BacklogError::Join)??;
        self.backlog.set(n);
        Ok(n)
    }

    /// Measures every interval until `stop` resolves. A failed measurement keeps the last
    /// value and is logged.
    pub async fn run(self, stop: impl Future<Output = ()> + Send) {
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticks.tick() => {}
            }
            match self.refresh().await {
                Ok(n) => tracing::debug!(backlog = n, "generation backlog"),
                Err(e) => tracing::warn!(error = %e, "could not measure the generation backlog"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::decide::generation::Admission;
    use crate::ports::{AdmissionPolicy, Overload};

    fn admission(backlog: Option<u64>, policy: GenerationPolicy) -> Result<Admission, Overload> {
        let measured = Backlog::unknown();
        if let Some(n) = backlog {
            measured.set(n);
        }
        BacklogAdmission {
            backlog: measured,
            policy,
            retry_after_secs: 7,
        }
        .admit()
    }

    #[test]
    fn below_the_threshold_everything_is_accepted() {
        let p = GenerationPolicy::default();
        assert_eq!(admission(Some(199), p), Ok(Admission::Normal));
        assert_eq!(admission(None, p), Ok(Admission::Normal));
    }

    #[test]
    fn from_the_threshold_on_degrade_gives_the_degraded_limits() {
        let p = GenerationPolicy::default();
        let degraded = Ok(Admission::Degraded {
            max_steps: 10,
            max_side: 256,
        });
        assert_eq!(admission(Some(200), p), degraded);
        assert_eq!(admission(Some(500), p), degraded);
    }

    #[test]
    fn over_the_threshold_refuse_refuses() {
        let p = GenerationPolicy {
            overload: OverloadPolicy::Refuse,
            ..GenerationPolicy::default()
        };
        assert_eq!(
            admission(Some(200), p),
            Err(Overload {
                backlog: 200,
                retry_after: 7
            })
        );
        assert_eq!(admission(Some(199), p), Ok(Admission::Normal));
    }

    #[test]
    fn lag_sums_high_minus_commit_or_low() {
        let parts = [
            Progress {
                start: 0,
                end: 10,
                position: Some(4),
            },
            Progress {
                start: 3,
                end: 7,
                position: None,
            },
            // A commit below the low watermark (deleted records) counts from the low one.
            Progress {
                start: 5,
                end: 6,
                position: Some(1),
            },
            // An empty partition.
            Progress {
                start: 0,
                end: 0,
                position: None,
            },
        ];
        assert_eq!(lag(&parts), 6 + 4 + 1);
    }

    #[test]
    fn an_unmeasured_backlog_is_unknown() {
        let b = Backlog::unknown();
        assert_eq!(b.current(), None);
        b.set(7);
        assert_eq!(b.current(), Some(7));
    }
}
