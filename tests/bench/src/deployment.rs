//! A run's own deployment on the local stack: a topic prefix and databases no one else uses,
//! named as `scripts/stack prune-tests` cleans them (`test-*` topics and subjects,
//! `gallery_test_*` databases) should a run be killed before it removes them itself.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use gallery::Config;
use gallery_schemas::Topics;

use crate::machine::LoadAverage;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use tokio::process::Command;
use tokio_postgres::NoTls;

/// A scenario's measurements and the load average around the run.
#[derive(Debug)]
pub struct Run<T> {
    pub measured: T,
    pub before: LoadAverage,
    pub after: LoadAverage,
}

impl<T> Run<T> {
    /// The table's heading: `## <title>`, the machine and load average, the command.
    pub fn print_heading(&self, title: &str) {
        crate::machine::print_heading(title, self.before, self.after);
    }
}

/// Runs `measure` in a deployment of its own with topics of `partitions` partitions, then
/// removes the deployment (also when `measure` failed), noting the load average around it.
pub async fn run<T>(
    partitions: i32,
    measure: impl AsyncFnOnce(&Deployment) -> anyhow::Result<T>,
) -> anyhow::Result<Run<T>> {
    let before = LoadAverage::now();
    let deployment = Deployment::create(partitions).await?;
    eprintln!(
        "run: topics {}*, logs in {}",
        deployment.prefix,
        deployment.dir.display()
    );
    let measured = measure(&deployment).await;
    let removed = deployment.remove().await;
    let after = LoadAverage::now();
    let measured = measured?;
    removed.context("could not remove the run's topics and databases")?;
    Ok(Run {
        measured,
        before,
        after,
    })
}

/// One run's topics, databases, secret and files.
#[derive(Debug)]
pub struct Deployment {
    /// The stack's settings (`GALLERY_*` variables over the defaults), as `gallery` reads them.
    pub base: Config,
    /// Names the run's topics, databases and keyspaces.
    pub id: String,
    pub prefix: String,
    pub partitions: i32,
    databases: Vec<String>,
    /// Signs the users' tokens; random per run.
    pub jwt_secret: String,
    /// Logs and profiles.
    pub dir: PathBuf,
}

impl Deployment {
    pub async fn create(partitions: i32) -> anyhow::Result<Self> {
        let base = Config::load(None, &Default::default())?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("gallery-bench-{id}"));
        std::fs::create_dir_all(&dir)?;
        let deployment = Self {
            prefix: format!("test-bench-{id}."),
            partitions,
            databases: vec![
                format!("gallery_test_{id}"),
                format!("gallery_test_{id}_crud"),
            ],
            jwt_secret: uuid::Uuid::new_v4().simple().to_string(),
            dir,
            base,
            id,
        };
        let admin = deployment.admin().await?;
        for db in &deployment.databases {
            admin
                .batch_execute(&format!("CREATE DATABASE {db}"))
                .await
                .with_context(|| format!("could not create the database {db}"))?;
        }
        Ok(deployment)
    }

    pub fn topics(&self) -> Topics {
        Topics::new(self.prefix.clone())
    }

    fn url_of(&self, db: &str) -> anyhow::Result<String> {
        let mut url = url::Url::parse(self.base.postgres.url.expose())?;
        url.set_path(db);
        Ok(url.to_string())
    }

    /// Creates one more database of the run (`gallery_test_<id>_<suffix>`, removed with the
    /// others); returns its URL.
    pub async fn add_database(&mut self, suffix: &str) -> anyhow::Result<String> {
        let db = format!("gallery_test_{}_{suffix}", self.id);
        self.admin()
            .await?
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .with_context(|| format!("could not create the database {db}"))?;
        self.databases.push(db.clone());
        self.url_of(&db)
    }

    /// Gallery's database.
    /// The sum of the end offsets of `topic`'s partitions.
    pub async fn end_offsets(&self, topic: &str) -> anyhow::Result<i64> {
        use rdkafka::consumer::{BaseConsumer, Consumer as _};
        let brokers = self.base.kafka.brokers.clone();
        let topic = topic.to_owned();
        let partitions = self.partitions;
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .create()?;
            let mut sum = 0;
            for p in 0..partitions {
                let (_, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10))?;
                sum += high;
            }
            anyhow::Ok(sum)
        })
        .await?
    }

    pub fn gallery_url(&self) -> anyhow::Result<String> {
        self.url_of(&self.databases[0])
    }

    /// The CRUD baseline's database.
    pub fn crud_url(&self) -> anyhow::Result<String> {
        self.url_of(&self.databases[1])
    }

    async fn admin(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(self.base.postgres.url.expose(), NoTls)
            .await
            .context("could not reach Postgres (is `scripts/stack up` running?)")?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// `gallery <role>` in this deployment, serving HTTP on `listen` and metrics on `metrics`.
    pub fn gallery(
        &self,
        binary: &std::path::Path,
        role: &str,
        listen: SocketAddr,
        metrics: SocketAddr,
    ) -> anyhow::Result<Command> {
        let mut command = Command::new(binary);
        command
            .arg(role)
            .env("GALLERY_KAFKA__TOPIC_PREFIX", &self.prefix)
            .env("GALLERY_KAFKA__PARTITIONS", self.partitions.to_string())
            .env("GALLERY_POSTGRES__URL", self.gallery_url()?)
            .env("GALLERY_COMMANDS__LISTEN", listen.to_string())
            .env("GALLERY_QUERY_API__LISTEN", listen.to_string())
            .env("GALLERY_METRICS__LISTEN", metrics.to_string())
            .env("GALLERY_AUTH__JWT_SECRET", &self.jwt_secret)
            .env(
                "GALLERY_MEDIA__STORE_URL",
                self.dir.join("objects").display().to_string(),
            );
        Ok(command)
    }

    /// Deletes the run's topics, registry subjects and databases.
    pub async fn remove(&self) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.base.kafka.brokers)
            .create()?;
        let names = self.topics().all();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.delete_topics(&names, &options).await? {
            if let Err((topic, code)) = result {
                tracing::debug!(%topic, ?code, "topic not deleted");
            }
        }
        self.remove_subjects().await?;
        let pg = self.admin().await?;
        for db in &self.databases {
            pg.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .await?;
        }
        Ok(())
    }

    async fn remove_subjects(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?;
        let base = self.base.registry.url.trim_end_matches('/');
        let subjects: Vec<String> = client
            .get(format!("{base}/subjects"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for subject in subjects.iter().filter(|s| s.starts_with(&self.prefix)) {
            let url = format!("{base}/subjects/{}", url_escape(subject));
            client.delete(&url).send().await?.error_for_status()?;
            client
                .delete(format!("{url}?permanent=true"))
                .send()
                .await?
                .error_for_status()?;
        }
        Ok(())
    }
}

/// A subject name as one path segment.
fn url_escape(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
