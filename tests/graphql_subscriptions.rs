//! Subscriptions over WebSocket (`graphql-transport-ws`) with a real client: counts and
//! generation jobs are pushed as soon as the projection commits their change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::TestEnv;
use common::ws::{
    Socket, close_code, connect, error_code, open, receive, refusal, send, subscribe, try_open_url,
};
use futures::{SinkExt, StreamExt};
use gallery::Roles;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stats_subscription_receives_the_new_count_of_a_like() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::SERVICES).await;
    let mut socket = connect(&app, None).await;
    subscribe(
        &mut socket,
        "1",
        "subscription($id: ID!) { artworkStats(id: $id) { likes favorites } }",
        json!({"id": "sunflowers"}),
    )
    .await;
    let now = receive(&mut socket).await;
    assert_eq!(now["type"], "next", "{now}");
    assert_eq!(
        now["payload"]["data"]["artworkStats"],
        json!({"likes": 0, "favorites": 0})
    );

    app.accept_like(&env.token("ada"), "sunflowers", true).await;
    let pushed = receive(&mut socket).await;
    assert_eq!(pushed["id"], "1");
    assert_eq!(
        pushed["payload"]["data"]["artworkStats"]["likes"], 1,
        "{pushed}"
    );

    // A like of another artwork pushes nothing here; the next one of this artwork does.
    app.accept_like(&env.token("ada"), "irises", true).await;
    app.accept_like(&env.token("bob"), "sunflowers", true).await;
    let pushed = receive(&mut socket).await;
    assert_eq!(
        pushed["payload"]["data"]["artworkStats"]["likes"], 2,
        "{pushed}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_its_requester_follows_a_generation_job() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::SERVICES).await;
    let ada = env.token("ada");
    let request_id = uuid::Uuid::new_v4().to_string();
    let job = "subscription($id: ID!) { generation(id: $id) { id status } }";

    // Subscribed before the request exists: the job comes once the read model has it.
    let mut own = connect(&app, Some(&ada)).await;
    subscribe(&mut own, "job", job, json!({"id": request_id})).await;
    let requested = app
        .graphql(
            Some(&ada),
            "mutation($input: TextToImageInput!) { requestTextToImage(input: $input) { id } }",
            json!({"input": {"prompt": "a harbour", "style": "impressionism", "requestId": request_id}}),
        )
        .await;
    assert!(requested.get("errors").is_none(), "{requested}");
    let first = receive(&mut own).await;
    assert_eq!(
        first["payload"]["data"]["generation"],
        json!({"id": request_id, "status": "REQUESTED"}),
        "{first}"
    );

    let cancelled = app
        .graphql(
            Some(&ada),
            "mutation($id: ID!) { cancelGeneration(requestId: $id) { eventId } }",
            json!({"id": request_id}),
        )
        .await;
    assert!(cancelled.get("errors").is_none(), "{cancelled}");
    let next = receive(&mut own).await;
    assert_eq!(
        next["payload"]["data"]["generation"]["status"], "CANCELLED",
        "{next}"
    );

    // Someone else is refused; nobody at all is unauthenticated.
    let mut other = connect(&app, Some(&env.token("bob"))).await;
    subscribe(&mut other, "job", job, json!({"id": request_id})).await;
    let refused = receive(&mut other).await;
    assert_eq!(error_code(&refused), "FORBIDDEN", "{refused}");
    let mut anonymous = connect(&app, None).await;
    subscribe(&mut anonymous, "job", job, json!({"id": request_id})).await;
    let refused = receive(&mut anonymous).await;
    assert_eq!(error_code(&refused), "UNAUTHENTICATED", "{refused}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_token_in_connection_init_closes_the_connection() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::QUERY_API).await;
    let mut socket = open(&app).await;
    let forged = format!("{}x", env.token("ada"));
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {forged}")}}),
    )
    .await;
    let next = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("an answer within 10 s");
    match next {
        Some(Ok(Message::Close(frame))) => {
            let frame = frame.expect("a close frame with a reason");
            // Protocol error, with the token error's message as reason.
            assert_eq!(u16::from(frame.code), 1002, "{frame:?}");
            assert_eq!(frame.reason.as_str(), "token is invalid");
        }
        None | Some(Err(_)) => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_any_document_closes_the_connection_unread() {
    let mut env = TestEnv::new().await;
    env.config.query_api.max_document_bytes = 4_096;
    let app = env.start(Roles::QUERY_API).await;

    // Within the document budget's reach: a refusal with its code, the connection kept.
    let mut socket = connect(&app, None).await;
    let long = format!(
        "subscription {{ artworkStats(id: \"a\") {{ likes }} }} #{}",
        "x".repeat(8_000)
    );
    subscribe(&mut socket, "1", &long, json!({})).await;
    let refused = receive(&mut socket).await;
    assert_eq!(error_code(&refused), "QUERY_TOO_LARGE", "{refused}");

    // A message far beyond any document (4 KiB + the envelope's 64 KiB): the WebSocket layer
    // closes the connection (1009, message too big) instead of buffering it whole.
    let huge = format!(
        "subscription {{ artworkStats(id: \"a\") {{ likes }} }} #{}",
        "x".repeat(1 << 20)
    );
    let message = json!({"id": "2", "type": "subscribe", "payload": {"query": huge}});
    // The server may close while the client is still writing the megabyte: then the write
    // itself fails (reset or broken pipe), which is the same answer seen earlier.
    if let Err(error) = socket.send(Message::Text(message.to_string().into())).await {
        use tokio_tungstenite::tungstenite::Error;
        match error {
            Error::Io(_) | Error::ConnectionClosed | Error::AlreadyClosed => {}
            other => panic!("sending the large message failed unexpectedly: {other:?}"),
        }
    } else {
        expect_close_1009(&mut socket).await;
    }
    // The server goes on serving others.
    let mut other = connect(&app, None).await;
    subscribe(&mut other, "3", &long, json!({})).await;
    assert_eq!(error_code(&receive(&mut other).await), "QUERY_TOO_LARGE");
    app.stop().await;
}

/// Reads until the connection closes, with 1009 (message too big) if it says why.
async fn expect_close_1009(socket: &mut Socket) {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an answer within 10 s");
        match next {
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code));
                assert_eq!(code, Some(1009), "message too big");
                break;
            }
            None | Some(Err(_)) => break,
            // The end of the first subscription.
            Some(Ok(Message::Text(text))) if text.contains("\"id\":\"1\"") => {}
            other => panic!("expected the connection to close, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_of_one_artwork_share_one_read_per_change() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::SERVICES).await;
    let query = "subscription($id: ID!) { artworkStats(id: $id) { likes } }";
    const WATCHERS: usize = 30;
    let mut sockets = Vec::new();
    for c in 0..3 {
        let mut socket = connect(&app, None).await;
        for s in 0..WATCHERS / 3 {
            let id = format!("{c}-{s}");
            subscribe(&mut socket, &id, query, json!({"id": "sunflowers"})).await;
        }
        for _ in 0..WATCHERS / 3 {
            let now = receive(&mut socket).await;
            assert_eq!(now["payload"]["data"]["artworkStats"]["likes"], 0, "{now}");
        }
        sockets.push(socket);
    }
    // One more subscriber elsewhere, so the change is not the only thing followed.
    let mut other = connect(&app, None).await;
    subscribe(&mut other, "irises", query, json!({"id": "irises"})).await;
    receive(&mut other).await;

    let before = app.query_statements();
    app.accept_like(&env.token("ada"), "sunflowers", true).await;
    for socket in &mut sockets {
        for _ in 0..WATCHERS / 3 {
            let pushed = receive(socket).await;
            assert_eq!(
                pushed["payload"]["data"]["artworkStats"]["likes"], 1,
                "{pushed}"
            );
        }
    }
    let reads = app.query_statements() - before;
    // One read per committed change of the artwork (a like may commit in one or two batches),
    // not one per subscriber.
    assert!(
        reads <= 3,
        "{reads} reads for one like seen by {WATCHERS} subscribers"
    );
    app.stop().await;
}

/// Reads messages until none comes for a second (at most `most`); returns them.
async fn drain(socket: &mut Socket, most: usize) -> Vec<Value> {
    let mut read = Vec::new();
    while read.len() < most {
        match common::ws::receive_within(socket, Duration::from_secs(1)).await {
            Some(message) => read.push(message),
            None => break,
        }
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_runs_at_most_its_limit_of_subscriptions_and_keeps_the_others() {
    const LIMIT: usize = 3;
    let mut env = TestEnv::new().await;
    env.config.query_api.max_subscriptions_per_connection = LIMIT;
    let app = env.start(Roles::SERVICES).await;
    let stats = "subscription($id: ID!) { artworkStats(id: $id) { likes } }";
    let mut socket = connect(&app, None).await;
    for i in 0..LIMIT {
        subscribe(
            &mut socket,
            &format!("s{i}"),
            stats,
            json!({"id": format!("art-{i}")}),
        )
        .await;
    }
    for _ in 0..LIMIT {
        let now = receive(&mut socket).await;
        assert_eq!(now["payload"]["data"]["artworkStats"]["likes"], 0, "{now}");
    }

    // One more is refused on its own: an error with its code, then its end.
    subscribe(&mut socket, "extra", stats, json!({"id": "art-0"})).await;
    let refused = receive(&mut socket).await;
    assert_eq!(refused["id"], "extra", "{refused}");
    assert_eq!(error_code(&refused), "TOO_MANY_SUBSCRIPTIONS", "{refused}");
    assert!(refused["payload"]["data"].is_null(), "{refused}");
    assert_eq!(
        receive(&mut socket).await,
        json!({"id": "extra", "type": "complete"})
    );

    // The connection and its subscriptions go on: a like of art-0 is pushed to s0.
    app.accept_like(&env.token("ada"), "art-0", true).await;
    let pushed = receive(&mut socket).await;
    assert_eq!(pushed["id"], "s0", "{pushed}");
    assert_eq!(pushed["payload"]["data"]["artworkStats"]["likes"], 1);

    // The limit is the connection's: another one has places of its own.
    let mut other = connect(&app, None).await;
    for i in 0..LIMIT {
        subscribe(&mut other, &format!("o{i}"), stats, json!({"id": "art-0"})).await;
        let now = receive(&mut other).await;
        assert_eq!(now["payload"]["data"]["artworkStats"]["likes"], 1, "{now}");
    }

    // A completed subscription frees its place.
    send(&mut socket, json!({"id": "s1", "type": "complete"})).await;
    assert_eq!(
        receive(&mut socket).await,
        json!({"id": "s1", "type": "complete"})
    );
    subscribe(&mut socket, "s3", stats, json!({"id": "art-3"})).await;
    let now = receive(&mut socket).await;
    assert_eq!(now["id"], "s3", "{now}");
    assert_eq!(now["payload"]["data"]["artworkStats"]["likes"], 0, "{now}");

    // A flood of subscribe and complete pairs, with one place free: each takes it for a
    // moment and gives it back, none keeps it.
    send(&mut socket, json!({"id": "s2", "type": "complete"})).await;
    assert_eq!(receive(&mut socket).await["id"], "s2");
    const FLOOD: usize = 500;
    for i in 0..FLOOD {
        let id = format!("f{i}");
        subscribe(&mut socket, &id, stats, json!({"id": "art-5"})).await;
        send(&mut socket, json!({"id": id, "type": "complete"})).await;
    }
    let answers = drain(&mut socket, 3 * FLOOD).await;
    let refused = answers
        .iter()
        .filter(|m| error_code(m) == "TOO_MANY_SUBSCRIPTIONS")
        .count();
    assert_eq!(refused, 0, "one place was free for each: {answers:?}");
    assert!(
        answers.iter().all(|m| error_code(m).is_empty()),
        "{answers:?}"
    );
    // Two running (s0, s3): one more is taken, the next refused, and after a complete taken.
    subscribe(&mut socket, "s4", stats, json!({"id": "art-4"})).await;
    let now = receive(&mut socket).await;
    assert_eq!((&now["id"], &now["type"]), (&json!("s4"), &json!("next")));
    assert!(error_code(&now).is_empty(), "{now}");
    subscribe(&mut socket, "s5", stats, json!({"id": "art-5"})).await;
    let refused = receive(&mut socket).await;
    assert_eq!(error_code(&refused), "TOO_MANY_SUBSCRIPTIONS", "{refused}");
    assert_eq!(receive(&mut socket).await["type"], "complete");
    send(&mut socket, json!({"id": "s0", "type": "complete"})).await;
    assert_eq!(receive(&mut socket).await["id"], "s0");
    subscribe(&mut socket, "s6", stats, json!({"id": "art-0"})).await;
    let now = receive(&mut socket).await;
    assert_eq!(now["payload"]["data"]["artworkStats"]["likes"], 1, "{now}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_connection_init_is_closed_with_4408_after_the_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let mut env = TestEnv::new().await;
    env.config.query_api.ws_init_timeout_ms = 300;
    let app = env.start(Roles::QUERY_API).await;
    let opened = std::time::Instant::now();
    let mut silent = open(&app).await;
    let mut initialised = connect(&app, None).await;
    let code = close_code(&mut silent, Duration::from_secs(10)).await;
    assert_eq!(code, Ok(Some(4408)), "connection initialisation timeout");
    assert!(
        opened.elapsed() >= TIMEOUT,
        "closed after {:?}",
        opened.elapsed()
    );

    // One that sent `connection_init` in time is kept past the timeout, and served.
    tokio::time::sleep(2 * TIMEOUT).await;
    subscribe(
        &mut initialised,
        "1",
        "subscription { artworkStats(id: \"a1\") { likes } }",
        json!({}),
    )
    .await;
    let now = receive(&mut initialised).await;
    assert_eq!(now["payload"]["data"]["artworkStats"]["likes"], 0, "{now}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_beyond_the_process_limit_are_refused_with_503_until_one_ends() {
    const LIMIT: usize = 3;
    const EXTRA: usize = 2;
    let mut env = TestEnv::new().await;
    env.config.query_api.max_websocket_connections = LIMIT;
    let app = env.start(Roles::QUERY_API).await;
    let stats = "subscription { artworkStats(id: \"a1\") { likes } }";
    let mut sockets = Vec::new();
    for i in 0..LIMIT {
        let mut socket = connect(&app, None).await;
        subscribe(&mut socket, &format!("s{i}"), stats, json!({})).await;
        let now = receive(&mut socket).await;
        assert_eq!(now["payload"]["data"]["artworkStats"]["likes"], 0, "{now}");
        sockets.push(socket);
    }

    // Beyond the limit: refused at the upgrade, with a status, a delay and a code.
    for _ in 0..EXTRA {
        let Err(error) = try_open_url(&app.graphql_url()).await else {
            panic!("a connection beyond the limit was accepted");
        };
        assert_eq!(
            refusal(&error),
            Some((503, "5".to_owned(), "TOO_MANY_CONNECTIONS".to_owned())),
            "{error:?}"
        );
    }

    // The connections held go on serving.
    for (i, socket) in sockets.iter_mut().enumerate() {
        subscribe(socket, &format!("t{i}"), stats, json!({})).await;
        let now = receive(socket).await;
        assert_eq!(now["id"], format!("t{i}"), "{now}");
    }

    // One ends: its place is free for the next (once the server has seen it go).
    let mut leaving = sockets.pop().unwrap();
    leaving.close(None).await.unwrap();
    while let Some(Ok(_)) = leaving.next().await {}
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut next = loop {
        match try_open_url(&app.graphql_url()).await {
            Ok(socket) => break socket,
            Err(error) => {
                assert_eq!(refusal(&error).map(|r| r.0), Some(503), "{error:?}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "no place freed within 10 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    send(&mut next, json!({"type": "connection_init", "payload": {}})).await;
    assert_eq!(receive(&mut next).await["type"], "connection_ack");
    subscribe(&mut next, "n", stats, json!({})).await;
    let now = receive(&mut next).await;
    assert_eq!(now["payload"]["data"]["artworkStats"]["likes"], 0, "{now}");
    // And the limit holds again.
    let error = try_open_url(&app.graphql_url()).await.err();
    assert_eq!(
        error.as_ref().and_then(refusal).map(|r| r.0),
        Some(503),
        "{error:?}"
    );
    app.stop().await;
}
