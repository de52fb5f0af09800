//! Lenient integers: JSON Schema counts `256.0` as the integer 256, and
//! query strings carry numbers as text, so an integral value may arrive as
//! an integer, an integral float, or a string of either (`7`, `7.0`, `"7"`,
//! `"7.0"`). Built from serde_with's adapters: the exact forms first, then a
//! float that must be whole.
//!
//! Use `#[serde(deserialize_with = "integer::required")]` (or `option`).

use serde::{Deserializer, de::Error};
use serde_with::{As, DeserializeAs, DisplayFromStr, PickFirst, Same};

/// An integer, or a whole number written as a float or a string.
type Lenient = PickFirst<(Same, DisplayFromStr, Whole)>;

/// A float (or a string of one) with no fractional part, inside i64's range.
struct Whole;

impl<'de> DeserializeAs<'de, i64> for Whole {
    fn deserialize_as<D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let float: f64 = PickFirst::<(Same, DisplayFromStr)>::deserialize_as(d)?;
        if float.fract() == 0.0 && float.abs() < 9.2e18 {
            Ok(float as i64)
        } else {
            Err(D::Error::custom("expected an integer"))
        }
    }
}

/// A required integer (integral in any spelling).
pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    As::<Lenient>::deserialize(d)
}

/// An optional integer (`null`, absent with `#[serde(default)]`, or integral).
pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    As::<Option<Lenient>>::deserialize(d)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[test]
    fn integral_values_in_any_spelling_are_integers() {
        #[derive(Deserialize)]
        struct Q {
            #[serde(default, deserialize_with = "super::option")]
            n: Option<i64>,
        }
        for (text, want) in [
            (r#"{"n":256}"#, Some(256)),
            (r#"{"n":256.0}"#, Some(256)),
            (r#"{"n":"7"}"#, Some(7)),
            (r#"{"n":"7.0"}"#, Some(7)),
            (r#"{"n":null}"#, None),
            ("{}", None),
        ] {
            assert_eq!(serde_json::from_str::<Q>(text).unwrap().n, want, "{text}");
        }
        for bad in [
            r#"{"n":2.5}"#,
            r#"{"n":"abc"}"#,
            r#"{"n":1e400}"#,
            r#"{"n":true}"#,
        ] {
            assert!(serde_json::from_str::<Q>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_strings_carry_integers_as_text() {
        #[derive(Deserialize)]
        struct Q {
            #[serde(deserialize_with = "super::required")]
            n: i64,
        }
        for (query, want) in [("n=7", 7), ("n=7.0", 7), ("n=-3", -3)] {
            let q: Q = serde_urlencoded::from_str(query).unwrap();
            assert_eq!(q.n, want, "{query}");
        }
        assert!(serde_urlencoded::from_str::<Q>("n=7.5").is_err());
    }
}
