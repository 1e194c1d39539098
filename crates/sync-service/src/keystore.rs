//! Where library keys live: the OS keyring by default, or files under a home
//! directory (`--home` / `BAE_SYNC_HOME`) on headless machines and in tests.

use crate::error::SyncError;
use bae_crypto::LibraryKey;
use std::path::PathBuf;

/// A place to keep library keys, one per library id.
#[derive(Clone, Debug)]
pub enum KeyStore {
    /// The OS keyring (service `bae`, entry `bae_library_key:{library_id}`).
    Os,
    /// Files `{home}/keys/{library_id}.key`, readable only by the owner.
    Files(PathBuf),
}

impl KeyStore {
    fn entry_name(library_id: &str) -> String {
        format!("bae_library_key:{library_id}")
    }

    fn file(home: &std::path::Path, library_id: &str) -> PathBuf {
        home.join("keys").join(format!("{library_id}.key"))
    }

    /// Stores a library's key.
    pub fn save(&self, library_id: &str, key: &LibraryKey) -> Result<(), SyncError> {
        let text = key.to_key_text();
        match self {
            KeyStore::Os => keyring::Entry::new("bae", &Self::entry_name(library_id))
                .and_then(|e| e.set_password(&text))
                .map_err(|e| SyncError::KeyStore(format!("OS keyring: {e}"))),
            KeyStore::Files(home) => {
                let path = Self::file(home, library_id);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| SyncError::io(dir, e))?;
                }
                write_private(&path, text.as_bytes())
            }
        }
    }

    /// Loads a library's key.
    pub fn load(&self, library_id: &str) -> Result<LibraryKey, SyncError> {
        match self {
            KeyStore::Os => {
                let text = keyring::Entry::new("bae", &Self::entry_name(library_id))
                    .and_then(|e| e.get_password())
                    .map_err(|e| {
                        SyncError::KeyStore(format!(
                            "OS keyring has no key for library {library_id}: {e}"
                        ))
                    })?;
                let text = zeroize::Zeroizing::new(text);
                Ok(LibraryKey::from_key_text(text.trim())?)
            }
            KeyStore::Files(home) => read_key_file(&Self::file(home, library_id)),
        }
    }
}

/// Reads a key file (`bae-sync key export` output).
pub fn read_key_file(path: &std::path::Path) -> Result<LibraryKey, SyncError> {
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| SyncError::io(path, e))?);
    Ok(LibraryKey::from_key_text(text.trim())?)
}

/// Writes a file only its owner can read.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), SyncError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(|e| SyncError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| SyncError::io(path, e))
}
