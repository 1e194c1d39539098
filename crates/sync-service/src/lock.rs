//! One process at a time per library: an advisory lock on a file next to
//! the library database.
//!
//! Two processes syncing one library would upload the same batches and
//! fight over SQLite's write lock; the second one waits a bounded time for
//! the first, then fails with [`SyncError::LibraryBusy`] naming it. The
//! lock is the OS's (`flock` on Unix, `LockFileEx` on Windows), so it goes
//! away when its holder exits or is killed: a crash never leaves a lock
//! that blocks for ever. The file itself stays (removing it would let a
//! waiter lock a file another process is about to unlink).

use crate::error::SyncError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a waiting process tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(50);

/// The lock of one library, held until dropped (or the process ends).
#[derive(Debug)]
pub struct LibraryLock {
    /// Kept open: closing it releases the lock.
    _file: File,
    path: PathBuf,
}

impl LibraryLock {
    /// The lock file of the library at `library`: `{library}.sync-lock`.
    /// The path is resolved first (symlinks, `..`), so the same library
    /// reached by another path takes the same lock; a library not made
    /// yet resolves through its directory.
    pub fn path_for(library: &Path) -> PathBuf {
        let resolved = std::fs::canonicalize(library).ok().or_else(|| {
            let dir = match library.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            Some(std::fs::canonicalize(dir).ok()?.join(library.file_name()?))
        });
        let library = resolved.as_deref().unwrap_or(library);
        let mut name = library.as_os_str().to_owned();
        name.push(".sync-lock");
        PathBuf::from(name)
    }

    /// Takes the lock of the library at `library`, waiting up to `wait` for
    /// another process to release it; then fails with
    /// [`SyncError::LibraryBusy`] naming the holder's pid. Blocks the
    /// calling thread while it waits.
    pub fn acquire(library: &Path, wait: Duration) -> Result<LibraryLock, SyncError> {
        let path = Self::path_for(library);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| SyncError::io(&path, e))?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(RETRY_EVERY);
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(SyncError::LibraryBusy {
                        path: library.display().to_string(),
                        pid: holder_pid(&mut file),
                    })
                }
                Err(TryLockError::Error(e)) => return Err(SyncError::io(&path, e)),
            }
        }
        // The pid is only for the message another process prints.
        write_pid(&mut file).map_err(|e| SyncError::io(&path, e))?;
        Ok(LibraryLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid the holder wrote, if it has written it yet.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_second_holder_waits_then_is_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib.db");
        let first = LibraryLock::acquire(&lib, Duration::ZERO).unwrap();
        assert_eq!(first.path(), dir.path().join("lib.db.sync-lock"));
        let started = Instant::now();
        let err = LibraryLock::acquire(&lib, Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        match &err {
            SyncError::LibraryBusy { path, pid } => {
                assert_eq!(path, &lib.display().to_string());
                assert_eq!(*pid, Some(std::process::id()));
            }
            other => panic!("expected LibraryBusy, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "another bae-sync (pid {}) is working on {}",
                std::process::id(),
                lib.display()
            )
        );
        drop(first);
        LibraryLock::acquire(&lib, Duration::ZERO).unwrap();
    }

    #[test]
    fn a_waiter_gets_the_lock_once_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib.db");
        let first = LibraryLock::acquire(&lib, Duration::ZERO).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        LibraryLock::acquire(&lib, Duration::from_secs(10)).unwrap();
        releaser.join().unwrap();
    }
}
