//! `scripts/stack up` when a service fails during its start:
//!
//! - a Cassandra node whose data was damaged (a torn write from a crash or a power loss) would
//!   fail at every start, and with it every test and the local run: the script sets the
//!   damaged directory aside and starts an empty node, which loses nothing of Gallery's (its
//!   Scylla read model and positions are derived from the Kafka log);
//! - a Kafka node that exits during its start (some errors a second start gets past, seen on a
//!   loaded machine) is started once more, and `up` fails at once, not after its timeout,
//!   when the second start fails too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::private_stack::{PrivateCassandra, PrivateKafka};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

async fn connect(node: &PrivateCassandra) -> Session {
    SessionBuilder::new()
        .known_node(node.contact_point())
        .build()
        .await
        .expect("connect to the private Cassandra node")
}

async fn keyspaces(session: &Session) -> Vec<String> {
    session
        .query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", ())
        .await
        .expect("list keyspaces")
        .into_rows_result()
        .expect("rows")
        .rows::<(String,)>()
        .expect("typed rows")
        .map(|row| row.expect("row").0)
        .collect()
}

/// The sstable data files of the node's `system.local` table (read by every start).
fn system_local_files(node_dir: &Path) -> Vec<PathBuf> {
    let system = node_dir.join("data").join("system");
    let mut files = Vec::new();
    for table in std::fs::read_dir(&system).expect("the system keyspace's directory") {
        let table = table.expect("entry").path();
        let is_local = table
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("local-"));
        if !is_local {
            continue;
        }
        for file in std::fs::read_dir(&table).expect("the table's directory") {
            let file = file.expect("entry").path();
            if file.to_string_lossy().ends_with("-Data.db") {
                files.push(file);
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_data_is_damaged_is_set_aside_and_started_empty() {
    let node = PrivateCassandra::start();
    let session = connect(&node).await;
    session
        .query_unpaged(
            "CREATE KEYSPACE before_the_damage WITH replication = \
             {'class': 'SimpleStrategy', 'replication_factor': 1}",
            (),
        )
        .await
        .expect("create a keyspace");
    session
        .query_unpaged(
            "CREATE TABLE before_the_damage.kept (k int PRIMARY KEY)",
            (),
        )
        .await
        .expect("create a table");
    drop(session);
    // A clean stop flushes every table, system.local included, to sstables.
    node.down();

    let node_dir = node.data_dir().join("cassandra");
    let files = system_local_files(&node_dir);
    assert!(
        !files.is_empty(),
        "no sstable of system.local in {node_dir:?}"
    );
    let mut damaged = Vec::new();
    for file in &files {
        let mut bytes = std::fs::read(file).expect("read the sstable");
        let len = bytes.len();
        for b in &mut bytes[len / 4..len / 2] {
            *b ^= 0x5a;
        }
        std::fs::write(file, &bytes).expect("damage the sstable");
        damaged.push((file.strip_prefix(&node_dir).unwrap().to_path_buf(), bytes));
    }

    let (ok, said) = node.up();
    assert!(ok, "scripts/stack up failed on the damaged node:\n{said}");
    assert!(
        said.contains("data directory is damaged") && said.contains("starting an empty node"),
        "the recovery is not reported:\n{said}"
    );

    // The damaged directory is kept, as it was, beside the new one.
    let aside: Vec<PathBuf> = std::fs::read_dir(node.data_dir())
        .expect("the stack's data directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cassandra.damaged-"))
        })
        .collect();
    assert_eq!(aside.len(), 1, "one damaged copy kept: {aside:?}");
    for (relative, bytes) in &damaged {
        let kept = std::fs::read(aside[0].join(relative)).expect("the damaged sstable is kept");
        assert!(kept == *bytes, "{relative:?} changed when set aside");
    }
    let kept_keyspace = aside[0].join("data").join("before_the_damage");
    assert!(kept_keyspace.is_dir(), "{kept_keyspace:?} is not kept");

    // The node that answers is a new, empty one.
    let session = connect(&node).await;
    let names = keyspaces(&session).await;
    assert!(names.iter().any(|k| k == "system"), "{names:?}");
    assert!(
        !names.iter().any(|k| k == "before_the_damage"),
        "the damaged node's keyspaces are still served: {names:?}"
    );
}

#[test]
fn a_kafka_node_that_exits_during_its_start_is_started_once_more_and_up_fails_fast() {
    let mut kafka = PrivateKafka::start();
    kafka.down();
    // A node id other than the configured one: Kafka exits at every start.
    let meta = kafka.data_dir().join("logs").join("meta.properties");
    let text = std::fs::read_to_string(&meta).expect("meta.properties");
    assert!(text.contains("node.id=1"), "{text}");
    std::fs::write(&meta, text.replace("node.id=1", "node.id=9")).expect("rewrite it");

    let started = Instant::now();
    let (ok, said) = kafka.try_up();
    let took = started.elapsed();
    assert!(!ok, "up succeeded with a node that cannot start:\n{said}");
    assert_eq!(
        said.matches("kafka: starting").count(),
        2,
        "started twice:\n{said}"
    );
    assert!(
        said.contains("exited during its start") && said.contains("Stored node id 9"),
        "the exit and its reason are reported:\n{said}"
    );
    assert!(
        said.contains("did not start after its recovery either"),
        "{said}"
    );
    // The stack's timeout is 180 s; two starts that fail take seconds.
    assert!(took < Duration::from_secs(90), "up took {took:?}");
    kafka.down();
}
