//! Hybrid logical clock for bae sync (layer 0, phase 0).
//!
//! Owns: HLC timestamps (42-bit milliseconds + 22-bit counter, from `hlc-gen`),
//! the total order of `(timestamp, device)` stamps, persistence of the clock's
//! last value so a restart never goes back, updating on receive, and the drift
//! bound that stops a remote clock far in the future from poisoning ours.
//!
//! Architecture invariant: `hlc` knows nothing of SQLite, buckets or
//! encryption; persistence is a value the caller stores and hands back
//! ([`Clock::last`] and [`Clock::restore`]).
#![forbid(unsafe_code)]

mod clock;
mod device;
mod stamp;

pub use clock::{Clock, ClockError, WallClock, DEFAULT_MAX_DRIFT_MS, MAX_REMOTE_COUNTER};
pub use device::{DeviceId, DeviceIdError};
pub use stamp::{Stamp, Timestamp};
