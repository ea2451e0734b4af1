//! A Kafka broker of one test's own, started and stopped for real with `scripts/stack`, for
//! tests that take Kafka away. It reuses the shared stack's downloaded jars and lives in a
//! directory of its own; dropping the guard always stops it and removes the directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PrivateKafka {
    dir: PathBuf,
    port: u16,
    controller_port: u16,
    running: bool,
}

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

impl PrivateKafka {
    /// Starts a fresh single-node broker on free ports and waits until it answers.
    pub fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("gallery-kafka-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("private stack directory");
        let mut kafka = Self {
            dir,
            port: free_port(),
            controller_port: free_port(),
            running: false,
        };
        kafka.up();
        kafka
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stack(&self, action: &str) -> bool {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/stack");
        let status = Command::new(script)
            .args([action, "kafka"])
            .env("GALLERY_STACK_DIR", &self.dir)
            .env("GALLERY_STACK_DIST", shared_dist())
            .env("GALLERY_KAFKA_PORT", self.port.to_string())
            .env(
                "GALLERY_KAFKA_CONTROLLER_PORT",
                self.controller_port.to_string(),
            )
            .env("STACK_TIMEOUT", "120")
            .status();
        matches!(status, Ok(s) if s.success())
    }

    /// Starts the broker (again), keeping its data.
    pub fn up(&mut self) {
        self.running = true;
        assert!(self.stack("up"), "scripts/stack up kafka failed");
    }

    /// Stops the broker for real (SIGTERM, then waits for the process to exit).
    pub fn down(&mut self) {
        assert!(self.stack("down"), "scripts/stack down kafka failed");
        self.running = false;
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stack("down");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
