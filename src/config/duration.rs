//! Durations as configuration writes them (`"500ms"`, `"30s"`, `"5m"`), checked when read.

use std::time::Duration;

use serde::Deserialize;

/// A duration written the human way in configuration: `"500ms"`, `"30s"`, `"5m"`, `"3h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// The longest duration any setting takes. Far beyond every sensible value (a retention of years,
/// a retry days away), and short enough that adding it to a clock or a timestamp cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write e.g. \"500ms\", \"30s\", \"5m\""
            ))
        })?;
        if duration > MAX_DURATION {
            return Err(serde::de::Error::custom(format!(
                "duration {text:?} is longer than the longest a setting takes, 10 years"
            )));
        }
        Ok(HumanDuration(duration))
    }
}

impl From<HumanDuration> for Duration {
    fn from(value: HumanDuration) -> Self {
        value.0
    }
}
