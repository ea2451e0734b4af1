//! The migration runner against the local stack's Postgres (`scripts/stack up`), each test in
//! a schema of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use gallery_infra::{Migration, Migrations};
use tokio_postgres::{Client, NoTls};

/// The stack's database, or the one `GALLERY_POSTGRES__URL` names.
async fn connect() -> Client {
    let url = std::env::var("GALLERY_POSTGRES__URL")
        .unwrap_or_else(|_| "postgres://gallery:gallery@127.0.0.1:5432/gallery".to_owned());
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url} (is `scripts/stack up` running?): {e}"));
    tokio::spawn(connection);
    client
}

/// A fresh schema, which the migrations' unqualified names land in.
async fn schema(client: &Client) -> String {
    let name = format!("test_migrate_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .unwrap();
    name
}

const FIRST: Migration = Migration {
    version: 1,
    sql: "CREATE TABLE paintings (id integer PRIMARY KEY); INSERT INTO paintings VALUES (1)",
};
const SECOND: Migration = Migration {
    version: 2,
    sql: "ALTER TABLE paintings ADD COLUMN title text",
};

fn migrations(steps: &'static [Migration]) -> Migrations {
    Migrations {
        name: "test",
        history: "schema_migrations",
        // Its own lock, so that tests of other crates never wait for these.
        lock: 0x7465_7374_6d69_6772,
        steps,
    }
}

/// Runs `migrations` in `schema` in one transaction, as the crates do.
async fn run(client: &mut Client, schema: &str, migrations: Migrations) -> Vec<i32> {
    let tx = client.transaction().await.unwrap();
    migrations.lock(&tx).await.unwrap();
    tx.batch_execute(&format!("SET LOCAL search_path TO {schema}"))
        .await
        .unwrap();
    let applied = migrations.apply(&tx).await.unwrap();
    tx.commit().await.unwrap();
    applied
}

async fn history(client: &Client, schema: &str) -> Vec<i32> {
    client
        .query(
            &format!("SELECT version FROM {schema}.schema_migrations ORDER BY version"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("version"))
        .collect()
}

#[tokio::test]
async fn each_step_is_applied_once_and_a_new_step_alone_later() {
    let mut client = connect().await;
    let schema = schema(&client).await;
    assert_eq!(run(&mut client, &schema, migrations(&[FIRST])).await, [1]);
    assert_eq!(
        run(&mut client, &schema, migrations(&[FIRST])).await,
        [0; 0]
    );
    assert_eq!(
        run(&mut client, &schema, migrations(&[FIRST, SECOND])).await,
        [2]
    );
    assert_eq!(history(&client, &schema).await, [1, 2]);
    let rows = client
        .query(&format!("SELECT id, title FROM {schema}.paintings"), &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the first step's insert ran once");
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failing_step_is_named_and_leaves_nothing_behind() {
    const BROKEN: Migration = Migration {
        version: 7,
        sql: "ALTER TABLE no_such_table ADD COLUMN x integer",
    };
    let mut client = connect().await;
    let schema = schema(&client).await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute(&format!("SET LOCAL search_path TO {schema}"))
        .await
        .unwrap();
    let error = migrations(&[FIRST, BROKEN])
        .apply(&tx)
        .await
        .expect_err("step 7 cannot apply");
    assert_eq!((error.action, error.version), ("apply", Some(7)));
    assert_eq!(error.to_string(), "test migrations: apply (version 7)");
    assert!(
        std::error::Error::source(&error).is_some(),
        "Postgres' own error is kept as the source"
    );
    drop(tx);
    let left = client
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
            &[&schema],
        )
        .await
        .unwrap();
    assert!(left.is_empty(), "step 1 and the history rolled back too");
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_second_process_waits_for_the_first_and_then_applies_nothing() {
    let mut first = connect().await;
    let mut second = connect().await;
    let schema = schema(&first).await;
    let tx = first.transaction().await.unwrap();
    let steps = migrations(&[FIRST, SECOND]);
    steps.lock(&tx).await.unwrap();
    tx.batch_execute(&format!("SET LOCAL search_path TO {schema}"))
        .await
        .unwrap();
    assert_eq!(steps.apply(&tx).await.unwrap(), [1, 2]);
    let waiting = {
        let schema = schema.clone();
        tokio::spawn(async move { run(&mut second, &schema, steps).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the second waits on the lock while the first has not committed"
    );
    tx.commit().await.unwrap();
    let applied = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the second goes on once the first commits")
        .unwrap();
    assert_eq!(applied, [0; 0], "it finds both steps recorded");
    assert_eq!(history(&first, &schema).await, [1, 2]);
    first
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
