//! The user's global identity: one Ed25519 key per user, for every library.
//!
//! In the OS keyring it is two entries under service `bae`:
//! `bae_user_signing_key` (the key's text form) and `bae_user_public_key`
//! (64 hex digits, readable without unlocking the secret). These names carry
//! no library id: the identity is the user's, not a library's. On headless
//! machines and in tests it is the file `{home}/identity.key` (mode 0600).

use bae_crypto::{IdentityPublicKey, IdentitySigningKey, KeyParseError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Keyring service of bae's entries.
pub const KEYRING_SERVICE: &str = "bae";
/// Keyring entry of the signing key.
pub const SIGNING_KEY_ENTRY: &str = "bae_user_signing_key";
/// Keyring entry of the public key.
pub const PUBLIC_KEY_ENTRY: &str = "bae_user_public_key";
/// File of the identity under a home directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Where the identity lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityStore {
    /// The OS keyring (service [`KEYRING_SERVICE`]).
    Os,
    /// The file [`IDENTITY_FILE`] under this home directory.
    Files(PathBuf),
}

/// Why the identity could not be loaded or stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// No identity has been made yet.
    #[error("no bae identity yet (in {place})")]
    NotFound {
        /// The keyring entry or file looked in.
        place: String,
    },
    /// The OS keyring failed.
    #[error("OS keyring, entry {entry}: {source}")]
    Keyring {
        /// The entry.
        entry: &'static str,
        /// What the keyring reported.
        #[source]
        source: keyring::Error,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS reported.
        #[source]
        source: std::io::Error,
    },
    /// The stored key is not a key.
    #[error("stored identity in {place} is damaged: {source}")]
    Damaged {
        /// The keyring entry or file.
        place: String,
        /// What is wrong.
        #[source]
        source: KeyParseError,
    },
    /// The keyring's public key is not the signing key's.
    #[error("keyring entry {PUBLIC_KEY_ENTRY} ({stored}) does not match {SIGNING_KEY_ENTRY} ({derived})")]
    PublicKeyMismatch {
        /// The stored public key text.
        stored: String,
        /// The signing key's public key.
        derived: Box<IdentityPublicKey>,
    },
    /// Another identity than the one being adopted is already stored.
    #[error("this machine already has the bae identity {stored}; the key file carries {given}")]
    AnotherIdentity {
        /// The stored identity's public key.
        stored: Box<IdentityPublicKey>,
        /// The identity given.
        given: Box<IdentityPublicKey>,
    },
    /// The identity file can be read or written by others.
    #[error("{path} can be read or written by others (mode {mode:o}); run chmod 600 on it")]
    NotPrivate {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl IdentityStore {
    /// The identity, or [`IdentityError::NotFound`].
    pub fn load(&self) -> Result<IdentitySigningKey, IdentityError> {
        match self {
            IdentityStore::Os => load_keyring(),
            IdentityStore::Files(home) => load_file(&home.join(IDENTITY_FILE)),
        }
    }

    /// The identity, made and stored first if there is none yet.
    pub fn load_or_create(&self) -> Result<IdentitySigningKey, IdentityError> {
        match self.load() {
            Err(IdentityError::NotFound { .. }) => {
                let key = IdentitySigningKey::generate();
                self.save(&key)?;
                Ok(key)
            }
            other => other,
        }
    }

    /// Stores `key` as this user's identity (another device of the same
    /// user joining with it): kept if it is already the identity, refused
    /// with [`IdentityError::AnotherIdentity`] if another one is stored
    /// (replacing it would lose that identity's memberships).
    pub fn adopt(&self, key: &IdentitySigningKey) -> Result<(), IdentityError> {
        match self.load() {
            Ok(stored) if stored.public_key() == key.public_key() => Ok(()),
            Ok(stored) => Err(IdentityError::AnotherIdentity {
                stored: Box::new(stored.public_key()),
                given: Box::new(key.public_key()),
            }),
            Err(IdentityError::NotFound { .. }) => self.save(key),
            Err(e) => Err(e),
        }
    }

    fn save(&self, key: &IdentitySigningKey) -> Result<(), IdentityError> {
        match self {
            IdentityStore::Os => {
                // The signing key first: a public key without its secret would
                // name an identity that cannot sign.
                set_entry(SIGNING_KEY_ENTRY, &key.to_key_text())?;
                set_entry(PUBLIC_KEY_ENTRY, &key.public_key().to_string())
            }
            IdentityStore::Files(home) => write_private(home, IDENTITY_FILE, &key.to_key_text()),
        }
    }
}

fn entry(name: &'static str) -> Result<keyring::Entry, IdentityError> {
    keyring::Entry::new(KEYRING_SERVICE, name).map_err(|source| IdentityError::Keyring {
        entry: name,
        source,
    })
}

fn set_entry(name: &'static str, value: &str) -> Result<(), IdentityError> {
    entry(name)?
        .set_password(value)
        .map_err(|source| IdentityError::Keyring {
            entry: name,
            source,
        })
}

fn load_keyring() -> Result<IdentitySigningKey, IdentityError> {
    let text = match entry(SIGNING_KEY_ENTRY)?.get_password() {
        Ok(text) => Zeroizing::new(text),
        Err(keyring::Error::NoEntry) => {
            return Err(IdentityError::NotFound {
                place: format!("OS keyring entry {SIGNING_KEY_ENTRY}"),
            })
        }
        Err(source) => {
            return Err(IdentityError::Keyring {
                entry: SIGNING_KEY_ENTRY,
                source,
            })
        }
    };
    let key =
        IdentitySigningKey::from_key_text(&text).map_err(|source| IdentityError::Damaged {
            place: format!("OS keyring entry {SIGNING_KEY_ENTRY}"),
            source,
        })?;
    match entry(PUBLIC_KEY_ENTRY)?.get_password() {
        Ok(stored) if stored.trim() == key.public_key().to_string() => Ok(key),
        Ok(stored) => Err(IdentityError::PublicKeyMismatch {
            stored,
            derived: Box::new(key.public_key()),
        }),
        // Written second, so it can be missing after a crash: write it now.
        Err(keyring::Error::NoEntry) => {
            set_entry(PUBLIC_KEY_ENTRY, &key.public_key().to_string())?;
            Ok(key)
        }
        Err(source) => Err(IdentityError::Keyring {
            entry: PUBLIC_KEY_ENTRY,
            source,
        }),
    }
}

fn load_file(path: &Path) -> Result<IdentitySigningKey, IdentityError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IdentityError::NotFound {
                place: path.display().to_string(),
            })
        }
        Err(e) => return Err(io(path)(e)),
    };
    // Checked on the open handle, so the file checked is the file read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(io(path))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::NotPrivate {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text).map_err(io(path))?;
    IdentitySigningKey::from_key_text(&text).map_err(|source| IdentityError::Damaged {
        place: path.display().to_string(),
        source,
    })
}

/// Writes `home/name` readable by its owner only (0600), in a 0700 home,
/// through a temp file renamed into place (never through a planted symlink),
/// and makes the rename durable: the file may be the identity's only copy.
fn write_private(home: &Path, name: &str, text: &str) -> Result<(), IdentityError> {
    let mut dir = std::fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        dir.mode(0o700);
    }
    dir.create(home).map_err(io(home))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".bae-identity-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(home).map_err(io(home))?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(io(home))?;
    let path = home.join(name);
    tmp.persist(&path).map_err(|e| io(&path)(e.error))?;
    #[cfg(unix)]
    std::fs::File::open(home)
        .and_then(|d| d.sync_all())
        .map_err(io(home))?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_identity_is_made_once_then_loaded_from_a_private_file() {
        let home = tempfile::tempdir().unwrap();
        let store = IdentityStore::Files(home.path().join("bae"));
        assert!(matches!(store.load(), Err(IdentityError::NotFound { .. })));
        let made = store.load_or_create().unwrap();
        let again = store.load_or_create().unwrap();
        assert_eq!(again.public_key(), made.public_key());
        assert_eq!(store.load().unwrap().public_key(), made.public_key());
        let path = home.path().join("bae").join(IDENTITY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let seed = hex::encode(*made.to_seed());
        assert!(!format!("{store:?} {made:?}").contains(&seed));
    }

    #[test]
    fn adopting_an_identity_stores_it_once_and_refuses_another() {
        let home = tempfile::tempdir().unwrap();
        let store = IdentityStore::Files(home.path().to_path_buf());
        let key = IdentitySigningKey::from_seed(&[7; 32]);
        store.adopt(&key).unwrap();
        store.adopt(&key).unwrap();
        assert_eq!(store.load().unwrap().public_key(), key.public_key());
        let other = IdentitySigningKey::from_seed(&[8; 32]);
        let err = store.adopt(&other).unwrap_err();
        assert!(
            matches!(err, IdentityError::AnotherIdentity { .. }),
            "{err}"
        );
        assert_eq!(store.load().unwrap().public_key(), key.public_key());
    }

    #[test]
    fn a_readable_or_damaged_identity_file_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let store = IdentityStore::Files(home.path().to_path_buf());
        store.load_or_create().unwrap();
        let path = home.path().join(IDENTITY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.load().unwrap_err();
        assert!(
            matches!(err, IdentityError::NotPrivate { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
        // A refused file is never replaced by a new identity.
        assert!(matches!(
            store.load_or_create(),
            Err(IdentityError::NotPrivate { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "bae-identity-key-v1:nothex").unwrap();
        assert!(matches!(
            store.load_or_create(),
            Err(IdentityError::Damaged { .. })
        ));
    }
}
