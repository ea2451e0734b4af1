//! Services of one test's own, started and stopped for real with `scripts/stack`, for tests that
//! take them away or damage them: a single Kafka broker ([`PrivateKafka`]), a three-node
//! cluster ([`PrivateCluster`]) or a Cassandra node ([`PrivateCassandra`]). Each reuses the
//! shared stack's downloaded jars and lives in a directory of its own, on free ports; dropping
//! the guard always stops what it started and removes the directory. The shared stack's
//! services are never touched.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Where the shared stack keeps its downloads (as scripts/stack.d/common.sh computes it).
fn shared_dist() -> PathBuf {
    if let Some(dist) = std::env::var_os("GALLERY_STACK_DIST") {
        return PathBuf::from(dist);
    }
    if let Some(dir) = std::env::var_os("GALLERY_STACK_DIR") {
        return Path::new(&dir).join("dist");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    cache.join("gallery").join("stack").join("dist")
}

/// `scripts/stack` run for one service in a stack directory of its own.
struct PrivateStack {
    dir: PathBuf,
    service: &'static str,
    /// The service's port variables.
    ports: Vec<(&'static str, String)>,
}

impl PrivateStack {
    fn new(service: &'static str, ports: Vec<(&'static str, String)>) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gallery-{service}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("private stack directory");
        Self {
            dir,
            service,
            ports,
        }
    }

    /// A single-node service whose clients connect to `$client` and whose node also binds
    /// `$other`, each on a free port; returns the stack and the client port.
    fn on_free_ports(
        service: &'static str,
        client: &'static str,
        other: &'static str,
    ) -> (Self, u16) {
        let port = free_port();
        let stack = Self::new(
            service,
            vec![(client, port.to_string()), (other, free_port().to_string())],
        );
        (stack, port)
    }

    fn command(&self, action: &str) -> Command {
        let mut command = Command::new(super::repo_dir().join("scripts/stack"));
        command
            .args([action, self.service])
            .env("GALLERY_STACK_DIR", &self.dir)
            .env("GALLERY_STACK_DIST", shared_dist())
            .envs(self.ports.iter().map(|(k, v)| (k, v)))
            .env("STACK_TIMEOUT", "180");
        command
    }

    fn run(&self, action: &str) -> bool {
        matches!(self.command(action).status(), Ok(s) if s.success())
    }

    /// Runs `action` and returns whether it succeeded and what it wrote to standard error
    /// (also passed on, so that a failing test shows it).
    fn run_capturing(&self, action: &str) -> (bool, String) {
        let output = self.command(action).output().expect("run scripts/stack");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        eprint!("{stderr}");
        (output.status.success(), stderr)
    }

    /// Removes the stack's directory; only its data when the thread is panicking (a test
    /// failing), so that the services' logs stay for a look (the path is printed).
    fn remove(&self) {
        if std::thread::panicking() {
            let _ = std::fs::remove_dir_all(self.dir.join("data"));
            eprintln!(
                "the {} logs are kept in {}",
                self.service,
                self.dir.join("log").display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The pid of process `name` started by the script, if it runs.
    fn pid(&self, name: &str) -> Option<u32> {
        let text =
            std::fs::read_to_string(self.dir.join("run").join(format!("{name}.pid"))).ok()?;
        let pid = text.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }
}

/// Sends SIGKILL to `pid` and waits (up to a minute) until it is gone.
fn sigkill(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL {pid}");
    let deadline = Instant::now() + Duration::from_secs(60);
    // A killed child of a process that is gone is reaped by init; until then it is a zombie.
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "pid {pid} outlived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct PrivateKafka {
    stack: PrivateStack,
    port: u16,
    running: bool,
}

impl PrivateKafka {
    /// Starts a fresh single-node broker on free ports and waits until it answers.
    pub fn start() -> Self {
        let (stack, port) = PrivateStack::on_free_ports(
            "kafka",
            "GALLERY_KAFKA_PORT",
            "GALLERY_KAFKA_CONTROLLER_PORT",
        );
        let mut kafka = Self {
            stack,
            port,
            running: false,
        };
        kafka.up();
        kafka
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again), keeping its data.
    pub fn up(&mut self) {
        self.running = true;
        assert!(self.stack.run("up"), "scripts/stack up kafka failed");
    }

    /// `scripts/stack up kafka`: whether it succeeded, and what it said.
    pub fn try_up(&mut self) -> (bool, String) {
        self.running = true;
        self.stack.run_capturing("up")
    }

    /// The broker's data directory (its log directory, with `meta.properties`, is `logs`).
    pub fn data_dir(&self) -> PathBuf {
        self.stack.dir.join("data").join("kafka")
    }

    /// Stops the broker for real (SIGTERM, then waits for the process to exit).
    pub fn down(&mut self) {
        assert!(self.stack.run("down"), "scripts/stack down kafka failed");
        self.running = false;
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stack.run("down");
        }
        self.stack.remove();
    }
}

/// Three KRaft nodes (`scripts/stack up kafka-cluster`): replication 3 and
/// `min.insync.replicas=2` for every topic. Node ids are 1, 2 and 3.
pub struct PrivateCluster {
    stack: PrivateStack,
    ports: Vec<u16>,
}

impl PrivateCluster {
    pub const NODES: [i32; 3] = [1, 2, 3];

    /// Starts a fresh cluster on free ports and waits until every node answers.
    pub fn start() -> Self {
        let ports: Vec<u16> = Self::NODES.iter().map(|_| free_port()).collect();
        let controllers: Vec<String> = Self::NODES
            .iter()
            .map(|_| free_port().to_string())
            .collect();
        let list = |ports: &[String]| ports.join(",");
        let stack = PrivateStack::new(
            "kafka-cluster",
            vec![
                (
                    "GALLERY_KAFKA_CLUSTER_PORTS",
                    list(&ports.iter().map(u16::to_string).collect::<Vec<_>>()),
                ),
                ("GALLERY_KAFKA_CLUSTER_CONTROLLER_PORTS", list(&controllers)),
            ],
        );
        let cluster = Self { stack, ports };
        cluster.up();
        cluster
    }

    /// Bootstrap servers: every node.
    pub fn brokers(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts every node that is not running (again, keeping its data) and waits for all.
    pub fn up(&self) {
        assert!(
            self.stack.run("up"),
            "scripts/stack up kafka-cluster failed"
        );
    }

    /// Kills node `id` with SIGKILL (no clean shutdown, no leadership handed over) and waits
    /// until its process is gone.
    pub fn kill(&self, id: i32) {
        let pid = self
            .stack
            .pid(&format!("kafka-cluster-{id}"))
            .unwrap_or_else(|| panic!("node {id} is not running"));
        sigkill(pid);
    }

    /// Stops node `id` (SIGSTOP): it keeps its connections and answers nothing, as a node in
    /// a long pause does, until [`PrivateCluster::resume`].
    pub fn pause(&self, id: i32) {
        self.signal(id, "-STOP");
    }

    pub fn resume(&self, id: i32) {
        self.signal(id, "-CONT");
    }

    fn signal(&self, id: i32, signal: &str) {
        let pid = self
            .stack
            .pid(&format!("kafka-cluster-{id}"))
            .unwrap_or_else(|| panic!("node {id} is not running"));
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // Killed rather than stopped: a clean shutdown of the last nodes waits for a quorum
        // that is going away, and the data is removed anyway.
        for id in Self::NODES {
            if let Some(pid) = self.stack.pid(&format!("kafka-cluster-{id}")) {
                sigkill(pid);
            }
        }
        self.stack.remove();
    }
}

/// One Cassandra node (`scripts/stack up cassandra`).
pub struct PrivateCassandra {
    stack: PrivateStack,
    port: u16,
}

impl PrivateCassandra {
    /// Starts a fresh node on free ports and waits until it answers CQL.
    pub fn start() -> Self {
        let (stack, port) = PrivateStack::on_free_ports(
            "cassandra",
            "GALLERY_CQL_PORT",
            "GALLERY_CASSANDRA_STORAGE_PORT",
        );
        let node = Self { stack, port };
        let (ok, _) = node.up();
        assert!(ok, "scripts/stack up cassandra failed");
        node
    }

    pub fn contact_point(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The stack's data directory (the node's is `cassandra` in it).
    pub fn data_dir(&self) -> PathBuf {
        self.stack.dir.join("data")
    }

    /// `scripts/stack up cassandra`: whether it succeeded, and what it said.
    pub fn up(&self) -> (bool, String) {
        self.stack.run_capturing("up")
    }

    /// Stops the node cleanly (SIGTERM: memtables flushed to sstables) and waits for it.
    pub fn down(&self) {
        assert!(
            self.stack.run("down"),
            "scripts/stack down cassandra failed"
        );
    }
}

impl Drop for PrivateCassandra {
    fn drop(&mut self) {
        let _ = self.stack.run("down");
        self.stack.remove();
    }
}
