//! Timestamps and the total order of stamps.

use crate::DeviceId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An HLC timestamp: 42 bits of milliseconds since hlc-gen's epoch
/// (2024-01-01) and a 22-bit logical counter, packed in a `u64` whose integer
/// order is the timestamps' order.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The smallest timestamp; older than any the clock makes.
    pub const ZERO: Timestamp = Timestamp(0);

    /// The newest timestamp the engine accepts: hlc-gen's range, and below
    /// 2^63 so that SQLite's signed `INTEGER` keeps the order of every
    /// stored timestamp (physical time up to about the year 2093).
    pub const MAX: Timestamp = Timestamp(i64::MAX as u64);

    /// The timestamp from its packed form, as this device stored it. Bytes
    /// from outside (a batch, a head, a checkpoint) go through
    /// [`Timestamp::try_from_u64`] instead.
    pub const fn from_u64(raw: u64) -> Self {
        Timestamp(raw)
    }

    /// The timestamp from a packed form read from outside, refused when it
    /// is out of range (see [`Timestamp::MAX`]): such a value would read as
    /// another time in the drift check than it sorts as.
    pub fn try_from_u64(raw: u64) -> Result<Self, crate::ClockError> {
        let t = Timestamp(raw);
        if t.is_valid() {
            Ok(t)
        } else {
            Err(crate::ClockError::OutOfRange)
        }
    }

    /// Whether the packed form is in the range the engine accepts.
    pub fn is_valid(self) -> bool {
        self <= Self::MAX && hlc_gen::HlcTimestamp::try_from(self.0).is_ok()
    }

    /// The packed form.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Physical part, in Unix milliseconds.
    pub fn unix_millis(self) -> i64 {
        self.as_hlc_gen().timestamp()
    }

    /// Logical counter part.
    pub fn counter(self) -> u64 {
        self.as_hlc_gen().count()
    }

    /// A timestamp with the given Unix milliseconds and counter 0, if in range.
    pub fn from_unix_millis(ms: i64) -> Option<Self> {
        hlc_gen::HlcTimestamp::new(ms).ok().map(Self::from_hlc_gen)
    }

    pub(crate) fn from_hlc_gen(t: hlc_gen::HlcTimestamp) -> Self {
        Timestamp(t.as_u64())
    }

    pub(crate) fn as_hlc_gen(self) -> hlc_gen::HlcTimestamp {
        // Every u64 splits into an in-range (pt, lc) pair, so this cannot fail
        // for values that came out of hlc-gen; for arbitrary input the zero
        // timestamp is the conservative reading.
        hlc_gen::HlcTimestamp::try_from(self.0).unwrap_or_default()
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms+{})", self.unix_millis(), self.counter())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.unix_millis(), self.counter())
    }
}

/// A write's place in the total order: its timestamp, then the writing
/// device. Two devices may make equal timestamps; the device id breaks the
/// tie, so every device decides every comparison alike.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Stamp {
    /// When, by the writer's HLC.
    pub hlc: Timestamp,
    /// Who wrote.
    pub device: DeviceId,
}

impl Stamp {
    /// A stamp.
    pub fn new(hlc: Timestamp, device: DeviceId) -> Self {
        Stamp { hlc, device }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamps_from_outside_are_range_checked() {
        assert!(Timestamp::try_from_u64(u64::MAX).is_err());
        assert!(Timestamp::try_from_u64(i64::MAX as u64 + 1).is_err());
        let now = Timestamp::from_unix_millis(1_800_000_000_000).unwrap();
        assert_eq!(Timestamp::try_from_u64(now.as_u64()).unwrap(), now);
        assert!(Timestamp::ZERO.is_valid());
    }

    proptest! {
        #[test]
        fn stamps_order_by_timestamp_then_device(a in any::<u64>(), b in any::<u64>(),
                                                 da in any::<[u8; 16]>(), db in any::<[u8; 16]>()) {
            let sa = Stamp::new(Timestamp::from_u64(a), DeviceId::from_bytes(da));
            let sb = Stamp::new(Timestamp::from_u64(b), DeviceId::from_bytes(db));
            let expected = a.cmp(&b).then(da.cmp(&db));
            prop_assert_eq!(sa.cmp(&sb), expected);
            // Total: exactly one of <, ==, > and antisymmetric.
            prop_assert_eq!(sb.cmp(&sa), expected.reverse());
        }

        #[test]
        fn packed_form_keeps_order(ms_a in 1_704_067_200_000i64..4_000_000_000_000, ms_b in 1_704_067_200_000i64..4_000_000_000_000) {
            let (Some(a), Some(b)) = (Timestamp::from_unix_millis(ms_a), Timestamp::from_unix_millis(ms_b)) else {
                return Ok(());
            };
            prop_assert_eq!(a.cmp(&b), ms_a.cmp(&ms_b));
            prop_assert_eq!(a.unix_millis(), ms_a);
        }
    }
}
