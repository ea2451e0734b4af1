//! The generation backlog: how many messages of the generation topic the GPU workers' consumer
//! group has not yet committed, and what the write side does when it is too long.
//!
//! [`BacklogMonitor`] measures the lag every few seconds in the background and publishes it
//! through a [`Backlog`] handle that reads without blocking; [`admit`] is the pure decision a
//! generation command takes from it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gallery_schemas::Topics;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The consumer group of the GPU workers on the generation topic.
pub fn workers_group(topics: &Topics) -> String {
    format!("{}gpu-workers", topics.prefix())
}

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
        Self {
            backlog_threshold: 200,
            overload: OverloadPolicy::Degrade,
            degraded_max_steps: 10,
            degraded_max_side: 256,
        }
    }
}

/// The cost-relevant part of a generation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationSize {
    pub steps: u32,
    pub width: u32,
    pub height: u32,
}

/// The decision on a generation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accept,
    /// Accept it with these (smaller) parameters.
    AcceptDegraded(GenerationSize),
    Refuse,
}

/// Image sides stay multiples of this (what diffusion models need), and never below it.
const SIDE_STEP: u32 = 8;

/// Decides a generation request from the current backlog. An unknown backlog (`None`, not
/// measured yet or Kafka unreachable) is not treated as overload: the publish itself fails
/// fast when Kafka is down.
pub fn admit(
    backlog: Option<u64>,
    policy: &GenerationPolicy,
    requested: GenerationSize,
) -> Admission {
    let overloaded = backlog.is_some_and(|b| b >= policy.backlog_threshold);
    if !overloaded {
        return Admission::Accept;
    }
    match policy.overload {
        OverloadPolicy::Refuse => Admission::Refuse,
        OverloadPolicy::Degrade => {
            let degraded = degrade(requested, policy);
            if degraded == requested {
                Admission::Accept
            } else {
                Admission::AcceptDegraded(degraded)
            }
        }
    }
}

/// Caps the steps, and scales the image down (keeping its aspect ratio) so that its longest
/// side fits.
fn degrade(requested: GenerationSize, policy: &GenerationPolicy) -> GenerationSize {
    let steps = requested.steps.min(policy.degraded_max_steps.max(1));
    let max_side = policy.degraded_max_side.max(SIDE_STEP);
    let longest = requested.width.max(requested.height);
    if longest <= max_side {
        return GenerationSize { steps, ..requested };
    }
    let scale = |side: u32| -> u32 {
        let scaled = u64::from(side) * u64::from(max_side) / u64::from(longest);
        let snapped = (scaled / u64::from(SIDE_STEP)) * u64::from(SIDE_STEP);
        u32::try_from(snapped)
            .unwrap_or(max_side)
            .clamp(SIDE_STEP, max_side)
    };
    GenerationSize {
        steps,
        width: scale(requested.width),
        height: scale(requested.height),
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

impl crate::service::AdmissionPolicy for BacklogAdmission {
    fn admit(&self) -> Result<crate::decide::generation::Admission, crate::service::Overload> {
        use crate::decide::generation::Admission as Decided;
        let backlog = self.backlog.current();
        let overloaded = backlog.is_some_and(|b| b >= self.policy.backlog_threshold);
        if !overloaded {
            return Ok(Decided::Normal);
        }
        match self.policy.overload {
            OverloadPolicy::Refuse => Err(crate::service::Overload {
                backlog: backlog.unwrap_or(0),
                retry_after: self.retry_after_secs,
            }),
            OverloadPolicy::Degrade => Ok(Decided::Degraded {
                max_steps: i32::try_from(self.policy.degraded_max_steps.max(1)).unwrap_or(1),
                max_side: i32::try_from(self.policy.degraded_max_side.max(SIDE_STEP))
                    .unwrap_or(256),
            }),
        }
    }
}

/// Offsets of one partition, as needed to compute its lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub low: i64,
    pub high: i64,
    /// The group's committed offset, if it has one.
    pub committed: Option<i64>,
}

/// Sum over partitions of the high watermark minus the group's committed offset (or minus the
/// low watermark without a commit); a commit outside the watermarks is clamped into them.
pub fn lag(partitions: &[PartitionOffsets]) -> u64 {
    partitions
        .iter()
        .map(|p| {
            let from = p.committed.unwrap_or(p.low).clamp(p.low, p.high.max(p.low));
            u64::try_from(p.high.saturating_sub(from)).unwrap_or(0)
        })
        .sum()
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
            offsets.push(PartitionOffsets {
                low,
                high,
                committed,
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
            .set("group.id", workers_group(&config.topics))
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

    fn size(steps: u32, width: u32, height: u32) -> GenerationSize {
        GenerationSize {
            steps,
            width,
            height,
        }
    }

    #[test]
    fn below_the_threshold_everything_is_accepted() {
        let p = GenerationPolicy::default();
        assert_eq!(
            admit(Some(199), &p, size(50, 1024, 1024)),
            Admission::Accept
        );
        assert_eq!(admit(None, &p, size(50, 1024, 1024)), Admission::Accept);
    }

    #[test]
    fn over_the_threshold_degrade_caps_steps_and_keeps_the_aspect_ratio() {
        let p = GenerationPolicy::default();
        assert_eq!(
            admit(Some(200), &p, size(50, 1024, 768)),
            Admission::AcceptDegraded(size(10, 256, 192))
        );
        assert_eq!(
            admit(Some(500), &p, size(30, 512, 2048)),
            Admission::AcceptDegraded(size(10, 64, 256))
        );
        // Already small enough: nothing to degrade.
        assert_eq!(admit(Some(500), &p, size(8, 256, 128)), Admission::Accept);
        // Only the steps change.
        assert_eq!(
            admit(Some(500), &p, size(20, 128, 128)),
            Admission::AcceptDegraded(size(10, 128, 128))
        );
    }

    #[test]
    fn a_very_thin_image_keeps_a_minimal_side() {
        let p = GenerationPolicy::default();
        assert_eq!(
            admit(Some(500), &p, size(10, 4096, 16)),
            Admission::AcceptDegraded(size(10, 256, 8))
        );
    }

    #[test]
    fn over_the_threshold_refuse_refuses() {
        let p = GenerationPolicy {
            overload: OverloadPolicy::Refuse,
            ..GenerationPolicy::default()
        };
        assert_eq!(admit(Some(200), &p, size(1, 8, 8)), Admission::Refuse);
        assert_eq!(admit(Some(199), &p, size(1, 8, 8)), Admission::Accept);
    }

    #[test]
    fn lag_sums_high_minus_commit_or_low() {
        let parts = [
            PartitionOffsets {
                low: 0,
                high: 10,
                committed: Some(4),
            },
            PartitionOffsets {
                low: 3,
                high: 7,
                committed: None,
            },
            // A commit below the low watermark (deleted records) counts from the low one.
            PartitionOffsets {
                low: 5,
                high: 6,
                committed: Some(1),
            },
            // An empty partition.
            PartitionOffsets {
                low: 0,
                high: 0,
                committed: None,
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
