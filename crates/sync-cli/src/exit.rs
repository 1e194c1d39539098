//! bae-sync's exit statuses: one per outcome a script can act on, in one
//! place, and the text `--help` shows for them.

use std::process::ExitCode;

/// How a `bae-sync` run ended, as its exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Done. Also when stdout is closed before the output is written
    /// (`bae-sync dump | head`): the command did its work.
    Done = 0,
    /// An error; one line on stderr says what.
    Error = 1,
    /// A usage error (an unknown command or flag, a missing argument).
    Usage = 2,
    /// pull, sync or server-bootstrap --refresh applied everything except
    /// batches it rejected (listed on stderr and in `status`).
    Rejected = 3,
    /// Another bae-sync is working on this library (the command waited
    /// `BAE_SYNC_LOCK_WAIT` seconds, default 5, for it first).
    Busy = 4,
    /// redeem refused the grant (not for this identity, expired, altered,
    /// truncated, or of another version); nothing was written.
    GrantRefused = 5,
}

impl Exit {
    /// The status as a process exit code.
    pub fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

/// The exit statuses as `--help` lists them (kept next to [`Exit`]; a test
/// checks each status is listed).
pub const EXIT_HELP: &str = "Exit status:
  0  done (also when stdout is closed early, as in `bae-sync dump | head`)
  1  error: one line on stderr says what
  2  usage error: unknown command or flag, missing argument
  3  pull, sync or server-bootstrap --refresh applied everything except batches
     it rejected (listed on stderr and in `status`; the device that wrote them
     runs `bae-sync push --repair`)
  4  another bae-sync is working on this library (after waiting
     BAE_SYNC_LOCK_WAIT seconds, default 5)
  5  redeem refused the grant: not for this identity, expired, altered,
     truncated or of another version (nothing was written)";
