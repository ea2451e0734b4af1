//! Helpers of the tests against the Scylla read model (Apache Cassandra locally): a keyspace
//! per test, and waiting for the Scylla projector.

use std::collections::HashMap;
use std::time::Duration;

use gallery::config::ReadStore;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use super::TestEnv;

/// `env` reading interactions from Scylla, in a keyspace of its own (`test_<uuid>`).
pub fn with_scylla(mut env: TestEnv) -> TestEnv {
    env.config.read.store = ReadStore::Scylla;
    env.config.scylla.keyspace = format!("test_{}", uuid::Uuid::new_v4().simple());
    env
}

pub async fn session(env: &TestEnv) -> Session {
    SessionBuilder::new()
        .known_nodes(env.config.scylla.contact_points())
        .build()
        .await
        .expect("connect to Cassandra (scripts/stack up cassandra)")
}

/// The Scylla projection's stored next offsets: (topic, partition) -> next offset.
pub async fn offsets(env: &TestEnv, session: &Session) -> HashMap<(String, i32), i64> {
    let ks = &env.config.scylla.keyspace;
    let Ok(result) = session
        .query_unpaged(
            format!(
                "SELECT topic, partition, next_offset FROM {ks}.projection_offsets
                 WHERE projection = 'read-model'"
            ),
            (),
        )
        .await
    else {
        return HashMap::new(); // the keyspace is not there yet
    };
    let rows = result.into_rows_result().unwrap();
    rows.rows::<(String, i32, i64)>()
        .unwrap()
        .map(|r| {
            let (t, p, o) = r.unwrap();
            ((t, p), o)
        })
        .collect()
}

/// Messages the Scylla projection has passed, over all partitions.
pub async fn projected_count(env: &TestEnv, session: &Session) -> i64 {
    offsets(env, session).await.values().sum()
}

/// Waits until the Scylla projection has passed every message of the interactions topic now,
/// for a topic whose partitions each end in an event (no transaction marker after it).
pub async fn wait_projected(env: &TestEnv, session: &Session) {
    let last = env
        .end_offsets(&env.config.topics().interactions())
        .into_iter()
        .filter(|(_, end)| *end > 0)
        .map(|(p, end)| (p, end - 1))
        .collect();
    wait_projected_to(env, session, &last).await;
}

/// Waits until the Scylla projection has passed the events at `last` (partition -> offset) of
/// the interactions topic. A projection's position passes events only, so a partition that
/// ends in a transaction's marker (a takeover's search marks it, see the command service's
/// `lookup` module) is done at its last event.
pub async fn wait_projected_to(env: &TestEnv, session: &Session, last: &HashMap<i32, i64>) {
    let topic = env.config.topics().interactions();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let stored = offsets(env, session).await;
        let done = last.iter().all(|(p, offset)| {
            stored
                .get(&(topic.clone(), *p))
                .is_some_and(|next| next > offset)
        });
        if done {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Scylla projection did not pass {last:?} within 90 s (at {stored:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
