use std::{fmt, str::FromStr};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A span of time written the way Kubernetes users write them: `500ms`, `30s`, `10m`,
/// `72h`, `1h30m`. Serialized back in the same form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// The std duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(Self)
            .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 30s, 10m or 72h"))
    }
}

impl fmt::Display for Duration {
    /// Hours, minutes, seconds and milliseconds, largest first: `72h`, `1h30m`, `500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.as_millis();
        if total == 0 {
            return f.write_str("0s");
        }
        let parts =
            [(total / 3_600_000, "h"), (total / 60_000 % 60, "m"), (total / 1_000 % 60, "s"), (total % 1_000, "ms")];
        for (value, unit) in parts.into_iter().filter(|(v, _)| *v > 0) {
            write!(f, "{value}{unit}")?;
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h|d))+$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_kubernetes_style_durations() {
        for (text, secs) in [("30s", 30), ("10m", 600), ("72h", 259_200), ("1h30m", 5_400)] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.get().as_secs(), secs, "{text}");
            assert_eq!(d.to_string(), text);
        }
        assert_eq!("500ms".parse::<Duration>().unwrap().get().as_millis(), 500);
    }

    #[test]
    fn a_bad_duration_says_how_to_write_one() {
        let err = "soon".parse::<Duration>().unwrap_err();
        assert!(err.contains("`soon`") && err.contains("30s"), "{err}");
    }
}
