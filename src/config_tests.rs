//! The configuration as loaded: defaults, layers and every section's checks through `Config`.

use std::time::Duration;

use gallery_commands::settings::MAX_PER_MINUTE;
use gallery_commands::{GenerationPolicy, OverloadPolicy};
use gallery_gpu_workers::{DeviceChoice, TextModel};
use gallery_projections::settings::MAX_BATCH as MAX_PROJECTION_BATCH;

use super::*;

#[test]
fn defaults_are_valid() {
    assert!(Config::default().validate().is_ok());
}

#[test]
fn a_short_secret_is_refused_with_its_key() {
    let mut c = Config::default();
    c.auth.jwt_secret = Secret::new("short");
    let err = c.validate().map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err("configuration key auth.jwt_secret: must be at least 32 bytes, got 5".into())
    );
}

#[test]
fn a_bad_topic_prefix_is_refused() {
    let mut c = Config::default();
    c.kafka.topic_prefix = "bad prefix".into();
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Invalid {
            key: "kafka.topic_prefix",
            ..
        })
    ));
}

#[test]
fn projector_batches_of_no_message_or_beyond_the_bound_are_refused() {
    let mut c = Config::default();
    c.projections.max_batch = 0;
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Invalid {
            key: "projections.max_batch",
            ..
        })
    ));
    c.projections.max_batch = MAX_PROJECTION_BATCH;
    c.projections.scylla_max_batch = MAX_PROJECTION_BATCH + 1;
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Invalid {
            key: "projections.scylla_max_batch",
            ..
        })
    ));
    c.projections.scylla_max_batch = 1;
    assert!(c.validate().is_ok());
}

#[test]
fn a_producer_linger_beyond_a_second_is_refused() {
    let mut c = Config::default();
    c.kafka.producer_linger_ms = 0;
    assert!(c.validate().is_ok());
    c.kafka.producer_linger_ms = 1001;
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Invalid {
            key: "kafka.producer_linger_ms",
            ..
        })
    ));
}

#[test]
fn account_settings_default_to_15_minutes_and_30_days() {
    let s = Config::default().accounts.account_settings();
    assert_eq!(s.access_ttl, Duration::from_secs(900));
    assert_eq!(s.refresh_ttl, Duration::from_secs(30 * 86_400));
}

#[test]
fn out_of_range_account_settings_are_refused_with_their_key() {
    let mut c = Config::default();
    c.accounts.access_ttl_secs = 5;
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Invalid {
            key: "accounts.access_ttl_secs",
            ..
        })
    ));
    let mut c = Config::default();
    c.accounts.argon2_memory_kib = 1;
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Invalid {
            key: "accounts.argon2_memory_kib",
            ..
        })
    ));
}

#[test]
fn a_bad_store_url_is_refused_with_its_key() {
    let mut c = Config::default();
    c.media.store_url = "ftp://example.org/images".into();
    let err = c.validate().map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err(
            "configuration key media.store_url: \"ftp://example.org/images\" must be a \
             path, a file:// URL, an s3:// URL or memory://"
                .into()
        )
    );
}

#[test]
fn media_limits_are_validated_and_read_from_a_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let file = dir.path().join("media.toml");
    let toml = "[media]\nstore_url = \"s3://art/prod\"\n[media.limits]\nmax_side = 4096\n";
    assert!(std::fs::write(&file, toml).is_ok());
    let c = apart_from_other_variables(|| Config::load(Some(&file), &Overrides::default()));
    let c = c.unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(c.media.store_url, "s3://art/prod");
    assert_eq!(c.media.limits.max_side, 4096);
    assert_eq!(c.media.limits.min_side, 32);

    let mut bad = Config::default();
    bad.media.limits.min_side = 0;
    assert!(matches!(
        bad.validate(),
        Err(ConfigError::Invalid {
            key: "media.limits.min_side",
            ..
        })
    ));
}

#[test]
fn secrets_do_not_print() {
    let shown = format!("{:?}", Config::default());
    assert!(!shown.contains(DEV_JWT_SECRET));
    assert!(!shown.contains("gallery:gallery@"));
}

#[test]
fn query_api_defaults_to_the_documented_values_and_is_validated() {
    let q = Config::default().query_api;
    let s = q.api();
    assert_eq!((s.max_depth, s.max_complexity), (16, 500));
    assert_eq!(s.query_timeout, Duration::from_secs(10));
    assert_eq!(s.consistency_timeout, Duration::from_secs(5));
    assert_eq!(s.cache.ttl, Duration::from_secs(60));
    assert_eq!(s.persisted_queries, 1_000);
    assert_eq!(s.max_subscriptions_per_connection, 100);
    assert_eq!(s.max_websocket_connections, 10_000);
    assert_eq!(s.ws_init_timeout, Duration::from_secs(10));
    assert_eq!(
        (s.max_document_bytes, s.max_document_tokens),
        (65_536, 10_000)
    );
    assert!(s.introspection);
    for depth in [0, 33, 50] {
        let mut c = Config::default();
        c.query_api.max_depth = depth;
        assert!(
            matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "query_api.max_depth"),
            "max_depth {depth}"
        );
    }
    let mut c = Config::default();
    c.query_api.max_depth = 32;
    assert!(c.validate().is_ok());
    c.query_api.max_document_bytes = 10;
    assert!(
        matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "query_api.max_document_bytes")
    );
    for limit in [0, 10_001] {
        let mut c = Config::default();
        c.query_api.max_subscriptions_per_connection = limit;
        assert!(
            matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "query_api.max_subscriptions_per_connection"),
            "max_subscriptions_per_connection {limit}"
        );
    }
    for limit in [0, 1_000_001] {
        let mut c = Config::default();
        c.query_api.max_websocket_connections = limit;
        assert!(
            matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "query_api.max_websocket_connections"),
            "max_websocket_connections {limit}"
        );
    }
    for ms in [0, 99, 60_001] {
        let mut c = Config::default();
        c.query_api.ws_init_timeout_ms = ms;
        assert!(
            matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "query_api.ws_init_timeout_ms"),
            "ws_init_timeout_ms {ms}"
        );
    }
}

#[test]
fn media_urls_default_to_an_hour_relative_and_are_validated() {
    let c = Config::default();
    let s = c.query_api.media_url_settings();
    assert_eq!(s.ttl, Duration::from_secs(3600));
    assert_eq!(s.public_base_url, None);
    assert!(c.query_api.uses_dev_media_secret());
    assert!(!format!("{c:?}").contains(gallery_query_api::DEV_MEDIA_URL_SECRET));
    let mut c = Config::default();
    c.query_api.media_url_secret = Secret::new("short");
    let err = c.validate().map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err("configuration key query_api.media_url_secret: the media URL secret must be at least 32 bytes, got 5".into())
    );
    for bad in ["ftp://x", "https://x/?a=1", "example.org"] {
        let mut c = Config::default();
        c.query_api.public_url = bad.into();
        assert!(
            matches!(c.validate(), Err(ConfigError::Invalid { key, .. }) if key == "query_api.public_url"),
            "{bad}"
        );
    }
    let mut c = Config::default();
    c.query_api.public_url = "https://gallery.example.org".into();
    c.query_api.media_url_ttl_secs = 600;
    assert!(c.validate().is_ok());
    c.query_api.media_url_ttl_secs = 5;
    assert!(c.validate().is_err());
}

#[test]
fn limits_and_generation_default_to_the_documented_values() {
    let c = Config::default();
    assert_eq!(c.limits, RateLimits::default());
    assert_eq!(c.limits.generation_per_minute, 10);
    assert_eq!(c.generation.policy(), GenerationPolicy::default());
    assert_eq!(c.generation.overload, OverloadPolicy::Degrade);
}

#[test]
fn limits_and_generation_are_validated() {
    let mut c = Config::default();
    c.limits.auth_per_minute = MAX_PER_MINUTE + 1;
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Invalid {
            key: "limits.auth_per_minute",
            ..
        })
    ));
    let mut c = Config {
        limits: RateLimits::UNLIMITED,
        ..Config::default()
    };
    assert!(c.validate().is_ok());
    c.generation.degraded_max_side = 4;
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Invalid {
            key: "generation.degraded_max_side",
            ..
        })
    ));
}

#[test]
fn the_overload_policy_reads_from_toml() {
    let c: Result<GenerationSettings, _> = Figment::from(Toml::string(
        "backlog_threshold = 5\noverload = \"refuse\"\ndegraded_max_steps = 4\ndegraded_max_side = 128\nbacklog_interval_ms = 500",
    ))
    .extract();
    assert_eq!(c.map(|c| c.overload).ok(), Some(OverloadPolicy::Refuse));
}

#[test]
#[allow(clippy::result_large_err)] // the closure's error type is figment's own
fn only_sectioned_variables_configure_and_flags_win() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("GALLERY_STACK_DIR", "/somewhere");
        jail.set_env("GALLERY_KAFKA_PORT", "19092");
        jail.set_env("GALLERY_KAFKA__BROKERS", "env-broker:9092");
        jail.set_env("GALLERY_KAFKA__TOPIC_PREFIX", "env.");
        let from_env = Config::load(None, &Overrides::default())
            .map_err(|e| figment::Error::from(e.to_string()))?;
        assert_eq!(from_env.kafka.brokers, "env-broker:9092");
        assert_eq!(from_env.kafka.topic_prefix, "env.");
        let flags = Overrides {
            kafka: Some(KafkaOverrides {
                brokers: "flag-broker:9092".into(),
            }),
            ..Overrides::default()
        };
        let from_flags =
            Config::load(None, &flags).map_err(|e| figment::Error::from(e.to_string()))?;
        assert_eq!(from_flags.kafka.brokers, "flag-broker:9092");
        assert_eq!(from_flags.kafka.topic_prefix, "env.");
        jail.set_env("GALLERY_KAFKA__NOPE", "1");
        assert!(Config::load(None, &Overrides::default()).is_err());
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // the closure's error type is figment's own
fn the_read_store_reads_from_both_variable_names() {
    figment::Jail::expect_with(|jail| {
        let config = Config::load(None, &Overrides::default())
            .map_err(|e| figment::Error::from(e.to_string()))?;
        assert_eq!(config.read.store, ReadStore::Postgres);
        jail.set_env("GALLERY_READ_STORE", "scylla");
        let config = Config::load(None, &Overrides::default())
            .map_err(|e| figment::Error::from(e.to_string()))?;
        assert_eq!(config.read.store, ReadStore::Scylla);
        jail.set_env("GALLERY_READ__STORE", "postgres");
        let config = Config::load(None, &Overrides::default())
            .map_err(|e| figment::Error::from(e.to_string()))?;
        assert_eq!(config.read.store, ReadStore::Postgres);
        jail.set_env("GALLERY_READ__STORE", "mysql");
        assert!(Config::load(None, &Overrides::default()).is_err());
        Ok(())
    });
}

#[test]
fn scylla_settings_are_validated() {
    let mut c = Config::default();
    c.scylla.keyspace = "bad-name".into();
    let e = c.validate().map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("scylla.keyspace"), "{e}");
    let mut c = Config::default();
    c.scylla.nodes = " , ".into();
    assert!(c.validate().is_err());
    let mut c = Config::default();
    c.scylla.replication_factor = 0;
    assert!(c.validate().is_err());
    assert_eq!(
        Config::default().scylla.contact_points(),
        vec!["127.0.0.1:9042".to_owned()]
    );
}

#[test]
fn an_acknowledged_event_needs_two_replicas_when_there_are_two() {
    let mut k = Config::default().kafka;
    for (replicas, min_insync) in [(1, 1), (2, 2), (3, 2), (5, 2)] {
        k.replication_factor = replicas;
        assert_eq!(k.min_insync_replicas(), min_insync, "{replicas} replicas");
    }
}

#[test]
fn the_painter_reads_its_section_and_is_validated() {
    let c = Config::default();
    let s = c.painter_settings();
    assert_eq!(s.group, "gallery.gpu-workers");
    assert_eq!(s.transactional_id(), "gallery.painter-1");
    assert_eq!((s.threads, s.max_held), (1, 1000));
    assert_eq!(s.max_prompt_chars, gallery_schemas::Prompt::MAX_CHARS);
    assert_eq!(c.painter.device, DeviceChoice::Auto);
    let p: Result<PainterSettings, _> =
        Figment::from(Serialized::defaults(PainterSettings::default()))
            .merge(Toml::string(
                "worker_id = \"gpu-7\"\nthreads = 2\ndevice = \"cpu\"\ngroup = \"painters\"\n\
                 text_to_image = \"sdxl-turbo\"",
            ))
            .extract();
    let p = p.unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(
        (p.worker_id.as_str(), p.threads, p.device),
        ("gpu-7", 2, DeviceChoice::Cpu)
    );
    assert_eq!(p.group.as_deref(), Some("painters"));
    assert_eq!(p.text_to_image, Some(TextModel::SdxlTurbo));
    assert_eq!(Config::default().painter.text_to_image, None);
    for (key, bad) in [
        (
            "painter.worker_id",
            PainterSettings {
                worker_id: "two words".into(),
                ..PainterSettings::default()
            },
        ),
        (
            "painter.threads",
            PainterSettings {
                threads: 0,
                ..PainterSettings::default()
            },
        ),
        (
            "painter.degraded_max_side",
            PainterSettings {
                degraded_max_side: 4,
                ..PainterSettings::default()
            },
        ),
        (
            "painter.group",
            PainterSettings {
                group: Some(" ".into()),
                ..PainterSettings::default()
            },
        ),
    ] {
        let c = Config {
            painter: bad,
            ..Config::default()
        };
        assert!(
            matches!(c.validate(), Err(ConfigError::Invalid { key: k, .. }) if k == key),
            "{key}"
        );
    }
}

#[test]
fn flags_override_defaults() {
    let overrides = Overrides {
        kafka: Some(KafkaOverrides {
            brokers: "10.0.0.1:9092".into(),
        }),
        ..Overrides::default()
    };
    let c = apart_from_other_variables(|| Config::load(None, &overrides))
        .map(|c| c.kafka.brokers)
        .map_err(|e| e.to_string());
    assert_eq!(c.as_deref(), Ok("10.0.0.1:9092"));
}

/// Runs `load` while no other test has set variables: the environment is the process's, the
/// tests that set variables do it in a `figment::Jail`, and a jail holds a lock while it runs
/// (a `GALLERY_KAFKA__NOPE` set by one was seen here, failing the load).
#[allow(clippy::result_large_err)] // the closure's error type is figment's own
fn apart_from_other_variables<T>(load: impl FnOnce() -> T) -> T {
    let mut out = None;
    figment::Jail::expect_with(|_| {
        out = Some(load());
        Ok(())
    });
    out.unwrap_or_else(|| unreachable!("the jail runs its closure"))
}
