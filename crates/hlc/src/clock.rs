//! The clock: local timestamps, receive, drift bound, persistence.

use crate::Timestamp;
use hlc_gen::source::{ManualClock, UtcClock};
use hlc_gen::HlcGenerator;
use std::sync::atomic::{AtomicI64, Ordering};

/// How far ahead of our wall clock a remote timestamp may be before we refuse
/// it (five minutes): enough for devices whose clocks are loosely kept, small
/// enough that one broken clock cannot drag every device's timestamps far
/// into the future.
pub const DEFAULT_MAX_DRIFT_MS: u64 = 5 * 60 * 1000;

/// The highest logical counter a remote timestamp may carry (half the
/// 22-bit range): no device makes two million events in one millisecond,
/// and adopting a counter at the top would freeze this clock.
pub const MAX_REMOTE_COUNTER: u64 = 1 << 21;

/// Where physical time comes from.
#[derive(Clone, Copy, Debug)]
pub enum WallClock {
    /// The system clock (UTC milliseconds).
    System,
    /// A clock the caller sets, starting at these Unix milliseconds (tests,
    /// simulations).
    Manual(i64),
}

/// Errors of the clock.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClockError {
    /// A remote timestamp is further ahead of local wall time than the drift
    /// bound; it was not adopted.
    #[error(
        "remote timestamp {remote} is {ahead_ms} ms ahead of local wall time (bound {bound_ms} ms)"
    )]
    DriftTooLarge {
        /// The refused timestamp.
        remote: Timestamp,
        /// How far ahead of our wall clock it is.
        ahead_ms: u64,
        /// The bound it exceeded.
        bound_ms: u64,
    },
    /// More than 2^22 timestamps in one millisecond with a wall clock that
    /// does not advance.
    #[error("HLC logical counter exhausted at {0}")]
    CounterExhausted(Timestamp),
    /// A remote timestamp whose logical counter is above
    /// [`MAX_REMOTE_COUNTER`]: adopting it would leave the clock unable to
    /// make a timestamp until wall time caught up.
    #[error("remote HLC {0} has a logical counter too high to adopt")]
    CounterTooHigh(Timestamp),
    /// A timestamp (or the wall clock) outside the range the engine accepts
    /// ([`Timestamp::MAX`]).
    #[error("timestamp outside the HLC range")]
    OutOfRange,
}

enum Generator {
    System(HlcGenerator<UtcClock>),
    Manual(HlcGenerator<ManualClock>),
}

/// A hybrid logical clock. Timestamps it makes are strictly increasing, even
/// across restarts when restored from its last value, and never run more than
/// the drift bound ahead of wall time because of a remote clock.
pub struct Clock {
    generator: Generator,
    /// Our copy of a manual wall clock (hlc-gen keeps its own private).
    manual_wall: Option<AtomicI64>,
    max_drift_ms: u64,
}

impl Clock {
    /// A fresh clock.
    pub fn new(wall: WallClock, max_drift_ms: u64) -> Self {
        // hlc-gen's own drift check is off (0): we check before adopting so
        // the refusal is our typed error and the state is untouched.
        match wall {
            WallClock::System => Clock {
                generator: Generator::System(HlcGenerator::new(0)),
                manual_wall: None,
                max_drift_ms,
            },
            WallClock::Manual(ms) => {
                let g = HlcGenerator::manual(0);
                g.set_current_timestamp(ms);
                Clock {
                    generator: Generator::Manual(g),
                    manual_wall: Some(AtomicI64::new(ms)),
                    max_drift_ms,
                }
            }
        }
    }

    /// A clock that continues from `last`, the value [`Clock::last`] returned
    /// before a restart: its next timestamp is after `last` even if the wall
    /// clock went back meanwhile.
    pub fn restore(
        wall: WallClock,
        max_drift_ms: u64,
        last: Timestamp,
    ) -> Result<Self, ClockError> {
        let clock = Clock::new(wall, max_drift_ms);
        clock.adopt(last)?;
        Ok(clock)
    }

    /// The newest timestamp this clock has made or adopted (persist it).
    pub fn last(&self) -> Timestamp {
        Timestamp::from_hlc_gen(match &self.generator {
            Generator::System(g) => g.timestamp(),
            Generator::Manual(g) => g.timestamp(),
        })
    }

    /// A new timestamp for a local event, after every earlier one.
    pub fn now(&self) -> Result<Timestamp, ClockError> {
        let next = match &self.generator {
            Generator::System(g) => g.next_timestamp(),
            Generator::Manual(g) => g.next_timestamp(),
        };
        next.map(Timestamp::from_hlc_gen)
            .ok_or(ClockError::CounterExhausted(self.last()))
    }

    /// Checks a remote timestamp against the drift bound without adopting it.
    pub fn check_drift(&self, remote: Timestamp) -> Result<(), ClockError> {
        // An out-of-range value would read as another time than it sorts as.
        if !remote.is_valid() {
            return Err(ClockError::OutOfRange);
        }
        // A counter near its maximum, once adopted, would leave this clock
        // unable to tick until wall time passes the remote's milliseconds.
        if remote.counter() > MAX_REMOTE_COUNTER {
            return Err(ClockError::CounterTooHigh(remote));
        }
        let ahead = remote.unix_millis().saturating_sub(self.wall_millis());
        let ahead_ms = u64::try_from(ahead).unwrap_or(0);
        if ahead_ms > self.max_drift_ms {
            return Err(ClockError::DriftTooLarge {
                remote,
                ahead_ms,
                bound_ms: self.max_drift_ms,
            });
        }
        Ok(())
    }

    /// Receives a remote timestamp: refuses it if it is too far ahead (the
    /// clock is unchanged), otherwise advances the clock past it.
    pub fn receive(&self, remote: Timestamp) -> Result<Timestamp, ClockError> {
        self.check_drift(remote)?;
        self.adopt(remote)
    }

    /// Advances the clock past a value this device itself made or adopted
    /// (persisted by another connection to the same library), without the
    /// drift check a remote timestamp gets: it already passed one.
    pub fn catch_up(&self, persisted: Timestamp) -> Result<Timestamp, ClockError> {
        if persisted <= self.last() {
            return Ok(self.last());
        }
        self.adopt(persisted)
    }

    fn adopt(&self, t: Timestamp) -> Result<Timestamp, ClockError> {
        let t = t.as_hlc_gen();
        let updated = match &self.generator {
            Generator::System(g) => g.update(&t),
            Generator::Manual(g) => g.update(&t),
        };
        updated.map(Timestamp::from_hlc_gen).map_err(|e| match e {
            hlc_gen::error::HlcError::LogicalClockExceedsMax(..) => {
                ClockError::CounterExhausted(self.last())
            }
            _ => ClockError::OutOfRange,
        })
    }

    /// The wall clock, in Unix milliseconds.
    pub fn wall_millis(&self) -> i64 {
        use hlc_gen::source::ClockSource;
        match &self.manual_wall {
            Some(ms) => ms.load(Ordering::SeqCst),
            None => UtcClock.current_timestamp(),
        }
    }

    /// Sets a manual wall clock (no effect on a system clock).
    pub fn set_wall_millis(&self, ms: i64) {
        if let (Generator::Manual(g), Some(wall)) = (&self.generator, &self.manual_wall) {
            g.set_current_timestamp(ms);
            wall.store(ms, Ordering::SeqCst);
        }
    }

    /// The drift bound in milliseconds.
    pub fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_remote_counter_near_its_maximum_is_refused_not_adopted() {
        let wall = 1_800_000_000_000;
        let clock = Clock::new(WallClock::Manual(wall), DEFAULT_MAX_DRIFT_MS);
        let base = Timestamp::from_unix_millis(wall + 240_000)
            .unwrap()
            .as_u64();
        let remote = Timestamp::from_u64(base | ((1 << 22) - 2));
        assert!(remote.is_valid());
        assert!(matches!(
            clock.receive(remote),
            Err(ClockError::CounterTooHigh(_))
        ));
        assert!(clock.now().is_ok(), "the clock still ticks");
    }

    #[test]
    fn an_out_of_range_remote_timestamp_is_refused_not_adopted() {
        let clock = Clock::new(WallClock::Manual(1_800_000_000_000), DEFAULT_MAX_DRIFT_MS);
        let before = clock.last();
        for raw in [u64::MAX, i64::MAX as u64 + 1] {
            let t = Timestamp::from_u64(raw);
            assert!(matches!(clock.check_drift(t), Err(ClockError::OutOfRange)));
            assert!(matches!(clock.receive(t), Err(ClockError::OutOfRange)));
        }
        assert_eq!(clock.last(), before);
    }

    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_800_000_000_000;

    fn manual() -> Clock {
        Clock::new(WallClock::Manual(T0), DEFAULT_MAX_DRIFT_MS)
    }

    #[test]
    fn restart_never_goes_back_even_if_the_wall_clock_did() {
        let clock = manual();
        for _ in 0..10 {
            clock.now().unwrap();
        }
        let last = clock.last();
        // The machine restarts with its wall clock an hour behind.
        let restarted = Clock::restore(
            WallClock::Manual(T0 - 3_600_000),
            DEFAULT_MAX_DRIFT_MS,
            last,
        )
        .unwrap();
        assert!(restarted.now().unwrap() > last);
    }

    #[test]
    fn remote_timestamp_within_the_bound_advances_the_clock() {
        let clock = manual();
        let remote = Timestamp::from_unix_millis(T0 + 60_000).unwrap();
        clock.receive(remote).unwrap();
        assert!(clock.now().unwrap() > remote);
    }

    #[test]
    fn remote_timestamp_beyond_the_bound_is_refused_and_not_adopted() {
        let clock = manual();
        let before = clock.last();
        let remote = Timestamp::from_unix_millis(T0 + DEFAULT_MAX_DRIFT_MS as i64 + 1).unwrap();
        let err = clock.receive(remote).unwrap_err();
        assert!(
            matches!(err, ClockError::DriftTooLarge { ahead_ms, .. } if ahead_ms == DEFAULT_MAX_DRIFT_MS + 1)
        );
        assert_eq!(clock.last(), before);
        assert!(clock.now().unwrap() < remote);
    }

    #[test]
    fn a_refused_timestamp_is_accepted_once_wall_time_catches_up() {
        let clock = manual();
        let remote = Timestamp::from_unix_millis(T0 + 3_600_000).unwrap();
        assert!(clock.receive(remote).is_err());
        clock.set_wall_millis(T0 + 3_600_000 - 1000);
        assert!(clock.receive(remote).is_ok());
    }

    #[test]
    fn system_clock_makes_increasing_timestamps_near_wall_time() {
        let clock = Clock::new(WallClock::System, DEFAULT_MAX_DRIFT_MS);
        let a = clock.now().unwrap();
        let b = clock.now().unwrap();
        assert!(b > a);
        assert!((a.unix_millis() - clock.wall_millis()).abs() < 10_000);
    }

    #[derive(Debug, Clone)]
    enum Event {
        Local,
        Tick(i64),
        Receive(i64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::Local),
            (-5_000i64..5_000).prop_map(Event::Tick),
            (-600_000i64..600_000).prop_map(Event::Receive),
        ]
    }

    proptest! {
        #[test]
        fn timestamps_strictly_increase_whatever_happens(events in proptest::collection::vec(event(), 1..200)) {
            let clock = manual();
            let mut wall = T0;
            let mut last = clock.last();
            for e in events {
                match e {
                    Event::Local => {
                        let t = clock.now().unwrap();
                        prop_assert!(t > last);
                        last = t;
                    }
                    Event::Tick(d) => { wall += d; clock.set_wall_millis(wall); }
                    Event::Receive(d) => {
                        let remote = Timestamp::from_unix_millis(wall + d).unwrap();
                        match clock.receive(remote) {
                            Ok(t) => { prop_assert!(t > last && t > remote); last = t; }
                            Err(ClockError::DriftTooLarge { .. }) => {
                                prop_assert!(d > DEFAULT_MAX_DRIFT_MS as i64);
                                prop_assert_eq!(clock.last(), last);
                            }
                            Err(e) => prop_assert!(false, "unexpected {e}"),
                        }
                    }
                }
            }
        }
    }
}
