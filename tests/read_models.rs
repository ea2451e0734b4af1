//! The read model of every event, produced through the HTTP commands and read back through
//! GraphQL: details, counts, the viewer's lists, comments, exhibitions' lifecycle, popularity,
//! generation jobs, pagination, the statement count of a page, and a rebuild from the log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::{App, TestEnv, future, png, post_form};
use gallery::Roles;
use gallery_schemas::Role;
use serde_json::{Value, json};

async fn send(
    app: &App,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let (status, body) = common::send(app, method, path, token, None, body).await;
    assert!((200..300).contains(&status), "{path}: {status} {body}");
    body
}

/// A draft exhibition with `n` artworks; returns its id and the artwork ids.
async fn exhibition_with(app: &App, cur: &str, title: &str, n: usize) -> (String, Vec<String>) {
    let body = send(
        app,
        "POST",
        "/v1/exhibitions",
        Some(cur),
        Some(json!({"title": title, "description": "Rooms of light", "opensAt": future(1), "closesAt": future(30)})),
    )
    .await;
    let exhibition = body["id"].as_str().unwrap().to_owned();
    let mut artworks = vec![];
    for i in 0..n {
        let title = format!("Study {i}");
        let fields = [
            ("title", title.as_str()),
            ("artist", "Claude Monet"),
            ("year", "1872"),
            ("style", "impressionism"),
            ("description", "Morning haze"),
        ];
        let (status, body) = post_form(
            app,
            &format!("/v1/exhibitions/{exhibition}/artworks"),
            cur,
            &fields,
            ("image", "a.png", &png(64, 48)),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        artworks.push(body["id"].as_str().unwrap().to_owned());
    }
    (exhibition, artworks)
}

fn data(body: Value) -> Value {
    assert!(body.get("errors").is_none(), "graphql errors: {body}");
    body["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_shows_in_its_read_model() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::SERVICES).await;
    let cur = env.token_as("cur", Role::Curator);
    let (ada, bob) = (env.token("ada"), env.token("bob"));

    let (exhibition, art) = exhibition_with(&app, &cur, "Impressions", 2).await;
    send(
        &app,
        "POST",
        &format!("/v1/exhibitions/{exhibition}/publish"),
        Some(&cur),
        None,
    )
    .await;
    let (a0, a1) = (art[0].as_str(), art[1].as_str());
    for (method, path, token) in [
        ("PUT", format!("/v1/artworks/{a0}/like"), &ada),
        ("PUT", format!("/v1/artworks/{a0}/like"), &bob),
        ("DELETE", format!("/v1/artworks/{a0}/like"), &bob),
        ("PUT", format!("/v1/artworks/{a1}/like"), &ada),
        ("PUT", format!("/v1/artworks/{a0}/favorite"), &ada),
        ("PUT", format!("/v1/artworks/{a0}/favorite"), &ada),
        ("PUT", format!("/v1/artworks/{a1}/favorite"), &bob),
        ("DELETE", format!("/v1/artworks/{a1}/favorite"), &bob),
    ] {
        send(&app, method, &path, Some(token), None).await;
    }
    for _ in 0..3 {
        send(
            &app,
            "POST",
            &format!("/v1/artworks/{a0}/views"),
            None,
            None,
        )
        .await;
    }
    send(
        &app,
        "POST",
        &format!("/v1/artworks/{a0}/views"),
        Some(&ada),
        None,
    )
    .await;
    let c1 = send(
        &app,
        "POST",
        &format!("/v1/artworks/{a0}/comments"),
        Some(&ada),
        Some(json!({"body": "So much light"})),
    )
    .await;
    let c2 = send(
        &app,
        "POST",
        &format!("/v1/artworks/{a0}/comments"),
        Some(&bob),
        Some(json!({"body": "Hazy"})),
    )
    .await;
    let c2 = c2["id"].as_str().unwrap();
    send(
        &app,
        "DELETE",
        &format!("/v1/artworks/{a0}/comments/{c2}"),
        Some(&bob),
        None,
    )
    .await;
    let job = send(
        &app,
        "POST",
        "/v1/generations",
        Some(&ada),
        Some(json!({"prompt": "a lighthouse", "style": "impressionism", "steps": 12})),
    )
    .await;
    let job = job["id"].as_str().unwrap().to_owned();
    let other = send(
        &app,
        "POST",
        "/v1/generations",
        Some(&ada),
        Some(json!({"prompt": "a harbour", "style": "impressionism"})),
    )
    .await;
    send(
        &app,
        "POST",
        &format!("/v1/generations/{job}/cancel"),
        Some(&ada),
        None,
    )
    .await;
    send(&app, "POST", "/v1/auth/register", None, Some(json!({"username": "grace", "password": "correct horse battery", "displayName": "Grace H"}))).await;
    env.wait_everything_projected().await;

    let q = "query($id: ID!) { artwork(id: $id) { id inCatalog title artist year style description
        image { key width height contentType } addedAt removed exhibition { id title status }
        stats { likes favorites comments views } likeCount viewerHasLiked viewerHasFavorited
        comments(first: 10) { edges { cursor node { id author body postedAt } } pageInfo { hasNextPage endCursor } } } }";
    let a = data(app.graphql(Some(&ada), q, json!({"id": a0})).await)["artwork"].clone();
    assert_eq!(a["title"], "Study 0");
    assert_eq!(
        (
            a["artist"].as_str(),
            a["year"].as_i64(),
            a["style"].as_str()
        ),
        (Some("Claude Monet"), Some(1872), Some("impressionism"))
    );
    assert_eq!(a["image"]["width"], 64);
    assert_eq!(a["image"]["contentType"], "image/png");
    assert!(
        a["image"]["key"]
            .as_str()
            .unwrap()
            .starts_with("images/sha256/")
    );
    assert_eq!(a["exhibition"]["id"], exhibition.as_str());
    assert_eq!(a["exhibition"]["status"], "PUBLISHED");
    assert_eq!(
        a["stats"],
        json!({"likes": 1, "favorites": 1, "comments": 1, "views": 4})
    );
    assert_eq!(
        (
            a["viewerHasLiked"].as_bool(),
            a["viewerHasFavorited"].as_bool()
        ),
        (Some(true), Some(true))
    );
    let comments = a["comments"]["edges"].as_array().unwrap();
    assert_eq!(comments.len(), 1, "the deleted comment is gone");
    assert_eq!(comments[0]["node"]["id"], c1["id"]);
    assert_eq!(comments[0]["node"]["author"], "ada");
    let b = data(app.graphql(Some(&bob), q, json!({"id": a1})).await)["artwork"].clone();
    assert_eq!(
        b["stats"],
        json!({"likes": 1, "favorites": 0, "comments": 0, "views": 0})
    );
    assert_eq!(
        (
            b["viewerHasLiked"].as_bool(),
            b["viewerHasFavorited"].as_bool()
        ),
        (Some(false), Some(false))
    );

    // The viewer's lists, newest first; generation jobs.
    let v = data(app.graphql(Some(&ada), "{ viewer { id
        likes(first: 10) { edges { node { at artwork { id } } } }
        favorites { edges { node { artwork { id title } } } }
        generations { edges { node { id status steps kind prompt degraded progress { step } result { cacheHit } } } } } }", json!({})).await)["viewer"].clone();
    let likes: Vec<&str> = v["likes"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["artwork"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(likes, vec![a1, a0], "newest first");
    assert_eq!(
        v["favorites"]["edges"][0]["node"]["artwork"]["title"],
        "Study 0"
    );
    let jobs = v["generations"]["edges"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["node"]["id"], other["id"]);
    assert_eq!(jobs[0]["node"]["status"], "REQUESTED");
    assert_eq!(jobs[1]["node"]["status"], "CANCELLED");
    assert_eq!(jobs[1]["node"]["steps"], 12);
    assert_eq!(jobs[1]["node"]["kind"], "TEXT_TO_IMAGE");
    let q = "query($id: ID!) { generation(id: $id) { id status } }";
    assert_eq!(
        data(app.graphql(Some(&ada), q, json!({"id": job})).await)["generation"]["status"],
        "CANCELLED"
    );
    assert_eq!(
        data(app.graphql(Some(&bob), q, json!({"id": job})).await)["generation"],
        Value::Null,
        "owner only"
    );

    // Popularity: likes and views of the last 24 hours.
    let p = data(
        app.graphql(
            None,
            "{ likes: popularArtworks(window: LAST_24_HOURS) { score artwork { id } }
        views: popularArtworks(window: LAST_HOUR, by: VIEWS, first: 1) { score artwork { id } } }",
            json!({}),
        )
        .await,
    );
    let by_likes: BTreeSet<(String, i64)> = p["likes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["artwork"]["id"].as_str().unwrap().to_owned(),
                x["score"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_likes, [(a0.to_owned(), 1), (a1.to_owned(), 1)].into());
    assert_eq!(p["views"], json!([{"score": 4, "artwork": {"id": a0}}]));

    // The exhibition's lifecycle.
    let q = "query($s: ExhibitionStatus) { exhibitions(status: $s) { edges { node { id title status publishedAt closedAt artworks { edges { node { id } } } } } } }";
    let published = data(app.graphql(None, q, json!({"s": "PUBLISHED"})).await);
    assert_eq!(
        published["exhibitions"]["edges"][0]["node"]["id"],
        exhibition.as_str()
    );
    assert_eq!(
        published["exhibitions"]["edges"][0]["node"]["artworks"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    send(
        &app,
        "DELETE",
        &format!("/v1/exhibitions/{exhibition}/artworks/{a1}"),
        Some(&cur),
        None,
    )
    .await;
    send(
        &app,
        "POST",
        &format!("/v1/exhibitions/{exhibition}/close"),
        Some(&cur),
        None,
    )
    .await;
    env.wait_everything_projected().await;
    assert_eq!(
        data(app.graphql(None, q, json!({"s": "PUBLISHED"})).await)["exhibitions"]["edges"],
        json!([])
    );
    let closed = data(app.graphql(None, q, json!({"s": "CLOSED"})).await)["exhibitions"]["edges"]
        [0]["node"]
        .clone();
    assert!(closed["closedAt"].is_string() && closed["publishedAt"].is_string());
    assert_eq!(
        closed["artworks"]["edges"],
        json!([{"node": {"id": a0}}]),
        "the removed artwork is gone"
    );
    let removed = data(
        app.graphql(
            None,
            "query($id: ID!) { artwork(id: $id) { removed } }",
            json!({"id": a1}),
        )
        .await,
    );
    assert_eq!(removed["artwork"]["removed"], true);

    // The registered user.
    let row = env
        .db()
        .await
        .query_one(
            "SELECT display_name, role FROM users WHERE user_id = 'grace'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("Grace H".to_owned(), "visitor".to_owned())
    );
    app.stop().await;
}

/// Every row of every read-model table, as one checksum per table.
async fn checksums(env: &TestEnv) -> Vec<(String, String)> {
    let db = env.db().await;
    let mut out = vec![];
    for table in [
        "users",
        "exhibitions",
        "artworks",
        "artwork_stats",
        "artwork_likes",
        "artwork_favorites",
        "like_buckets",
        "artwork_views",
        "view_buckets",
        "comments",
        "generation_jobs",
    ] {
        let row = db
            .query_one(&format!("SELECT count(*)::text || ':' || COALESCE(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM {table} t"), &[])
            .await
            .unwrap();
        out.push((table.to_owned(), row.get(0)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_walk_without_gaps_and_cost_a_constant_number_of_statements_and_a_rebuild_is_identical()
 {
    let mut env = TestEnv::new().await;
    // Every read below goes to the read model (no cache), so statements count what a page
    // costs whatever was read before.
    env.config.query_api.cache_capacity = 0;
    let app = env.start(Roles::SERVICES).await;
    let cur = env.token_as("cur", Role::Curator);
    let (exhibition, art) = exhibition_with(&app, &cur, "Series", 7).await;
    send(
        &app,
        "POST",
        &format!("/v1/exhibitions/{exhibition}/publish"),
        Some(&cur),
        None,
    )
    .await;
    let users: Vec<String> = (0..5).map(|i| env.token(&format!("v{i}"))).collect();
    for (i, a) in art.iter().enumerate() {
        for u in users.iter().take(i % 5 + 1) {
            send(
                &app,
                "PUT",
                &format!("/v1/artworks/{a}/like"),
                Some(u),
                None,
            )
            .await;
        }
    }
    let mut posted = BTreeSet::new();
    for i in 0..23 {
        let body = send(
            &app,
            "POST",
            &format!("/v1/artworks/{}/comments", art[0]),
            Some(&users[i % 5]),
            Some(json!({"body": format!("comment {i}")})),
        )
        .await;
        posted.insert(body["id"].as_str().unwrap().to_owned());
    }
    env.wait_everything_projected().await;

    // Walk the comments 5 at a time: every one once, in order, then no next page.
    let q = "query($id: ID!, $after: String) { artwork(id: $id) { comments(first: 5, after: $after) { edges { cursor node { id postedAt } } pageInfo { hasNextPage endCursor } } } }";
    let mut seen = vec![];
    let mut after = Value::Null;
    loop {
        let c = data(
            app.graphql(None, q, json!({"id": art[0], "after": after}))
                .await,
        )["artwork"]["comments"]
            .clone();
        for e in c["edges"].as_array().unwrap() {
            seen.push((
                time::OffsetDateTime::parse(
                    e["node"]["postedAt"].as_str().unwrap(),
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap(),
                e["node"]["id"].as_str().unwrap().to_owned(),
            ));
        }
        if !c["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = c["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen.len(), 23);
    assert_eq!(
        seen.iter()
            .map(|(_, id)| id.clone())
            .collect::<BTreeSet<_>>(),
        posted,
        "no duplicates, no gaps"
    );
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // Artworks 3 at a time, the same way.
    let q = "query($x: ID, $after: String) { artworks(first: 3, after: $after, exhibitionId: $x) { edges { node { id } } pageInfo { hasNextPage endCursor } } }";
    let mut walked = vec![];
    let mut after = Value::Null;
    loop {
        let c = data(
            app.graphql(None, q, json!({"x": exhibition, "after": after}))
                .await,
        )["artworks"]
            .clone();
        walked.extend(
            c["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["id"].as_str().unwrap().to_owned()),
        );
        if !c["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = c["pageInfo"]["endCursor"].clone();
    }
    let mut newest_first = art.clone();
    newest_first.reverse();
    assert_eq!(walked, newest_first);

    // A page of artworks with stats, flags and exhibition: the same statements for 1 or 7.
    let q = "query($n: Int) { artworks(first: $n) { edges { node { id title stats { likes comments } viewerHasLiked viewerHasFavorited exhibition { title } } } } }";
    // A DataLoader batches what arrives within 1 ms: on a machine loaded by the whole suite a
    // batch may be split in two, so a pair of measurements is taken again (at most 3 times)
    // while they differ. Without the cache, a per-artwork statement differs in every attempt.
    let mut costs = vec![];
    for _ in 0..3 {
        costs.clear();
        for n in [1, 7] {
            let before = app.query_statements();
            let page = data(app.graphql(Some(&users[0]), q, json!({"n": n})).await);
            costs.push(app.query_statements() - before);
            assert_eq!(
                page["artworks"]["edges"].as_array().unwrap().len(),
                n as usize
            );
        }
        if costs[0] == costs[1] {
            break;
        }
    }
    assert_eq!(
        costs[0], costs[1],
        "statements for 1 and 7 artworks: {costs:?}"
    );
    assert!(costs[1] <= 4, "page, stats, flags, exhibitions: {costs:?}");
    let page = data(app.graphql(Some(&users[0]), q, json!({"n": 7})).await);
    let likes: Vec<i64> = page["artworks"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["stats"]["likes"].as_i64().unwrap())
        .collect();
    assert_eq!(likes, vec![2, 1, 5, 4, 3, 2, 1]);

    // A rebuild: another database, replaying the log from offset 0, ends with the same rows.
    let rebuild = env.with_fresh_database().await;
    let projector = rebuild.start(Roles::PROJECTIONS).await;
    rebuild.wait_everything_projected().await;
    assert_eq!(checksums(&rebuild).await, checksums(&env).await);
    projector.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_stable_codes() {
    let env = TestEnv::new().await;
    let app = env.start(Roles::QUERY_API).await;
    let code = |body: &Value| {
        body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let body = app
        .graphql(None, "{ viewer { likes { edges { cursor } } } }", json!({}))
        .await;
    assert_eq!(code(&body), "UNAUTHENTICATED");
    let body = app
        .graphql(
            None,
            "{ generation(id: \"0193a3f0-0000-7000-8000-000000000000\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "UNAUTHENTICATED");
    for first in [0, 101, -1] {
        let body = app
            .graphql(
                None,
                "query($n: Int) { artworks(first: $n) { edges { cursor } } }",
                json!({"n": first}),
            )
            .await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "first: {first}");
    }
    let body = app
        .graphql(
            None,
            "{ exhibitions(after: \"not-a-cursor\") { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT");
    let body = app
        .graphql(None, "{ exhibition(id: \"nope\") { id } }", json!({}))
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT");
    let body = app
        .graphql(
            None,
            "{ artwork(id: \"a1\") { likeCount inCatalog title stats { views } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data(body)["artwork"],
        json!({"likeCount": 0, "inCatalog": false, "title": null, "stats": {"views": 0}})
    );
    app.stop().await;
}

/// A column whose type changed under the code (a schema change the reads were not told of):
/// the read fails with an error naming the column, an internal one, instead of a panic.
#[tokio::test]
async fn a_column_of_another_type_is_an_error_naming_it() {
    let env = TestEnv::new().await;
    env.db()
        .await
        .batch_execute(
            "CREATE TABLE artworks (
                 artwork_id text, exhibition_id uuid, title text, artist text, year integer,
                 style text, description text, image_key text, image_content_type text,
                 image_width bigint, image_height integer, added_by text, added_at_ms bigint,
                 removed_at_ms bigint
             );
             INSERT INTO artworks VALUES ('irises', '00000000-0000-0000-0000-000000000001',
                 'Irises', 'Van Gogh', 1889, NULL, '', 'irises.png', 'image/png', 512, 512,
                 'curator', 0, NULL);",
        )
        .await
        .unwrap();
    let read = gallery_query_api::ReadModel::new(gallery::app::pg_pool(&env.config).unwrap());
    let e = read.artworks(&["irises".to_owned()]).await.unwrap_err();
    assert!(
        matches!(
            e,
            gallery_query_api::QueryError::Column(gallery_infra::ColumnError {
                column: "image_width",
                ..
            })
        ),
        "{e:?}"
    );
    assert_eq!(e.code(), "INTERNAL");
}
