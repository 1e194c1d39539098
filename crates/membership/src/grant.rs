//! Share grants: what a library member hands someone outside the library
//! so they can fetch and decrypt one release, and nothing else.
//!
//! A grant is one binary file: the release and library it is for, the
//! granter's and recipient's public keys, an expiry, the bucket coordinates
//! (where the objects are), a payload sealed to the recipient
//! (`crypto_box_seal`) holding the release key, the manifest of the
//! release's files and optionally S3 credentials, and the granter's Ed25519
//! signature over [`GRANT_SIGNING_CONTEXT`] and every byte before it. A
//! [`Grant`] value exists only once its fields parsed and its signature
//! verified; [`Grant::open`] then checks it is addressed to the reader and
//! not expired before unsealing.
//!
//! Every length is bounded before anything is allocated; file names in the
//! manifest are hostile (they become paths on the recipient's disk) and are
//! refused unless each is one plain, distinct file name.
//!
//! Layout, the order of checks and a test vector: `docs/FORMAT-grant.md`.

use crate::invite::{
    InviteCredentials, MAX_ACCESS_KEY_BYTES, MAX_SECRET_KEY_BYTES, MAX_SESSION_TOKEN_BYTES,
};
use crate::library::LibraryId;
use bae_crypto::chunked::{BaseNonce, NONCE_LEN};
use bae_crypto::seal::SEAL_OVERHEAD;
use bae_crypto::{
    open_sealed, seal_to, IdentityPublicKey, IdentitySigningKey, ReleaseKey, SealError, Signature,
};
use std::collections::HashSet;
use std::fmt;
use zeroize::Zeroizing;

/// What every grant file starts with.
pub const GRANT_MAGIC: &[u8; 8] = b"baegrant";
/// The grant version this build writes and reads.
pub const GRANT_VERSION: u8 = 1;
/// The payload version this build writes and reads.
pub const PAYLOAD_VERSION: u8 = 1;
/// What the granter's signature covers before the grant's bytes.
pub const GRANT_SIGNING_CONTEXT: &[u8] = b"bae-share-grant-v1";
/// The longest release id.
pub const MAX_RELEASE_ID_BYTES: usize = 256;
/// The longest local bucket path.
pub const MAX_PATH_BYTES: usize = 4096;
/// The longest S3 bucket name (S3 allows 63; other servers more).
pub const MAX_BUCKET_NAME_BYTES: usize = 255;
/// The longest S3 prefix.
pub const MAX_PREFIX_BYTES: usize = 1024;
/// The longest S3 endpoint URL.
pub const MAX_ENDPOINT_BYTES: usize = 2048;
/// The longest S3 region.
pub const MAX_REGION_BYTES: usize = 128;
/// The most files a grant lists.
pub const MAX_FILES: usize = 4096;
/// The longest file id.
pub const MAX_FILE_ID_BYTES: usize = 64;
/// The longest file name (most file systems' limit).
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// The longest encryption scheme name.
pub const MAX_SCHEME_BYTES: usize = 32;
const SIGNATURE_LEN: usize = 64;
const KEY_LEN: usize = 32;
/// One manifest entry at its largest.
const MAX_FILE_ENTRY: usize =
    (2 + MAX_FILE_ID_BYTES) + (2 + MAX_FILE_NAME_BYTES) + 8 + NONCE_LEN + (2 + MAX_SCHEME_BYTES);
/// The largest payload plaintext.
const MAX_PAYLOAD_LEN: usize = 1
    + 16
    + (2 + MAX_RELEASE_ID_BYTES)
    + KEY_LEN
    + KEY_LEN
    + 2
    + MAX_FILES * MAX_FILE_ENTRY
    + 1
    + (2 + MAX_ACCESS_KEY_BYTES)
    + (2 + MAX_SECRET_KEY_BYTES)
    + 1
    + (2 + MAX_SESSION_TOKEN_BYTES);
/// The largest sealed payload.
pub const MAX_SEALED_PAYLOAD_BYTES: usize = MAX_PAYLOAD_LEN + SEAL_OVERHEAD;
/// The largest S3 coordinates.
const MAX_S3_LEN: usize = (2 + MAX_BUCKET_NAME_BYTES)
    + (2 + MAX_PREFIX_BYTES)
    + (2 + MAX_ENDPOINT_BYTES)
    + (2 + MAX_REGION_BYTES)
    + 1;
/// The largest grant file.
pub const MAX_GRANT_BYTES: usize = GRANT_MAGIC.len()
    + 1
    + 16
    + (2 + MAX_RELEASE_ID_BYTES)
    + KEY_LEN
    + KEY_LEN
    + 8
    + 1
    + max(2 + MAX_PATH_BYTES, MAX_S3_LEN)
    + 4
    + MAX_SEALED_PAYLOAD_BYTES
    + SIGNATURE_LEN;

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Why a grant cannot be made, read, or opened.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// Larger than any grant.
    #[error("grant is {len} bytes, more than any grant ({MAX_GRANT_BYTES})")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Does not start with the grant magic.
    #[error("not a grant file (it does not start with \"baegrant\")")]
    NotAGrant,
    /// A grant of another version.
    #[error("grant version {version} is not supported (this build reads version {GRANT_VERSION}); update bae-sync")]
    UnsupportedVersion {
        /// The version byte.
        version: u8,
    },
    /// The bytes end inside a field.
    #[error("grant is truncated: it ends inside its {field}")]
    Truncated {
        /// The field cut short.
        field: &'static str,
    },
    /// Bytes after the signature.
    #[error("grant has {count} bytes after its signature")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A field longer (or shorter) than the format allows.
    #[error("grant {field} is {len} bytes, outside {min}..={max}")]
    FieldLength {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The least allowed.
        min: usize,
        /// The most allowed.
        max: usize,
    },
    /// A text field that is not UTF-8.
    #[error("grant {field} is not UTF-8")]
    BadUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A 32-byte field that is not an Ed25519 public key.
    #[error("grant {field} is not a public key")]
    BadKey {
        /// `granter` or `recipient`.
        field: &'static str,
    },
    /// A byte that must be one of a few values is not.
    #[error("grant {field} byte {byte} is not one this build knows")]
    BadByte {
        /// The field (`bucket kind`, `addressing style`, `credentials flag`,
        /// `session-token flag`).
        field: &'static str,
        /// The byte.
        byte: u8,
    },
    /// The signature does not verify: some byte was changed after signing.
    #[error("grant signature does not verify against its granter's key: the grant was altered")]
    BadSignature,
    /// Addressed to another identity.
    #[error("this grant is for {recipient}, not for this identity ({identity}); ask the granter for a grant made for {identity}")]
    NotForYou {
        /// Whom it is addressed to.
        recipient: Box<IdentityPublicKey>,
        /// The identity reading it.
        identity: Box<IdentityPublicKey>,
    },
    /// Past its expiry.
    #[error("this grant expired at {expires_at} (unix seconds; now {now}); ask the granter for a new one")]
    Expired {
        /// When it expired.
        expires_at: u64,
        /// The time it was read.
        now: u64,
    },
    /// The sealed payload does not open.
    #[error("grant payload: {0}")]
    Seal(#[from] SealError),
    /// An opened payload of a version this build does not read.
    #[error(
        "grant payload version {version} is not supported (this build reads {PAYLOAD_VERSION})"
    )]
    PayloadVersion {
        /// The version byte.
        version: u8,
    },
    /// The payload names another library, release or recipient than the
    /// grant around it: a payload moved from another grant.
    #[error("grant payload is bound to another {field} than its grant")]
    PayloadMismatch {
        /// `library`, `release` or `recipient`.
        field: &'static str,
    },
    /// A manifest file name that is not one plain file name.
    #[error("grant file name {name:?} is refused: {reason}")]
    BadFileName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Two manifest entries with the same file name (ignoring ASCII case)
    /// or the same id.
    #[error("grant lists {field} {value:?} twice")]
    Duplicate {
        /// `file name` or `file id`.
        field: &'static str,
        /// The repeated value.
        value: String,
    },
    /// More files than a grant carries.
    #[error("grant lists {count} files, more than {MAX_FILES}")]
    TooManyFiles {
        /// How many.
        count: usize,
    },
}

/// Where the release's objects are: what the recipient needs to reach them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantBucket {
    /// A local directory (a NAS mount the recipient shares, or a test).
    Local {
        /// The directory.
        path: String,
    },
    /// An S3-compatible bucket.
    S3 {
        /// The bucket name.
        bucket: String,
        /// The library's prefix inside the bucket (`""` for none).
        prefix: String,
        /// The endpoint URL; `None` for AWS.
        endpoint: Option<String>,
        /// The region; `None` for the reader's default.
        region: Option<String>,
        /// Path-style addressing (`endpoint/bucket/key`) rather than
        /// virtual-host.
        path_style: bool,
    },
}

/// One release file as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantFile {
    /// The file's id (its object is `storage/{ab}/{cd}/{id}`).
    pub id: String,
    /// Its original file name, what the recipient's copy is called.
    pub name: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// The base nonce it was encrypted under.
    pub nonce: BaseNonce,
    /// Its encryption scheme (`bae-chunked-v1`).
    pub scheme: String,
}

/// What is sealed to the recipient. `Debug` shows no key or secret.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantPayload {
    /// The release's key.
    pub release_key: ReleaseKey,
    /// The release's files.
    pub files: Vec<GrantFile>,
    /// S3 credentials to read the bucket, if the granter shared theirs.
    pub credentials: Option<InviteCredentials>,
}

impl fmt::Debug for GrantPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantPayload")
            .field("release_key", &"<redacted>")
            .field("files", &self.files)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// The clear fields of a grant, before it is signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantTerms {
    /// The library the release belongs to.
    pub library_id: LibraryId,
    /// The release.
    pub release_id: String,
    /// Whom the grant is for.
    pub recipient: IdentityPublicKey,
    /// When it stops being honoured (unix seconds).
    pub expires_at: u64,
    /// Where the objects are.
    pub bucket: GrantBucket,
}

/// A grant whose fields parsed and whose signature verified.
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    terms: GrantTerms,
    granter: IdentityPublicKey,
    sealed: Vec<u8>,
    bytes: Vec<u8>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("terms", &self.terms)
            .field("granter", &self.granter)
            .field("sealed", &format_args!("{} bytes", self.sealed.len()))
            .finish()
    }
}

impl Grant {
    /// Seals `payload` to the recipient, then signs every field as
    /// `granter`. Refuses what a reader would refuse (bad names, fields
    /// over their bounds).
    pub fn issue(
        granter: &IdentitySigningKey,
        terms: GrantTerms,
        payload: &GrantPayload,
    ) -> Result<Grant, GrantError> {
        let plain = payload_plaintext(&terms, payload)?;
        let sealed = seal_to(&terms.recipient, &plain)?;
        let mut bytes = Vec::with_capacity(MAX_GRANT_BYTES.min(sealed.len() + 8192));
        write_clear(&mut bytes, &terms, &granter.public_key())?;
        put_len(&mut bytes, "sealed payload", sealed.len(), 4)?;
        bytes.extend_from_slice(&sealed);
        let signature = granter.sign(&signing_message(&bytes));
        bytes.extend_from_slice(&signature.to_bytes());
        Ok(Grant {
            terms,
            granter: granter.public_key(),
            sealed,
            bytes,
        })
    }

    /// Reads a grant file and verifies its signature. Checks, in order:
    /// the size, the magic, the version, each field, that nothing follows
    /// the signature, then the signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Grant, GrantError> {
        if bytes.len() > MAX_GRANT_BYTES {
            return Err(GrantError::TooLarge { len: bytes.len() });
        }
        let mut r = Reader { rest: bytes };
        if r.take::<8>("magic").map_err(|_| GrantError::NotAGrant)? != *GRANT_MAGIC {
            return Err(GrantError::NotAGrant);
        }
        let [version] = r.take("version")?;
        if version != GRANT_VERSION {
            return Err(GrantError::UnsupportedVersion { version });
        }
        let library_id = LibraryId::from_bytes(r.take("library id")?);
        let release_id = r.string("release id", 1, MAX_RELEASE_ID_BYTES)?;
        let granter = r.key("granter")?;
        let recipient = r.key("recipient")?;
        let expires_at = u64::from_le_bytes(r.take("expiry")?);
        let bucket = read_bucket(&mut r)?;
        let len = r.len32("sealed payload", SEAL_OVERHEAD, MAX_SEALED_PAYLOAD_BYTES)?;
        let sealed = r.bytes(len, "sealed payload")?.to_vec();
        let signed_len = bytes.len() - r.rest.len();
        let signature = Signature::from_bytes(r.take::<SIGNATURE_LEN>("signature")?);
        if !r.rest.is_empty() {
            return Err(GrantError::TrailingBytes {
                count: r.rest.len(),
            });
        }
        granter
            .verify(&signing_message(&bytes[..signed_len]), &signature)
            .map_err(|_| GrantError::BadSignature)?;
        Ok(Grant {
            terms: GrantTerms {
                library_id,
                release_id,
                recipient,
                expires_at,
                bucket,
            },
            granter,
            sealed,
            bytes: bytes.to_vec(),
        })
    }

    /// The grant file's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The clear fields.
    pub fn terms(&self) -> &GrantTerms {
        &self.terms
    }

    /// Who signed it.
    pub fn granter(&self) -> &IdentityPublicKey {
        &self.granter
    }

    /// Opens the payload as `identity` at `now` (unix seconds). Checks, in
    /// order: the recipient, the expiry, the sealed box, then the payload's
    /// version, binding to this grant, and each field.
    pub fn open(
        &self,
        identity: &IdentitySigningKey,
        now: u64,
    ) -> Result<GrantPayload, GrantError> {
        let me = identity.public_key();
        if me != self.terms.recipient {
            return Err(GrantError::NotForYou {
                recipient: Box::new(self.terms.recipient),
                identity: Box::new(me),
            });
        }
        if now >= self.terms.expires_at {
            return Err(GrantError::Expired {
                expires_at: self.terms.expires_at,
                now,
            });
        }
        let plain = open_sealed(identity, &self.sealed)?;
        parse_payload(&plain, &self.terms)
    }
}

/// The message the granter signs: the context, then the grant's bytes up
/// to the signature.
pub fn signing_message(signed: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(GRANT_SIGNING_CONTEXT.len() + signed.len());
    m.extend_from_slice(GRANT_SIGNING_CONTEXT);
    m.extend_from_slice(signed);
    m
}

/// Refuses a file name that is not one plain file name: empty, `.` or
/// `..`, a path separator, a NUL or control character, or over
/// [`MAX_FILE_NAME_BYTES`].
pub fn check_file_name(name: &str) -> Result<(), GrantError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("it names a directory")
    } else if name.contains(['/', '\\']) {
        Some("it contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if name.len() > MAX_FILE_NAME_BYTES {
        Some("it is longer than 255 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(GrantError::BadFileName {
            name: name.chars().take(300).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Refuses a manifest with too many files, a bad name, or a name or id
/// listed twice (names compared ignoring ASCII case, as a case-insensitive
/// file system would).
fn check_manifest(files: &[GrantFile]) -> Result<(), GrantError> {
    if files.len() > MAX_FILES {
        return Err(GrantError::TooManyFiles { count: files.len() });
    }
    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    for f in files {
        check_file_name(&f.name)?;
        if !names.insert(f.name.to_ascii_lowercase()) {
            return Err(GrantError::Duplicate {
                field: "file name",
                value: f.name.clone(),
            });
        }
        if !ids.insert(f.id.as_str()) {
            return Err(GrantError::Duplicate {
                field: "file id",
                value: f.id.clone(),
            });
        }
    }
    Ok(())
}

fn write_clear(
    out: &mut Vec<u8>,
    terms: &GrantTerms,
    granter: &IdentityPublicKey,
) -> Result<(), GrantError> {
    out.extend_from_slice(GRANT_MAGIC);
    out.push(GRANT_VERSION);
    out.extend_from_slice(terms.library_id.as_bytes());
    put_str(
        out,
        "release id",
        &terms.release_id,
        1,
        MAX_RELEASE_ID_BYTES,
    )?;
    out.extend_from_slice(&granter.to_bytes());
    out.extend_from_slice(&terms.recipient.to_bytes());
    out.extend_from_slice(&terms.expires_at.to_le_bytes());
    match &terms.bucket {
        GrantBucket::Local { path } => {
            out.push(0);
            put_str(out, "bucket path", path, 1, MAX_PATH_BYTES)?;
        }
        GrantBucket::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            path_style,
        } => {
            out.push(1);
            put_str(out, "bucket name", bucket, 1, MAX_BUCKET_NAME_BYTES)?;
            put_str(out, "bucket prefix", prefix, 0, MAX_PREFIX_BYTES)?;
            let endpoint = endpoint.as_deref().unwrap_or("");
            put_str(out, "endpoint", endpoint, 0, MAX_ENDPOINT_BYTES)?;
            let region = region.as_deref().unwrap_or("");
            put_str(out, "region", region, 0, MAX_REGION_BYTES)?;
            out.push(u8::from(!path_style));
        }
    }
    Ok(())
}

fn read_bucket(r: &mut Reader<'_>) -> Result<GrantBucket, GrantError> {
    match r.take::<1>("bucket kind")? {
        [0] => Ok(GrantBucket::Local {
            path: r.string("bucket path", 1, MAX_PATH_BYTES)?,
        }),
        [1] => {
            let bucket = r.string("bucket name", 1, MAX_BUCKET_NAME_BYTES)?;
            let prefix = r.string("bucket prefix", 0, MAX_PREFIX_BYTES)?;
            let endpoint = r.string("endpoint", 0, MAX_ENDPOINT_BYTES)?;
            let region = r.string("region", 0, MAX_REGION_BYTES)?;
            let path_style = match r.take::<1>("addressing style")? {
                [0] => true,
                [1] => false,
                [byte] => {
                    return Err(GrantError::BadByte {
                        field: "addressing style",
                        byte,
                    })
                }
            };
            Ok(GrantBucket::S3 {
                bucket,
                prefix,
                endpoint: Some(endpoint).filter(|e| !e.is_empty()),
                region: Some(region).filter(|r| !r.is_empty()),
                path_style,
            })
        }
        [byte] => Err(GrantError::BadByte {
            field: "bucket kind",
            byte,
        }),
    }
}

/// The payload plaintext: `version || library id || release id ||
/// recipient || release key || files || credentials flag [|| credentials]`.
pub fn payload_plaintext(
    terms: &GrantTerms,
    payload: &GrantPayload,
) -> Result<Zeroizing<Vec<u8>>, GrantError> {
    check_manifest(&payload.files)?;
    // Sized up front so no reallocation leaves a copy of a secret.
    let mut out = Zeroizing::new(Vec::with_capacity(
        256 + payload.files.len() * MAX_FILE_ENTRY + 5000,
    ));
    out.push(PAYLOAD_VERSION);
    out.extend_from_slice(terms.library_id.as_bytes());
    put_str(
        &mut out,
        "release id",
        &terms.release_id,
        1,
        MAX_RELEASE_ID_BYTES,
    )?;
    out.extend_from_slice(&terms.recipient.to_bytes());
    out.extend_from_slice(payload.release_key.expose_secret());
    out.extend_from_slice(&(payload.files.len() as u16).to_le_bytes());
    for f in &payload.files {
        put_str(&mut out, "file id", &f.id, 1, MAX_FILE_ID_BYTES)?;
        put_str(&mut out, "file name", &f.name, 1, MAX_FILE_NAME_BYTES)?;
        out.extend_from_slice(&f.size.to_le_bytes());
        out.extend_from_slice(f.nonce.as_bytes());
        put_str(&mut out, "scheme", &f.scheme, 1, MAX_SCHEME_BYTES)?;
    }
    match &payload.credentials {
        None => out.push(0),
        Some(c) => {
            out.push(1);
            put_str(
                &mut out,
                "access key",
                &c.access_key,
                0,
                MAX_ACCESS_KEY_BYTES,
            )?;
            put_str(
                &mut out,
                "secret key",
                &c.secret_key,
                0,
                MAX_SECRET_KEY_BYTES,
            )?;
            match &c.session_token {
                None => out.push(0),
                Some(t) => {
                    out.push(1);
                    put_str(&mut out, "session token", t, 0, MAX_SESSION_TOKEN_BYTES)?;
                }
            }
        }
    }
    Ok(out)
}

/// Reads a payload plaintext and checks it is bound to `terms`.
pub fn parse_payload(plain: &[u8], terms: &GrantTerms) -> Result<GrantPayload, GrantError> {
    let mut r = Reader { rest: plain };
    let [version] = r.take("payload version")?;
    if version != PAYLOAD_VERSION {
        return Err(GrantError::PayloadVersion { version });
    }
    let mismatch = |field| GrantError::PayloadMismatch { field };
    if LibraryId::from_bytes(r.take("payload library id")?) != terms.library_id {
        return Err(mismatch("library"));
    }
    if r.string("payload release id", 1, MAX_RELEASE_ID_BYTES)? != terms.release_id {
        return Err(mismatch("release"));
    }
    if r.take::<KEY_LEN>("payload recipient")? != terms.recipient.to_bytes() {
        return Err(mismatch("recipient"));
    }
    let release_key = ReleaseKey::from_bytes(*Zeroizing::new(r.take("release key")?));
    let count = usize::from(u16::from_le_bytes(r.take("file count")?));
    if count > MAX_FILES {
        return Err(GrantError::TooManyFiles { count });
    }
    // Each entry is at least 2 + 1 + 2 + 1 + 8 + 24 + 2 + 1 bytes: a count
    // the rest cannot hold is refused before anything is allocated for it.
    if count * 41 > r.rest.len() {
        return Err(GrantError::Truncated { field: "manifest" });
    }
    let mut files = Vec::with_capacity(count);
    for _ in 0..count {
        files.push(GrantFile {
            id: r.string("file id", 1, MAX_FILE_ID_BYTES)?,
            name: r.string("file name", 1, MAX_FILE_NAME_BYTES)?,
            size: u64::from_le_bytes(r.take("file size")?),
            nonce: BaseNonce::from_bytes(r.take("file nonce")?),
            scheme: r.string("scheme", 1, MAX_SCHEME_BYTES)?,
        });
    }
    check_manifest(&files)?;
    let credentials = match r.take::<1>("credentials flag")? {
        [0] => None,
        [1] => {
            let access_key = r.string("access key", 0, MAX_ACCESS_KEY_BYTES)?;
            let secret_key = Zeroizing::new(r.string("secret key", 0, MAX_SECRET_KEY_BYTES)?);
            let session_token = match r.take::<1>("session-token flag")? {
                [0] => None,
                [1] => Some(Zeroizing::new(r.string(
                    "session token",
                    0,
                    MAX_SESSION_TOKEN_BYTES,
                )?)),
                [byte] => {
                    return Err(GrantError::BadByte {
                        field: "session-token flag",
                        byte,
                    })
                }
            };
            Some(InviteCredentials {
                access_key,
                secret_key,
                session_token,
            })
        }
        [byte] => {
            return Err(GrantError::BadByte {
                field: "credentials flag",
                byte,
            })
        }
    };
    if !r.rest.is_empty() {
        return Err(GrantError::TrailingBytes {
            count: r.rest.len(),
        });
    }
    Ok(GrantPayload {
        release_key,
        files,
        credentials,
    })
}

fn put_len(
    out: &mut Vec<u8>,
    field: &'static str,
    len: usize,
    width: usize,
) -> Result<(), GrantError> {
    if width == 2 {
        let len = u16::try_from(len).map_err(|_| GrantError::FieldLength {
            field,
            len,
            min: 0,
            max: usize::from(u16::MAX),
        })?;
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        let len = u32::try_from(len).map_err(|_| GrantError::FieldLength {
            field,
            len,
            min: 0,
            max: MAX_SEALED_PAYLOAD_BYTES,
        })?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    Ok(())
}

/// `length (u16 LE) || UTF-8`, refusing a length outside `min..=max`.
fn put_str(
    out: &mut Vec<u8>,
    field: &'static str,
    s: &str,
    min: usize,
    max: usize,
) -> Result<(), GrantError> {
    if !(min..=max).contains(&s.len()) {
        return Err(GrantError::FieldLength {
            field,
            len: s.len(),
            min,
            max,
        });
    }
    put_len(out, field, s.len(), 2)?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Reads fields off the front of a slice.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], GrantError> {
        if self.rest.len() < n {
            return Err(GrantError::Truncated { field });
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], GrantError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    fn checked(
        field: &'static str,
        len: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, GrantError> {
        if (min..=max).contains(&len) {
            Ok(len)
        } else {
            Err(GrantError::FieldLength {
                field,
                len,
                min,
                max,
            })
        }
    }

    fn len32(&mut self, field: &'static str, min: usize, max: usize) -> Result<usize, GrantError> {
        let len = u32::from_le_bytes(self.take(field)?) as usize;
        Self::checked(field, len, min, max)
    }

    fn string(
        &mut self,
        field: &'static str,
        min: usize,
        max: usize,
    ) -> Result<String, GrantError> {
        let len = usize::from(u16::from_le_bytes(self.take(field)?));
        let len = Self::checked(field, len, min, max)?;
        let bytes = self.bytes(len, field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| GrantError::BadUtf8 { field })
    }

    fn key(&mut self, field: &'static str) -> Result<IdentityPublicKey, GrantError> {
        IdentityPublicKey::from_bytes(&self.take(field)?).map_err(|_| GrantError::BadKey { field })
    }
}

#[cfg(test)]
mod tests;
