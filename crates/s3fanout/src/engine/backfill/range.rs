//! Ranges of the key space, so that one backfill run can work on several at once: each range
//! is a chain of invocations of its own ([`super::split`]).

use serde::{Deserialize, Serialize};

use super::BackfillError;

/// Most chains one run may split into: each is one concurrent invocation of the backfill
/// function, and all of them write to the same targets.
pub const MAX_CHAINS: u32 = 64;

/// Keys from `from` (included) up to `to` (excluded); a bound left out is open. Keys compare
/// as S3 lists them, by their UTF-8 bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyRange {
    /// First key of the range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// First key past the range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

impl KeyRange {
    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &str) -> bool {
        self.from.as_deref().is_none_or(|from| key >= from)
            && self.to.as_deref().is_none_or(|to| key < to)
    }

    /// Whether `key` lies past the range's end.
    pub fn ended_by(&self, key: &str) -> bool {
        self.to.as_deref().is_some_and(|to| key >= to)
    }

    /// A `StartAfter` for a listing that must show `from` itself: S3's is exclusive, so the
    /// key one character shorter, which sorts before it (the few keys between are skipped by
    /// [`KeyRange::contains`]).
    pub fn list_after(&self) -> Option<String> {
        let from = self.from.as_deref()?;
        let mut shorter = from.to_string();
        shorter.pop();
        (!shorter.is_empty()).then_some(shorter)
    }

    /// Checks that the range is not empty by its bounds.
    pub fn check(&self) -> Result<(), BackfillError> {
        match (&self.from, &self.to) {
            (Some(from), Some(to)) if from >= to => Err(BackfillError(format!(
                "range from {from:?} to {to:?}: from must sort before to"
            ))),
            _ => Ok(()),
        }
    }
}

/// The ranges between sorted, distinct `boundaries`: one more range than boundaries, the
/// first open at its start and the last at its end, together the whole key space.
pub fn between(boundaries: &[String]) -> Result<Vec<KeyRange>, BackfillError> {
    if let Some(pair) = boundaries.windows(2).find(|w| w[0] >= w[1]) {
        return Err(BackfillError(format!(
            "split_at: {:?} must sort before {:?} (sorted, distinct keys)",
            pair[0], pair[1]
        )));
    }
    if let Some(empty) = boundaries.iter().position(String::is_empty) {
        return Err(BackfillError(format!(
            "split_at[{empty}] is empty: a boundary is the first key of a range"
        )));
    }
    let mut ranges = Vec::with_capacity(boundaries.len() + 1);
    let mut from = None;
    for boundary in boundaries {
        ranges.push(KeyRange {
            from: from.take(),
            to: Some(boundary.clone()),
        });
        from = Some(boundary.clone());
    }
    ranges.push(KeyRange { from, to: None });
    Ok(ranges)
}

/// Boundaries that deal `prefixes` (sorted common prefixes, as a delimited listing shows
/// them) out to at most `chains` ranges of about as many prefixes each; fewer prefixes than
/// chains give one range per prefix.
pub fn boundaries_among(prefixes: &[String], chains: u32) -> Vec<String> {
    let count = prefixes.len();
    let chains = (chains as usize).min(count.max(1));
    (1..chains)
        .map(|i| prefixes[i * count / chains].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn ranges_between_boundaries_cover_every_key_once() {
        let ranges = between(&keys(&["b/", "d/"])).unwrap();
        assert_eq!(ranges.len(), 3);
        for key in [
            "",
            "a",
            "b",
            "b/",
            "b/x",
            "c",
            "d/",
            "d/z",
            "zz",
            "\u{10FFFF}",
        ] {
            let holding = ranges.iter().filter(|r| r.contains(key)).count();
            assert_eq!(holding, 1, "{key:?} is in {holding} ranges");
        }
        assert!(ranges[0].contains("a/x") && ranges[1].contains("b/") && ranges[2].contains("d/"));
        assert!(ranges[0].ended_by("b/") && !ranges[2].ended_by("zz"));
        assert_eq!(between(&[]).unwrap(), vec![KeyRange::default()]);
    }

    #[test]
    fn a_listing_starts_before_the_first_key_of_its_range() {
        let range = KeyRange {
            from: Some("photos/2024/".into()),
            to: None,
        };
        let after = range.list_after().unwrap();
        assert!(after.as_str() < "photos/2024/" && "photos/2024".starts_with(&after));
        let one = KeyRange {
            from: Some("p".into()),
            to: None,
        };
        assert_eq!(one.list_after(), None);
        assert_eq!(KeyRange::default().list_after(), None);
    }

    #[test]
    fn unsorted_or_empty_boundaries_are_named() {
        let err = between(&keys(&["m", "c"])).unwrap_err().to_string();
        assert!(err.contains("\"m\"") && err.contains("\"c\""), "{err}");
        let err = between(&keys(&["m", "m"])).unwrap_err().to_string();
        assert!(err.contains("distinct"), "{err}");
        let err = between(&keys(&[""])).unwrap_err().to_string();
        assert!(err.contains("split_at[0]"), "{err}");
        let backwards = KeyRange {
            from: Some("z".into()),
            to: Some("a".into()),
        };
        assert!(backwards.check().unwrap_err().to_string().contains("\"z\""));
    }

    #[test]
    fn prefixes_are_dealt_out_evenly() {
        let prefixes: Vec<String> = (0..16).map(|i| format!("p{i:02}/")).collect();
        assert_eq!(
            boundaries_among(&prefixes, 4),
            keys(&["p04/", "p08/", "p12/"])
        );
        assert_eq!(boundaries_among(&prefixes, 1), Vec::<String>::new());
        // More chains than prefixes: one range per prefix.
        assert_eq!(boundaries_among(&prefixes[..3], 8), keys(&["p01/", "p02/"]));
        assert_eq!(boundaries_among(&[], 8), Vec::<String>::new());
        let five = boundaries_among(&prefixes, 5);
        assert_eq!(five.len(), 4);
        assert!(five.windows(2).all(|w| w[0] < w[1]));
    }
}
