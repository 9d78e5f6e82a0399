//! Counts by state on the wire: a bit mask of the states with a count, then those counts
//! only. Most of a zone's machines share one or two states, so a row of seven counts costs
//! about three bytes instead of seven, and a state added to the enum costs nothing while
//! its count is zero (a row's size decides how many rows fit in a gossip message).
//!
//! Used as `#[serde(with = "crate::sparse_counts")]` on `[u32; N]` fields, N ≤ 8.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

pub fn serialize<S: Serializer, const N: usize>(
    counts: &[u32; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    const { assert!(N <= 8, "the mask is one byte") };
    let mask = counts
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n != 0)
        .fold(0u8, |mask, (i, _)| mask | 1 << i);
    let values: Vec<u32> = counts.iter().copied().filter(|&n| n != 0).collect();
    (mask, values).serialize(serializer)
}

/// Errors (never panics) when the mask names a state past N or does not match the counts.
pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u32; N], D::Error> {
    let (mask, values): (u8, Vec<u32>) = Deserialize::deserialize(deserializer)?;
    if u32::from(mask) >> N != 0 || mask.count_ones() as usize != values.len() {
        return Err(D::Error::custom(format!(
            "state counts: mask {mask:#010b} does not fit {N} states and {} counts",
            values.len()
        )));
    }
    let mut counts = [0u32; N];
    let mut values = values.into_iter();
    for (i, slot) in counts.iter_mut().enumerate() {
        if mask & 1 << i != 0 {
            *slot = values.next().unwrap_or(0);
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use bincode::Options;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Row(#[serde(with = "super")] [u32; 8]);

    /// As the wire does (`crate::wire_size`'s options: varint).
    fn wire() -> impl Options {
        bincode::DefaultOptions::new()
    }

    #[test]
    fn counts_round_trip_and_zeros_cost_nothing() {
        for counts in [
            [0; 8],
            [64, 0, 0, 0, 0, 0, 0, 0],
            [1, 2, 3, 4, 5, 6, 7, 70_000],
        ] {
            let row = Row(counts);
            let bytes = wire().serialize(&row).unwrap();
            assert_eq!(wire().deserialize::<Row>(&bytes).unwrap(), row);
        }
        assert_eq!(
            wire()
                .serialize(&Row([64, 0, 0, 0, 0, 0, 0, 0]))
                .unwrap()
                .len(),
            3
        );
    }

    /// Counts of six states (as applications have).
    #[derive(Debug, Serialize, Deserialize)]
    struct Six(#[serde(with = "super")] [u32; 6]);

    #[test]
    fn a_mask_past_the_states_or_off_the_counts_is_an_error() {
        for (mask, values) in [(0b0100_0000u8, vec![1u32]), (0b11, vec![1])] {
            let bytes = wire().serialize(&(mask, values)).unwrap();
            assert!(wire().deserialize::<Six>(&bytes).is_err(), "{mask:#b}");
        }
        let bytes = wire().serialize(&(0b11u8, vec![1u32])).unwrap();
        assert!(wire().deserialize::<Row>(&bytes).is_err());
    }
}
