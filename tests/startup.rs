//! Starting and watching roles: roles started together on a fresh deployment all come up, and a
//! role that ends on its own stops its process with its name and cause.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::TestEnv;
use gallery::Roles;
use gallery::supervise::RoleFailure;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_started_at_once_on_a_fresh_deployment_all_come_up() {
    // Several rounds, each on a fresh topic prefix (fresh registry subjects) and database:
    // every role of each round registers every schema and sets every rule at the same moment.
    for round in 0..3 {
        let env = TestEnv::new().await;
        let roles = [
            Roles::COMMANDS,
            Roles::COMMANDS,
            Roles::QUERY_API,
            Roles::QUERY_API,
            Roles::PROJECTIONS,
            Roles::COMMANDS,
        ];
        let started =
            futures::future::join_all(roles.map(|r| gallery::start(&env.config, r))).await;
        let mut running = Vec::new();
        for (i, s) in started.into_iter().enumerate() {
            match s {
                Ok(r) => running.push(r),
                Err(e) => panic!(
                    "round {round}: role {i} could not start: {:?}",
                    anyhow::Error::from(e)
                ),
            }
        }
        for r in running {
            r.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_ends_on_its_own_stops_the_process_naming_it() {
    let env = TestEnv::new().await;
    let mut running = gallery::start(&env.config, Roles::COMMANDS).await.unwrap();
    let addr = running.commands_addr.unwrap();

    // Healthy roles are no failure.
    let waited = tokio::time::timeout(Duration::from_secs(2), running.failed()).await;
    assert!(waited.is_err(), "a healthy role was reported: {waited:?}");

    // One more role of the process, made to fail the way a bug does.
    running.supervise("saboteur", async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at = std::hint::black_box(7_usize);
        panic!("index {at} out of range")
    });
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        gallery::app::run_until_stopped(running, std::future::pending()),
    )
    .await
    .expect("the process stops when a role fails");
    match outcome {
        Err(RoleFailure::Panicked { role, message }) => {
            assert_eq!(role, "saboteur");
            assert_eq!(message, "index 7 out of range");
        }
        other => panic!("expected the saboteur's panic, got {other:?}"),
    }
    // The other roles were stopped with it.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the command service still listens"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_stops_every_role_cleanly() {
    let env = TestEnv::new().await;
    let running = gallery::start(&env.config, Roles::COMMANDS).await.unwrap();
    let addr = running.commands_addr.unwrap();
    let outcome =
        gallery::app::run_until_stopped(running, tokio::time::sleep(Duration::from_millis(200)))
            .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
