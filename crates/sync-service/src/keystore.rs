//! Where library keys live: the OS keyring by default, or files under a home
//! directory (`--home` / `BAE_SYNC_HOME`) on headless machines and in tests.

use crate::error::SyncError;
use bae_crypto::{IdentityPublicKey, IdentitySigningKey, KeyEpoch, KeyRing, LibraryKey};
use bae_membership::IdentityStore;
use std::path::{Path, PathBuf};

/// A place to keep library keys, one per library id.
#[derive(Clone, Debug)]
pub enum KeyStore {
    /// The OS keyring (service `bae`, entry `bae_library_key:{library_id}`).
    Os,
    /// Files `{home}/keys/{library_id}.key`, readable only by the owner.
    Files(PathBuf),
}

impl KeyStore {
    /// Where this user's identity lives alongside: the OS keyring, or
    /// `{home}/identity.key` under the same home.
    pub fn identity_store(&self) -> IdentityStore {
        match self {
            KeyStore::Os => IdentityStore::Os,
            KeyStore::Files(home) => IdentityStore::Files(home.clone()),
        }
    }

    fn entry_name(library_id: &str) -> String {
        format!("bae_library_key:{library_id}")
    }

    fn file(home: &Path, library_id: &str) -> PathBuf {
        home.join("keys").join(format!("{library_id}.key"))
    }

    fn credentials_entry(library_id: &str) -> String {
        format!("bae_s3_credentials:{library_id}")
    }

    fn credentials_file(home: &Path, library_id: &str) -> PathBuf {
        home.join("keys").join(format!("{library_id}.s3"))
    }

    /// Stores the S3 credentials an invite carried for a library (its
    /// text: access key, secret key and optional session token, a line
    /// each), next to its keys.
    pub fn save_s3_credentials(&self, library_id: &str, text: &str) -> Result<(), SyncError> {
        match self {
            KeyStore::Os => keyring::Entry::new("bae", &Self::credentials_entry(library_id))
                .and_then(|e| e.set_password(text))
                .map_err(|source| SyncError::Keyring {
                    library_id: library_id.to_owned(),
                    source,
                }),
            KeyStore::Files(home) => {
                let path = Self::credentials_file(home, library_id);
                if let Some(dir) = path.parent() {
                    private_dir(dir)?;
                }
                write_private(&path, text.as_bytes())
            }
        }
    }

    /// The S3 credentials stored for a library, if an invite carried some.
    pub fn load_s3_credentials(
        &self,
        library_id: &str,
    ) -> Result<Option<zeroize::Zeroizing<String>>, SyncError> {
        match self {
            KeyStore::Os => {
                match keyring::Entry::new("bae", &Self::credentials_entry(library_id))
                    .and_then(|e| e.get_password())
                {
                    Ok(text) => Ok(Some(zeroize::Zeroizing::new(text))),
                    Err(keyring::Error::NoEntry) => Ok(None),
                    Err(source) => Err(SyncError::Keyring {
                        library_id: library_id.to_owned(),
                        source,
                    }),
                }
            }
            KeyStore::Files(home) => {
                let path = Self::credentials_file(home, library_id);
                if !path.exists() {
                    return Ok(None);
                }
                read_private_text(&path).map(Some)
            }
        }
    }

    /// Stores a library's keys: every epoch of `ring`, whose epochs must
    /// run 0, 1, … with no gap (what key blobs carry).
    pub fn save(&self, library_id: &str, ring: &KeyRing) -> Result<(), SyncError> {
        let text = ring_text(ring)?;
        match self {
            KeyStore::Os => keyring::Entry::new("bae", &Self::entry_name(library_id))
                .and_then(|e| e.set_password(&text))
                .map_err(|source| SyncError::Keyring {
                    library_id: library_id.to_owned(),
                    source,
                }),
            KeyStore::Files(home) => {
                let path = Self::file(home, library_id);
                if let Some(dir) = path.parent() {
                    private_dir(dir)?;
                }
                write_private(&path, text.as_bytes())
            }
        }
    }

    /// Deletes a library's key (`leave`); a key that is already gone is
    /// fine. Every library file on this machine synced with that library
    /// and using this store loses its key with it.
    pub fn delete(&self, library_id: &str) -> Result<(), SyncError> {
        // The S3 credentials an invite carried go with the keys.
        for (entry, file) in [
            (
                Self::entry_name(library_id),
                self.home_file(library_id, Self::file),
            ),
            (
                Self::credentials_entry(library_id),
                self.home_file(library_id, Self::credentials_file),
            ),
        ] {
            match file {
                None => {
                    match keyring::Entry::new("bae", &entry).and_then(|e| e.delete_credential()) {
                        Ok(()) | Err(keyring::Error::NoEntry) => {}
                        Err(source) => {
                            return Err(SyncError::Keyring {
                                library_id: library_id.to_owned(),
                                source,
                            })
                        }
                    }
                }
                Some(path) => match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(SyncError::io(&path, e)),
                },
            }
        }
        Ok(())
    }

    /// The file `place` names under the home, for a file-backed store.
    fn home_file(&self, library_id: &str, place: fn(&Path, &str) -> PathBuf) -> Option<PathBuf> {
        match self {
            KeyStore::Os => None,
            KeyStore::Files(home) => Some(place(home, library_id)),
        }
    }

    /// Loads a library's keys, every epoch it has held.
    pub fn load(&self, library_id: &str) -> Result<KeyRing, SyncError> {
        let text = match self {
            KeyStore::Os => zeroize::Zeroizing::new(
                keyring::Entry::new("bae", &Self::entry_name(library_id))
                    .and_then(|e| e.get_password())
                    .map_err(|source| SyncError::Keyring {
                        library_id: library_id.to_owned(),
                        source,
                    })?,
            ),
            KeyStore::Files(home) => read_private_text(&Self::file(home, library_id))?,
        };
        parse_ring(&text)
    }
}

/// A stored key ring's text: the key text of epoch 0, 1, … one per line
/// (a library never rotated has one line, the text of its only key).
fn ring_text(ring: &KeyRing) -> Result<zeroize::Zeroizing<String>, SyncError> {
    let mut text = zeroize::Zeroizing::new(String::new());
    for (n, (epoch, key)) in ring.iter().enumerate() {
        match u32::try_from(n) {
            Ok(n) if n == epoch.0 => {}
            Ok(n) => return Err(SyncError::KeyRingGap { epoch: KeyEpoch(n) }),
            Err(_) => return Err(SyncError::KeyRingGap { epoch }),
        }
        text.push_str(&key.to_key_text());
        text.push('\n');
    }
    if text.is_empty() {
        return Err(SyncError::NoCurrentKey);
    }
    Ok(text)
}

/// Parses [`ring_text`]'s output.
fn parse_ring(text: &str) -> Result<KeyRing, SyncError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    // An empty text fails the way a damaged first line does.
    let first = LibraryKey::from_key_text(lines.next().unwrap_or_default())?;
    let mut ring = KeyRing::from(first);
    for (epoch, line) in (1u32..).zip(lines) {
        ring.insert(KeyEpoch(epoch), LibraryKey::from_key_text(line)?);
    }
    Ok(ring)
}

/// What `key export` writes and `join --key-file` reads: the library key,
/// the user's identity (so another device of the same user signs as the
/// same member) and the library's founder. The text is the library key's
/// line, the identity's line, then `bae-founder-v1:` and the founder's
/// public key (`docs/FORMAT-crypto.md`, key file).
pub struct KeyFile {
    /// The library key.
    pub key: LibraryKey,
    /// The user's signing identity.
    pub identity: IdentitySigningKey,
    /// The library's founder (the membership chain's root), which `join`
    /// pins instead of trusting the bucket's marker; `None` in a key file
    /// written before it was added.
    pub founder: Option<IdentityPublicKey>,
}

/// The prefix of a key file's founder line.
const FOUNDER_LINE_PREFIX: &str = "bae-founder-v1:";

impl KeyFile {
    /// The file's text: each key's text form on a line of its own.
    pub fn to_text(&self) -> zeroize::Zeroizing<String> {
        let (key, identity) = (self.key.to_key_text(), self.identity.to_key_text());
        // One zeroizing buffer with room for everything, so no reallocation
        // leaves a copy of a secret behind.
        let mut text =
            zeroize::Zeroizing::new(String::with_capacity(key.len() + identity.len() + 2));
        text.push_str(&key);
        text.push('\n');
        text.push_str(&identity);
        text.push('\n');
        if let Some(founder) = &self.founder {
            text.push_str(FOUNDER_LINE_PREFIX);
            text.push_str(&founder.to_string());
            text.push('\n');
        }
        text
    }
}

/// Reads a key file (`bae-sync key export` output): the library key line,
/// then the identity line. A file with only the key line (written before
/// phase 2) is [`SyncError::KeyFileWithoutIdentity`]. A key file that others
/// can read (or write) is refused: the keys may already have leaked, and
/// the owner should know (the error says how to fix the mode).
pub fn read_key_file(path: &Path) -> Result<KeyFile, SyncError> {
    let text = read_private_text(path)?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let key = LibraryKey::from_key_text(lines.next().unwrap_or_default())?;
    let identity = lines
        .next()
        .ok_or_else(|| SyncError::KeyFileWithoutIdentity {
            path: path.display().to_string(),
        })?;
    let identity = IdentitySigningKey::from_key_text(identity).map_err(|source| {
        bae_membership::IdentityError::Damaged {
            place: path.display().to_string(),
            source,
        }
    })?;
    let founder = match lines.next() {
        None => None,
        Some(line) => Some(
            line.strip_prefix(FOUNDER_LINE_PREFIX)
                .and_then(|hex| IdentityPublicKey::from_hex(hex).ok())
                .ok_or_else(|| SyncError::KeyFileFounder {
                    path: path.display().to_string(),
                })?,
        ),
    };
    Ok(KeyFile {
        key,
        identity,
        founder,
    })
}

/// The text of a file only its owner may read or write.
fn read_private_text(path: &Path) -> Result<zeroize::Zeroizing<String>, SyncError> {
    use std::io::Read;
    // The mode is checked on the open handle, so the file checked is the
    // file read.
    let mut file = std::fs::File::open(path).map_err(|e| SyncError::io(path, e))?;
    check_private(path, &file)?;
    let mut text = zeroize::Zeroizing::new(String::new());
    file.read_to_string(&mut text)
        .map_err(|e| SyncError::io(path, e))?;
    Ok(text)
}

/// Refuses a file whose mode lets anyone but its owner read or write it.
fn check_private(path: &Path, file: &std::fs::File) -> Result<(), SyncError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = file.metadata().map_err(|e| SyncError::io(path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SyncError::KeyFileNotPrivate {
                path: path.display().to_string(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, file);
    Ok(())
}

/// Creates `dir` (and its parents) if needed and makes it private to its
/// owner (0700): the directory of key files lists which libraries exist.
fn private_dir(dir: &Path) -> Result<(), SyncError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| SyncError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| SyncError::io(dir, e))?;
    }
    Ok(())
}

/// Creates `path` exclusively (never replacing or following anything
/// already there: an existing path is [`SyncError::ExportTargetExists`])
/// with mode 0600, writes `bytes` and makes them durable.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), SyncError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => SyncError::ExportTargetExists {
            path: path.display().to_string(),
        },
        _ => SyncError::io(path, e),
    })?;
    let written = (|| {
        // The mode given at creation is masked by the umask; set it exactly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        // The file is ours (created above): a half-written key file must
        // not stay behind to block the retry.
        let _ = std::fs::remove_file(path);
        return Err(SyncError::io(path, e));
    }
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| SyncError::io(dir, e))?;
    }
    Ok(())
}

/// Writes a file only its owner can read (0600), replacing `path`
/// atomically: the bytes go to a new temp file next to it (created
/// exclusively, so never through a symlink an attacker placed) and are
/// renamed over `path` (which replaces a symlink itself, never its target).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SyncError> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".bae-key-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(|e| SyncError::io(dir, e))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| SyncError::io(tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| SyncError::io(path, e.error))?;
    // The rename is durable only once the directory is: after `init` the
    // key file may be the only copy of the key.
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SyncError::io(dir, e))?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn key_files_and_their_directory_are_private() {
        let home = tempfile::tempdir().unwrap();
        let store = KeyStore::Files(home.path().to_path_buf());
        let key = LibraryKey::generate();
        store.save("lib", &KeyRing::from(key.clone())).unwrap();
        assert_eq!(mode(&home.path().join("keys")), 0o700);
        assert_eq!(mode(&KeyStore::file(home.path(), "lib")), 0o600);
        assert_eq!(store.load("lib").unwrap().get(KeyEpoch::FIRST), Some(&key));
    }

    #[test]
    fn every_epoch_of_a_ring_is_stored_and_a_gap_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let store = KeyStore::Files(home.path().to_path_buf());
        let keys: Vec<LibraryKey> = (0..3).map(|_| LibraryKey::generate()).collect();
        let mut ring = KeyRing::new();
        for (epoch, key) in (0..).zip(&keys) {
            ring.insert(KeyEpoch(epoch), key.clone());
        }
        store.save("lib", &ring).unwrap();
        let back = store.load("lib").unwrap();
        assert_eq!(back.current().unwrap().0, KeyEpoch(2));
        for (epoch, key) in (0..).zip(&keys) {
            assert_eq!(back.get(KeyEpoch(epoch)), Some(key));
        }
        let mut gap = KeyRing::from(keys[0].clone());
        gap.insert(KeyEpoch(2), keys[2].clone());
        let err = store.save("other", &gap).unwrap_err();
        assert!(
            matches!(err, SyncError::KeyRingGap { epoch: KeyEpoch(1) }),
            "{err}"
        );
        // A damaged later line is refused, not dropped.
        let path = KeyStore::file(home.path(), "lib");
        let text = std::fs::read_to_string(&path).unwrap();
        write_private(
            &path,
            text.replacen("bae-library-key-v2:", "bae-library-key-v2:zz", 2)
                .as_bytes(),
        )
        .unwrap();
        assert!(store.load("lib").is_err());
    }

    #[test]
    fn a_symlink_at_a_key_path_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, b"precious").unwrap();
        let link = dir.path().join("library.key");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_private(&link, b"secret").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&link).unwrap(), b"secret");
        assert_eq!(mode(&link), 0o600);
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_with_a_chmod_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("library.key");
        let key = LibraryKey::generate();
        write_private(&path, key.to_key_text().as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private_text(&path).unwrap_err();
        assert!(
            matches!(err, SyncError::KeyFileNotPrivate { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            parse_ring(&read_private_text(&path).unwrap())
                .unwrap()
                .get(KeyEpoch::FIRST),
            Some(&key)
        );
    }
}
