//! The command service held to its OpenAPI document by a property-based client that knows
//! nothing else of it: schemathesis (from PyPI, installed by `scripts/install-deps`) generates
//! requests from the document and fails on any undocumented status, any server error, any
//! response that breaks its schema or content type, and any schema-valid request refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::TestEnv;
use gallery::Roles;
use gallery_commands::RateLimits;
use gallery_schemas::Role;
use serde_json::json;

/// Test cases per operation and phase: enough to cross every rule of the document, few
/// enough to stay within a minute or two on two cores.
const EXAMPLES: &str = "60";
/// Longest the run may take before the test fails.
const BUDGET: Duration = Duration::from_secs(300);

/// The `st` command: `GALLERY_SCHEMATHESIS`, else the virtualenv `scripts/install-deps` makes
/// among the stack's downloads.
fn schemathesis() -> PathBuf {
    if let Some(st) = std::env::var_os("GALLERY_SCHEMATHESIS") {
        return PathBuf::from(st);
    }
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dist = var("GALLERY_STACK_DIST")
        .or_else(|| var("GALLERY_STACK_DIR").map(|d| d.join("dist")))
        .or_else(|| {
            var("XDG_CACHE_HOME")
                .or_else(|| var("HOME").map(|h| h.join(".cache")))
                .map(|cache| cache.join("gallery/stack/dist"))
        })
        .unwrap_or_default();
    dist.join("schemathesis/venv/bin/st")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_command_service_answers_as_its_openapi_document_says() {
    let st = schemathesis();
    assert!(
        st.exists(),
        "schemathesis is not installed at {} (scripts/install-deps installs it)",
        st.display()
    );
    let mut env = TestEnv::new().await;
    // Generated requests come fast: no quota, and cheap password hashes.
    env.config.limits = RateLimits::UNLIMITED;
    env.config.accounts.argon2_memory_kib = 8;
    env.config.accounts.argon2_iterations = 1;
    let app = env.start(Roles::COMMANDS).await;
    let admin = env.token_as("schemathesis", Role::Admin);

    // An exhibition with an artwork, for the operations on one.
    let created = app
        .http
        .post(app.commands_url("/v1/exhibitions"))
        .bearer_auth(&admin)
        .json(
            &json!({"title": "Generated", "opensAt": "2030-01-01T00:00:00Z",
                      "closesAt": "2031-01-01T00:00:00Z"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    let body: serde_json::Value = created.json().await.unwrap();
    let exhibition = body["id"].as_str().unwrap().to_owned();
    let (status, body) = common::post_form(
        &app,
        &format!("/v1/exhibitions/{exhibition}/artworks"),
        &admin,
        &[("title", "Sunflowers"), ("artist", "Vincent")],
        ("image", "sunflowers.png", &common::png(64, 64)),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    let base = app.commands_url("");
    let hooks = common::repo_dir().join("tests/openapi");
    let report = tempfile::tempdir().unwrap();
    let mut run = tokio::process::Command::new(&st);
    run.arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--url", &base])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,positive_data_acceptance",
        ])
        .args(["--mode", "all"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", EXAMPLES])
        // Reproducible in CI: the same cases every run.
        .args(["--seed", "20261205", "--generation-database", "none"])
        .args(["--workers", "2", "--request-timeout", "30", "--no-color"])
        .args(["--header", &format!("Authorization: Bearer {admin}")])
        .args(["--report-dir"])
        .arg(report.path())
        // Its caches and reports stay out of the checkout.
        .current_dir(report.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &hooks)
        .env("GALLERY_TEST_EXHIBITION", &exhibition)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = std::time::Instant::now();
    let output = tokio::time::timeout(BUDGET, run.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran longer than {BUDGET:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "schemathesis took {:?}:\n{stdout}\n{stderr}",
        started.elapsed()
    );
    assert!(
        output.status.success(),
        "schemathesis found the server and its document disagreeing:\n{stdout}\n{stderr}"
    );
    app.stop().await;
}
