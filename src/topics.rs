//! Creates Gallery's topics when they are missing.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Config;

/// How long [`ensure_topics`] tries again while Kafka cannot answer yet: a role started while
/// a broker of the cluster is down (or restarting) may meet a request sent to that broker, which
/// times out; the next attempt, with fresh metadata, asks one that lives.
const PATIENCE: Duration = Duration::from_secs(60);

/// Creates every topic of the deployment that does not exist yet, with its own
/// [`min.insync.replicas`](gallery_schemas::settings::KafkaSettings::min_insync_replicas) whatever the
/// broker's default, and waits (up to 15 s) until every partition has a leader that serves it:
/// a producer started right after would otherwise meet "not leader for partition" while a new
/// topic settles. Topics that exist keep their settings; a warning names those that ask fewer
/// in-sync replicas than configured ([`weaker_than_configured`]). Errors Kafka may get over
/// (timeouts, a broker gone) are tried again for up to a minute; others end it at once.
pub async fn ensure_topics(config: &Config) -> Result<(), KafkaError> {
    let deadline = Instant::now() + PATIENCE;
    let admin = loop {
        match create_missing(config).await {
            Ok(admin) => break admin,
            Err(e) if passing(&e) && Instant::now() < deadline => {
                tracing::warn!(error = %e, brokers = %config.kafka.brokers, "Kafka could not create the topics yet; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    };
    if let Some(admin) = admin {
        warn_of_weaker_topics(&admin, config).await;
    }
    let brokers = config.kafka.brokers.clone();
    let names = config.topics().all();
    tokio::task::spawn_blocking(move || wait_for_leaders(&brokers, &names))
        .await
        .map_err(|_| KafkaError::AdminOp(RDKafkaErrorCode::Fail))?
}

/// Whether Kafka may get over `e` by itself: anything but a request it refuses as such.
fn passing(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    match e {
        KafkaError::AdminOp(code) | KafkaError::MetadataFetch(code) => !matches!(
            code,
            C::InvalidReplicationFactor
                | C::InvalidPartitions
                | C::InvalidConfig
                | C::InvalidTopic
                | C::PolicyViolation
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::InvalidReplicaAssignment
        ),
        KafkaError::AdminOpCreation(_) | KafkaError::ClientCreation(_) => false,
        _ => true,
    }
}

/// One attempt at creating the missing topics; the admin client when some existed already
/// (for the warning about their settings).
async fn create_missing(
    config: &Config,
) -> Result<Option<AdminClient<DefaultClientContext>>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .create()?;
    let names = config.topics().all();
    let min_insync = config.kafka.min_insync_replicas().to_string();
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.kafka.partitions,
                TopicReplication::Fixed(config.kafka.replication_factor),
            )
            // Facts are the truth: keep them forever.
            .set("retention.ms", "-1")
            .set("min.insync.replicas", &min_insync)
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(15)))
        .request_timeout(Some(Duration::from_secs(15)));
    let mut existing = false;
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existing = true,
            Err((name, code)) => {
                tracing::error!(topic = %name, ?code, "could not create topic");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(existing.then_some(admin))
}

/// Topics of the deployment that ask fewer in-sync replicas of a write than
/// [`min_insync_replicas`](gallery_schemas::settings::KafkaSettings::min_insync_replicas) (created by an
/// earlier version, which asked one, or by hand): each topic and its `min.insync.replicas`.
pub async fn weaker_than_configured(config: &Config) -> Result<Vec<(String, i32)>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .create()?;
    weaker(&admin, config).await
}

async fn weaker(
    admin: &AdminClient<DefaultClientContext>,
    config: &Config,
) -> Result<Vec<(String, i32)>, KafkaError> {
    let wanted = config.kafka.min_insync_replicas();
    let names = config.topics().all();
    let resources: Vec<ResourceSpecifier<'_>> =
        names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let described = admin
        .describe_configs(&resources, &AdminOptions::new())
        .await?;
    let mut out = Vec::new();
    for (name, resource) in names.iter().zip(described) {
        let has = resource
            .map_err(KafkaError::AdminOp)?
            .get("min.insync.replicas")
            .and_then(|e| e.value.as_deref())
            .and_then(|v| v.parse::<i32>().ok());
        if let Some(has) = has.filter(|has| *has < wanted) {
            out.push((name.clone(), has));
        }
    }
    Ok(out)
}

/// Tells operators of existing topics that acknowledge writes on fewer replicas than
/// configured: Gallery never changes a topic that exists.
async fn warn_of_weaker_topics(admin: &AdminClient<DefaultClientContext>, config: &Config) {
    match weaker(admin, config).await {
        Ok(topics) => {
            for (topic, has) in topics {
                tracing::warn!(
                    %topic,
                    min_insync_replicas = has,
                    wanted = config.kafka.min_insync_replicas(),
                    "the topic acknowledges a write on fewer in-sync replicas than configured; \
                     raise it with kafka-configs --alter --entity-type topics --entity-name \
                     <topic> --add-config min.insync.replicas=<wanted>"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not check the settings of existing topics"),
    }
}

fn wait_for_leaders(brokers: &str, topics: &[String]) -> Result<(), KafkaError> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    for topic in topics {
        // Advisory: a broker of the cluster may be down (its metadata requests time out, its
        // partitions wait for a new leader); the roles' clients wait for leaders themselves.
        loop {
            match serves(&client, topic) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::debug!(%topic, error = %e, "no metadata yet"),
            }
            if Instant::now() > deadline {
                tracing::warn!(%topic, "topic has partitions without a serving leader after 15 s");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Whether every partition of `topic` has a leader in the metadata *and* that leader answers
/// for it: a broker may announce itself leader a moment before it serves the partition, and a
/// client asking in between meets "not leader for partition".
fn serves(client: &BaseConsumer, topic: &str) -> Result<bool, KafkaError> {
    let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(false);
    };
    let led = found.error().is_none()
        && !found.partitions().is_empty()
        && found
            .partitions()
            .iter()
            .all(|p| p.error().is_none() && p.leader() >= 0);
    if !led {
        return Ok(false);
    }
    Ok(found.partitions().iter().all(|p| {
        client
            .fetch_watermarks(topic, p.id(), Duration::from_secs(5))
            .is_ok()
    }))
}
