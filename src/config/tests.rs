//! The configuration's tests: layering, validation, and the messages that name the key.

use std::time::Duration;

use super::*;

#[test]
fn defaults_load_and_match_the_contract() {
    let config = Config::from_toml("").expect("defaults are valid");
    assert_eq!(config.amqp.prefix, "webhooks");
    assert_eq!(config.amqp.prefetch, 256);
    assert_eq!(config.api.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.delivery.retry_schedule.len(), 10);
    assert_eq!(config.delivery.timeout.0, Duration::from_secs(30));
    assert_eq!(config.delivery.attempt_deadline(), Duration::from_secs(45));
    assert_eq!(config.api.header_read_timeout.0, Duration::from_secs(10));
    assert_eq!(config.api.max_connections, 1024);
    assert_eq!(config.signature.header, "X-Middesk-Signature-256");
    assert_eq!(config.registry.refresh.0, Duration::from_secs(5));
    assert_eq!(config.registry.full_reload.0, Duration::from_secs(600));
    assert!(!config.delivery.allow_http);
}

#[test]
fn an_unknown_key_is_named() {
    let err = Config::from_toml("[amqp]\nprefetchh = 3\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("prefetchh"), "{err}");
}

#[test]
fn metrics_listen_is_empty_or_an_address_other_than_listen() {
    let config = Config::from_toml("").unwrap();
    assert_eq!(config.api.metrics_address(), Ok(None));
    let config = Config::from_toml("[api]\nmetrics_listen = \"0.0.0.0:9090\"\n").unwrap();
    assert_eq!(
        config.api.metrics_address(),
        Ok(Some("0.0.0.0:9090".parse().unwrap()))
    );
    for bad in ["localhost", "9090", "127.0.0.1:8080"] {
        let err = Config::from_toml(&format!("[api]\nmetrics_listen = \"{bad}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("api.metrics_listen"), "{bad}: {err}");
    }
}

#[test]
fn a_bad_duration_names_the_key() {
    let err = Config::from_toml("[delivery]\ntimeout = \"soon\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("delivery.timeout"), "{err}");
    assert!(err.contains("soon"), "{err}");
}

#[test]
fn an_attempt_deadline_below_the_request_timeout_is_refused() {
    let err = Config::from_toml("[delivery]\ntimeout = \"10s\"\nattempt_deadline = \"5s\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("delivery.attempt_deadline"), "{err}");
    assert!(err.contains("10s"), "{err}");
    let config = Config::from_toml("[delivery]\ntimeout = \"10s\"\nattempt_deadline = \"10s\"\n");
    assert_eq!(
        config.unwrap().delivery.attempt_deadline(),
        Duration::from_secs(10)
    );
    // Unset, it follows the timeout.
    let config = Config::from_toml("[delivery]\ntimeout = \"60s\"\n").unwrap();
    assert_eq!(config.delivery.attempt_deadline(), Duration::from_secs(75));
}

#[test]
fn api_connection_limits_must_be_positive() {
    let err = Config::from_toml("[api]\nmax_connections = 0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("api.max_connections"), "{err}");
    let err = Config::from_toml("[api]\nheader_read_timeout = \"0s\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("api.header_read_timeout"), "{err}");
}

#[test]
fn broker_robustness_keys_are_validated_by_name() {
    for (toml, key) in [
        ("[amqp]\ndelivery_limit = 0\n", "amqp.delivery_limit"),
        ("[amqp]\nconfirm_timeout = \"0s\"\n", "amqp.confirm_timeout"),
        (
            "[amqp]\nconfirm_timeout = \"10s\"\nsettle_timeout = \"5s\"\n",
            "amqp.settle_timeout",
        ),
        (
            "[delivery]\nmax_in_flight_per_event = 0\n",
            "delivery.max_in_flight_per_event",
        ),
        ("[delivery]\nfan_out_batch = 0\n", "delivery.fan_out_batch"),
        // Its ids would take more than half the frame the worker asks for.
        (
            "[delivery]\nfan_out_batch = 201\n",
            "delivery.fan_out_batch",
        ),
    ] {
        let err = Config::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
    let config = Config::from_toml("").unwrap();
    assert!(config.shutdown.grace.0 > config.delivery.timeout.0 * 2);
    assert_eq!(config.delivery.fan_out_batch, 100);
}

#[test]
fn a_token_listed_for_two_accounts_is_refused() {
    let hash = "a".repeat(64);
    let toml = format!(
        "[[api.tokens]]\naccount_id = \"a\"\ntoken_sha256 = \"{hash}\"\n\
         [[api.tokens]]\naccount_id = \"b\"\ntoken_sha256 = \"{hash}\"\n"
    );
    let err = Config::from_toml(&toml).unwrap_err().to_string();
    assert!(err.contains("api.tokens") && err.contains("twice"), "{err}");
}

#[test]
fn a_bad_value_names_the_key() {
    let err = Config::from_toml("[amqp]\nurl = \"http://x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("amqp.url"), "{err}");
    let err = Config::from_toml("[database]\nencryption_key = \"abc\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("database.encryption_key"), "{err}");
}

#[test]
fn decryption_keys_are_checked_by_entry_and_need_an_encryption_key() {
    let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let config = Config::from_toml(&format!(
        "[database]\nencryption_key = \"{key}\"\ndecryption_keys = [\"{key}\"]\n"
    ))
    .unwrap();
    assert_eq!(config.decryption_keys(), [[1u8; 32]]);
    let err = Config::from_toml(&format!(
        "[database]\nencryption_key = \"{key}\"\ndecryption_keys = [\"{key}\", \"c2hvcnQ=\"]\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("database.decryption_keys"), "{err}");
    assert!(
        err.contains("entry 2") && err.contains("32 bytes, not 5"),
        "{err}"
    );
    assert!(
        !err.contains("c2hvcnQ="),
        "the value is not repeated: {err}"
    );
    let err = Config::from_toml(&format!("[database]\ndecryption_keys = [\"{key}\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("database.decryption_keys") && err.contains("database.encryption_key"),
        "{err}"
    );
}

#[test]
#[allow(clippy::result_large_err)] // figment::Jail's signature
fn environment_overrides_name_the_variable_on_error() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("WEBHOOK_WORKER__AMQP__PREFETCH", "many");
        let err = Config::load(None).unwrap_err().to_string();
        assert!(err.contains("amqp.prefetch"), "{err}");
        assert!(err.contains("WEBHOOK_WORKER__AMQP__PREFETCH"), "{err}");
        assert!(
            err.contains("must be a whole number from 0 to 65535, not the text \"many\""),
            "{err}"
        );
        jail.set_env("WEBHOOK_WORKER__AMQP__PREFETCH", "7");
        assert_eq!(Config::load(None).unwrap().amqp.prefetch, 7);
        Ok(())
    });
}

#[test]
fn removed_delivery_keys_are_refused_by_name() {
    for key in ["max_in_flight_per_webhook = 16", "park_after = \"250ms\""] {
        let err = Config::from_toml(&format!("[delivery]\n{key}\n"))
            .unwrap_err()
            .to_string();
        let name = key.split(' ').next().unwrap_or_default();
        assert!(err.contains(&format!("delivery.{name}")), "{err}");
        assert!(err.contains("removed"), "{err}");
    }
}

#[test]
fn endpoint_health_defaults_and_bounds() {
    let config = Config::from_toml("").unwrap();
    assert_eq!(
        config.delivery.disable_after.0,
        Duration::from_secs(5 * 86_400)
    );
    assert_eq!(config.delivery.park_delay.0, Duration::from_secs(5));
    let never = Config::from_toml("[delivery]\ndisable_after = \"0s\"").unwrap();
    assert!(never.delivery.disable_after.0.is_zero());
    let err = Config::from_toml("[delivery]\nconcurrency_min = 8\nconcurrency_initial = 4")
        .unwrap_err()
        .to_string();
    assert!(err.contains("delivery.concurrency_initial"), "{err}");
}

#[test]
fn the_amqp_url_is_not_printed_by_debug() {
    let config = Config::from_toml("").unwrap();
    assert!(!format!("{config:?}").contains("guest:guest"));
}

#[test]
fn a_duration_longer_than_ten_years_is_refused_naming_the_key() {
    for (toml, key) in [
        ("[delivery]\ntimeout = \"1000y\"\n", "delivery.timeout"),
        (
            "[delivery]\nretry_schedule = [\"5s\", \"11y\"]\n",
            "delivery.retry_schedule",
        ),
    ] {
        let err = Config::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
        assert!(err.contains("longer than the longest"), "{err}");
    }
    let config = Config::from_toml("[delivery_log]\nretention = \"3650d\"\n").unwrap();
    assert_eq!(config.delivery_log.retention.0, MAX_DURATION);
}

#[test]
#[allow(clippy::result_large_err)] // figment::Jail's signature
fn a_file_is_named_as_given_in_type_errors_and_in_validation_errors_alike() {
    figment::Jail::expect_with(|jail| {
        std::fs::create_dir(jail.directory().join("conf")).map_err(|e| e.to_string())?;
        jail.create_file("conf/typed.toml", "[amqp]\nprefetch = \"lots\"\n")?;
        jail.create_file(
            "conf/invalid.toml",
            "[delivery]\ntimeout = \"30s\"\nattempt_deadline = \"10s\"\n",
        )?;
        for (file, key) in [
            ("conf/typed.toml", "amqp.prefetch"),
            ("conf/invalid.toml", "delivery.attempt_deadline"),
        ] {
            let err = Config::load(Some(std::path::Path::new(file)))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("key `{key}` (from file {file})")),
                "{err}"
            );
        }
        Ok(())
    });
}

#[test]
fn an_address_error_shows_the_form_expected() {
    let cases = [
        (
            "[api]\nlisten = \"localhost8080\"\n",
            "api.listen",
            "e.g. 127.0.0.1:8080",
        ),
        (
            "[api]\nmetrics_listen = \"9090\"\n",
            "api.metrics_listen",
            "e.g. 0.0.0.0:9090",
        ),
        (
            "[amqp]\nurl = \"127.0.0.1:5672\"\n",
            "amqp.url",
            "e.g. amqp://guest:guest@127.0.0.1:5672/%2f",
        ),
        (
            "[database]\nurl = \"data/webhook-worker.db\"\n",
            "database.url",
            "e.g. sqlite://data/webhook-worker.db or postgres://",
        ),
    ];
    for (toml, key, form) in cases {
        let err = Config::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains(key), "{toml}: {err}");
        assert!(err.contains(form), "{toml}: {err}");
    }
}

#[test]
fn a_prefix_with_other_characters_is_refused_as_it_is_read() {
    let err = Config::from_toml("[amqp]\nprefix = \"web hooks\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("amqp.prefix") && err.contains("letters, digits"),
        "{err}"
    );
    assert!(QueuePrefix::parse("").is_err());
    assert_eq!(&*QueuePrefix::parse("whw-1.a_b").unwrap(), "whw-1.a_b");
}

#[test]
fn the_keys_never_show_in_debug_output() {
    let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let config = Config::from_toml(&format!(
        "[database]\nencryption_key = \"{key}\"\ndecryption_keys = [\"{key}\"]\n"
    ))
    .unwrap();
    let shown = format!("{:?}", config.database);
    assert!(!shown.contains(key) && !shown.contains("[1, 1"), "{shown}");
    assert_eq!(config.encryption_key(), Some([1u8; 32]));
}

#[test]
#[allow(clippy::result_large_err)] // figment::Jail's signature
fn amqp_url_takes_a_list_in_toml_or_comma_separated_in_the_environment() {
    let config = Config::from_toml(
        "[amqp]\nurl = [\"amqp://g:g@127.0.0.1:5701/%2f\", \"amqp://g:g@127.0.0.1:5702/%2f\"]\n",
    )
    .unwrap();
    assert_eq!(config.amqp.url.len(), 2);
    figment::Jail::expect_with(|jail| {
        let nodes = "amqp://g:g@127.0.0.1:5701/%2f,amqp://g:g@127.0.0.1:5702/%2f,\
                     amqp://g:g@127.0.0.1:5703/%2f";
        jail.set_env("WEBHOOK_WORKER__AMQP__URL", nodes);
        let config = Config::load(None).unwrap();
        let urls: Vec<_> = config.amqp.url.iter().map(|u| u.expose()).collect();
        assert_eq!(urls, nodes.split(',').collect::<Vec<_>>());
        jail.set_env(
            "WEBHOOK_WORKER__AMQP__URL",
            "amqp://g:g@127.0.0.1:5701/%2f,http://g:hunter2@127.0.0.1:5702",
        );
        let err = Config::load(None).unwrap_err().to_string();
        assert!(err.contains("amqp.url") && err.contains("entry 2"), "{err}");
        assert!(
            err.contains("WEBHOOK_WORKER__AMQP__URL") && !err.contains("hunter2"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn a_bad_entry_of_the_amqp_url_list_is_named_by_number() {
    let err = Config::from_toml("[amqp]\nurl = [\"amqp://a/%2f\", \"http://u:hunter2@b\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("amqp.url") && err.contains("entry 2 of 2"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let err = Config::from_toml("[amqp]\nurl = []\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least one node"), "{err}");
}
