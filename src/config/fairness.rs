//! Validation of the keys that keep one client or one account from holding the API: the write
//! timeout, the cap of connections per peer address, and the write and rotation rate limits.
//! Kept apart from `config.rs`, which validates everything else.

use super::Config;

impl Config {
    /// The `api` keys that keep one client or account from holding the API: the write timeout,
    /// the cap per peer address and the write rate limits (and `oidc.rotation_rate_limit`).
    pub(super) fn validate_api_fairness(&self) -> Result<(), super::Invalid> {
        let api = &self.api;
        if api.write_timeout.0.is_zero() {
            return Err(("api.write_timeout", "must be more than 0".into()));
        }
        if api.max_connections_per_peer == 0 {
            return Err(("api.max_connections_per_peer", "must be at least 1".into()));
        }
        if api.max_connections_per_peer > api.max_connections {
            return Err((
                "api.max_connections_per_peer",
                format!(
                    "must be at most api.max_connections ({})",
                    api.max_connections
                ),
            ));
        }
        if api.write_rate_limit == 0 {
            return Err((
                "api.write_rate_limit",
                "must be at least 1 (writes per account per minute)".into(),
            ));
        }
        if api.write_burst == 0 {
            return Err(("api.write_burst", "must be at least 1".into()));
        }
        if self.oidc.rotation_rate_limit == 0 {
            return Err((
                "oidc.rotation_rate_limit",
                "must be at least 1 (rotations per account per hour)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;

    #[test]
    fn the_defaults_bound_connections_and_writes() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config.api.write_timeout.0, Duration::from_secs(10));
        assert_eq!(config.api.max_connections_per_peer, 64);
        assert_eq!(config.api.write_rate_limit, 120);
        assert_eq!(config.api.write_burst, 60);
        assert_eq!(config.oidc.rotation_rate_limit, 5);
    }

    #[test]
    fn each_bad_value_names_its_key() {
        for (toml, key) in [
            ("[api]\nwrite_timeout = \"0s\"\n", "api.write_timeout"),
            ("[api]\nwrite_timeout = \"soon\"\n", "api.write_timeout"),
            (
                "[api]\nmax_connections_per_peer = 0\n",
                "api.max_connections_per_peer",
            ),
            (
                "[api]\nmax_connections = 10\nmax_connections_per_peer = 11\n",
                "api.max_connections_per_peer",
            ),
            ("[api]\nwrite_rate_limit = 0\n", "api.write_rate_limit"),
            ("[api]\nwrite_rate_limit = -1\n", "api.write_rate_limit"),
            ("[api]\nwrite_burst = 0\n", "api.write_burst"),
            (
                "[oidc]\nrotation_rate_limit = 0\n",
                "oidc.rotation_rate_limit",
            ),
        ] {
            let err = Config::from_toml(toml).unwrap_err().to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
        // A peer may hold every connection (behind a proxy, all come from its address).
        let config =
            Config::from_toml("[api]\nmax_connections = 10\nmax_connections_per_peer = 10\n");
        assert_eq!(config.unwrap().api.max_connections_per_peer, 10);
    }
}
