//! The configuration loader: defaults, a TOML file (the input), the environment and no flags,
//! then validation. A configuration that validates converts into every role's settings.

#![no_main]

use gallery::Config;
use gallery::config::Overrides;

libfuzzer_sys::fuzz_target!(init: gallery_fuzz::init(), |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::load_toml(text, &Overrides::default()) else {
        return;
    };
    let _ = config.projections.group();
    let _ = config.accounts.account_settings();
    let _ = config.topics();
    let _ = config.registry();
    let _ = config.generation.policy();
    let _ = config.scylla.contact_points();
    let _ = config.painter_settings();
    let _ = config.query_api.api();
    let _ = config.query_api.media_url_settings();
});
