//! Errors of the command-line tool: the engine's, and the few only a
//! command line has.

use std::path::Path;

/// Why a `bae-sync` command failed; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The sync engine failed.
    #[error(transparent)]
    Sync(#[from] bae_sync_service::SyncError),
    /// Opening or writing the library failed.
    #[error("library: {0}")]
    Library(#[from] bae_oplog::OplogError),
    /// `set` or `delete` refused an edit (a name or value that does not fit
    /// the library's schema).
    #[error("{0}")]
    Edit(#[from] bae_oplog::fixture::EditError),
    /// A command that needs an existing library was given a path with no
    /// file (only init, join and demo-import create one).
    #[error("{path}: no such library file (only init, join and demo-import create one)")]
    NoLibrary {
        /// The path given.
        path: String,
    },
    /// SQLite found the library file damaged.
    #[error("{path} is damaged ({detail}); check it with `sqlite3 {path} 'PRAGMA integrity_check'` and restore it from a backup, or join the library again into a new file")]
    Damaged {
        /// The library file.
        path: String,
        /// What SQLite reported.
        detail: String,
    },
    /// `demo --dir` was given a directory that already holds files.
    #[error(
        "{path} is not empty: give demo a new or empty directory (or none, for a temporary one)"
    )]
    DemoDirInUse {
        /// The directory.
        path: String,
    },
    /// `join` without --invite lacks --bucket or --key-file (clap normally
    /// catches it first).
    #[error("join needs --bucket and --key-file, or --invite")]
    JoinNeedsKeyOrInvite,
    /// A reader tried to change the library: the other members would
    /// refuse what they push.
    #[error("you are a reader of this library: readers cannot change it (an owner or admin can make you a member)")]
    ReaderCannotWrite,
    /// A public key on the command line that is not 64 hex digits.
    #[error("--member: {0}")]
    MemberKey(bae_crypto::KeyParseError),
    /// An invite code that does not parse.
    #[error("--invite: {0}")]
    Invite(#[from] bae_membership::InviteError),
    /// `--with-credentials` without S3 credentials in the environment, or
    /// for a bucket that is not S3.
    #[error("--with-credentials: {0}")]
    Credentials(&'static str),
    /// `share --out` names a file that exists.
    #[error("{path} already exists: choose a new file for the grant")]
    OutputExists {
        /// The file.
        path: String,
    },
    /// Writing to stdout failed (other than a closed pipe, which ends the
    /// command quietly).
    #[error("stdout: {0}")]
    Stdout(std::io::Error),
    /// The reader of stdout went away (`bae-sync dump | head`).
    #[error("stdout closed")]
    StdoutClosed,
    /// `set` was given something other than `COLUMN=VALUE`.
    #[error("bad argument: expected COLUMN=VALUE (or --null COLUMN), got {found:?}")]
    BadAssignment {
        /// The argument as given.
        found: String,
    },
    /// `BAE_SYNC_LOCK_WAIT` is not a number of seconds.
    #[error("BAE_SYNC_LOCK_WAIT must be a number of seconds, got {found:?}")]
    BadLockWait {
        /// The value as set.
        found: String,
    },
    /// Local file I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The demo's two devices ended with different libraries.
    #[error("devices did not converge: laptop has {laptop} synced rows, desktop {desktop}")]
    Diverged {
        /// Rows on the first device.
        laptop: usize,
        /// Rows on the second.
        desktop: usize,
    },
}

impl CliError {
    /// An I/O error on a named file.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        CliError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// What SQLite reported if `e` (or an error under it) says the database
/// file is damaged or is not a database.
pub fn damage(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(db) = e.downcast_ref::<rusqlite::Error>() {
            if matches!(
                db.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            ) {
                return Some(db.to_string());
            }
        }
        next = e.source();
    }
    None
}
