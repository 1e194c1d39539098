//! Device ids: a UUID made on a device's first start.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The id of one device of a library: a random UUID made on first start and
/// kept in the library's sync state. Orders by its 16 bytes, which breaks ties
/// between equal HLC timestamps identically on every device.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceId(Uuid);

/// A device id that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("not a device id (expected a hyphenated UUID): {0:?}")]
pub struct DeviceIdError(pub String);

impl DeviceId {
    /// A fresh random device id.
    pub fn random() -> Self {
        DeviceId(Uuid::new_v4())
    }

    /// The id from its 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        DeviceId(Uuid::from_bytes(bytes))
    }

    /// The id's 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

impl FromStr for DeviceId {
    type Err = DeviceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the canonical lowercase hyphenated form: one device, one spelling,
        // so a bucket key names a device in exactly one way.
        match Uuid::try_parse(s) {
            Ok(u) if u.hyphenated().to_string() == s => Ok(DeviceId(u)),
            _ => Err(DeviceIdError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_round_trips_through_its_text_form() {
        let id = DeviceId::random();
        assert_eq!(id.to_string().parse::<DeviceId>().unwrap(), id);
    }

    #[test]
    fn non_canonical_spellings_are_refused() {
        let id = DeviceId::random();
        assert!(id.to_string().to_uppercase().parse::<DeviceId>().is_err());
        assert!(id.to_string().replace('-', "").parse::<DeviceId>().is_err());
        assert!("../heads".parse::<DeviceId>().is_err());
    }
}
