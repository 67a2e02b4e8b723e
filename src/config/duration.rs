//! Human durations in config (`"24h"`, `"90s"`, `"200ms"`), parsed strictly so a typo is a
//! start-up error naming the key rather than a silent default.

use std::time::Duration;

/// Parses `"24h"`, `"10m"`, `"1h 30m"`, `"250ms"`. A bare number is refused: its unit would be
/// a guess.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("bad duration {text:?}: {e} (write e.g. \"24h\", \"10m\", \"250ms\")"))
}

pub mod serde_duration {
    use std::time::Duration;

    use serde::{de, Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_minutes_and_millis_parse() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn a_bare_number_or_unknown_unit_is_refused() {
        assert!(parse_duration("24").is_err());
        assert!(parse_duration("3 fortnights").is_err());
    }
}
