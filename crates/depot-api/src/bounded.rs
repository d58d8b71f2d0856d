//! Integers the registry stores as SQL `BIGINT`: a request may not carry one past `i64::MAX`,
//! which would otherwise wrap to a negative number in the database.

use serde::{Deserialize, Deserializer};

/// The largest revision (or id) the registry can store.
pub const MAX: u64 = i64::MAX as u64;

/// A revision: refused past [`MAX`] with an error that names the limit. A JSON number written
/// with a fraction of zero (`3.0`) is the integer it equals, as JSON Schema's `integer` says.
pub fn revision<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = deserializer.deserialize_any(Integer)?;
    if value > MAX {
        return Err(serde::de::Error::custom(format!("{value} is out of range: a revision is at most {MAX}")));
    }
    Ok(value)
}

/// An optional revision, as [`revision`].
pub fn revision_opt<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Bounded(#[serde(deserialize_with = "revision")] u64);
    Ok(Option::<Bounded>::deserialize(deserializer)?.map(|Bounded(value)| value))
}

/// A count that fits in 32 bits (hosts), read as [`revision`] reads it.
pub fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let value = deserializer.deserialize_any(Integer)?;
    u32::try_from(value).map_err(|_| serde::de::Error::custom(format!("{value} is out of range: at most {}", u32::MAX)))
}

/// A map of non-negative integers (an agent's timings), each as [`revision`] reads it.
pub fn integers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<std::collections::BTreeMap<String, u64>, D::Error> {
    #[derive(Deserialize)]
    struct Bounded(#[serde(deserialize_with = "revision")] u64);
    let map = std::collections::BTreeMap::<String, Bounded>::deserialize(deserializer)?;
    Ok(map.into_iter().map(|(key, Bounded(value))| (key, value)).collect())
}

/// A non-negative integer from a JSON integer, or from a number with no fraction; a string
/// (a query parameter) is parsed.
struct Integer;

impl serde::de::Visitor<'_> for Integer {
    type Value = u64;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a non-negative integer")
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<u64, E> {
        Ok(value)
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<u64, E> {
        u64::try_from(value).map_err(|_| E::custom(format!("{value} is negative")))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<u64, E> {
        if value.fract() == 0.0 && (0.0..=MAX as f64).contains(&value) {
            Ok(value as u64)
        } else {
            Err(E::custom(format!("{value} is not an integer from 0 to {MAX}")))
        }
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<u64, E> {
        value.parse().map_err(|_| E::custom(format!("`{value}` is not a non-negative integer")))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_revision_past_i64_is_refused() {
        let json = r#"{"layers": [], "expect_revision": 9223372036854775808}"#;
        let error = serde_json::from_str::<crate::types::SetLayers>(json).unwrap_err().to_string();
        assert!(error.contains("out of range"), "{error}");
        let json = r#"{"layers": [], "expect_revision": 9223372036854775807}"#;
        assert!(serde_json::from_str::<crate::types::SetLayers>(json).is_ok());
        let json = r#"{"layers": [], "expect_revision": 3.0}"#;
        assert_eq!(serde_json::from_str::<crate::types::SetLayers>(json).unwrap().expect_revision, Some(3));
        let json = r#"{"layers": [], "expect_revision": null}"#;
        assert_eq!(serde_json::from_str::<crate::types::SetLayers>(json).unwrap().expect_revision, None);
    }
}
