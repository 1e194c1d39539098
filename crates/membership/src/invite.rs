//! Invite codes: what an owner or admin hands an invitee out of band so the
//! invitee's `bae-sync join` can find the library.
//!
//! A code is one line: [`INVITE_CODE_PREFIX`] then lowercase RFC 4648
//! base32 (no padding) of a binary record: its length, flags, the library
//! id, the inviter's and invitee's public keys, the role granted, the bucket
//! URL, optionally S3 credentials sealed to the invitee, and a CRC-32 so a
//! typo or a line cut short is caught before any I/O. The code is not a
//! secret (credentials in it are sealed), and not an authority either: the
//! membership chain says who is a member, the code only says where to look.
//!
//! Decoding bounds every length before it allocates and never panics.
//! Layout, the order of checks and test vectors: `docs/FORMAT-membership.md`,
//! section "Invite code".

use crate::entry::Role;
use crate::library::LibraryId;
use bae_crypto::seal::SEAL_OVERHEAD;
use bae_crypto::{open_sealed, seal_to, IdentityPublicKey, IdentitySigningKey, SealError};
use std::fmt;
use zeroize::Zeroizing;

/// What every version-1 invite code starts with.
pub const INVITE_CODE_PREFIX: &str = "bae-invite-v1:";
/// What every invite code starts with, whatever its version.
const VERSION_PREFIX: &str = "bae-invite-v";
/// The longest bucket URL an invite carries.
pub const MAX_BUCKET_BYTES: usize = 2048;
/// The longest S3 access key id in sealed credentials.
pub const MAX_ACCESS_KEY_BYTES: usize = 256;
/// The longest S3 secret key in sealed credentials.
pub const MAX_SECRET_KEY_BYTES: usize = 256;
/// The longest S3 session token in sealed credentials (STS tokens run to a
/// few kilobytes).
pub const MAX_SESSION_TOKEN_BYTES: usize = 4096;
/// The credentials plaintext version this build writes and reads.
pub const CREDENTIALS_VERSION: u8 = 1;

/// Flag bit: sealed credentials follow the bucket.
const FLAG_CREDENTIALS: u8 = 1;
/// `version || library id || invitee`, before the credential fields.
const CREDENTIALS_HEADER_LEN: usize = 1 + 16 + 32;
/// The smallest credentials plaintext: empty strings, no token.
const MIN_CREDENTIALS_LEN: usize = CREDENTIALS_HEADER_LEN + 2 + 2 + 1;
const MAX_CREDENTIALS_LEN: usize = CREDENTIALS_HEADER_LEN
    + (2 + MAX_ACCESS_KEY_BYTES)
    + (2 + MAX_SECRET_KEY_BYTES)
    + 1
    + (2 + MAX_SESSION_TOKEN_BYTES);
/// The largest sealed credentials.
pub const MAX_SEALED_CREDENTIALS_BYTES: usize = MAX_CREDENTIALS_LEN + SEAL_OVERHEAD;
/// `length (2) || flags (1) || library id (16) || founder (32) || inviter
/// (32) || invitee (32) || role (1) || bucket length (2)`.
const FIXED_LEN: usize = 2 + 1 + 16 + 32 + 32 + 32 + 1 + 2;
const CHECKSUM_LEN: usize = 4;
/// The smallest record: an empty bucket, no credentials.
const MIN_CODE_BYTES: usize = FIXED_LEN + CHECKSUM_LEN;
/// The largest record a code decodes to.
pub const MAX_CODE_BYTES: usize =
    FIXED_LEN + MAX_BUCKET_BYTES + 2 + MAX_SEALED_CREDENTIALS_BYTES + CHECKSUM_LEN;
/// The most base32 characters after the prefix.
const MAX_CODE_CHARS: usize = (MAX_CODE_BYTES * 8).div_ceil(5);
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why an invite code cannot be read, or its credentials opened.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    /// The text does not start with `bae-invite-v`.
    #[error("not an invite code: an invite code starts with {INVITE_CODE_PREFIX}")]
    MissingPrefix,
    /// An invite code of another version.
    #[error("invite code version {version} is not supported (this build reads version 1); update bae-sync")]
    UnsupportedVersion {
        /// The version in the prefix.
        version: u32,
    },
    /// More characters than any invite code has.
    #[error("invite code is {len} characters after its prefix, more than any invite code ({max})")]
    TooLong {
        /// Characters after the prefix.
        len: usize,
        /// The most an invite code has.
        max: usize,
    },
    /// A character outside the code's alphabet (`a`-`z`, `2`-`7`).
    #[error("invite code has {found:?} at character {at}, which no invite code contains (only a-z and 2-7 follow the prefix)")]
    BadEncoding {
        /// 1-based position in the code, prefix included.
        at: usize,
        /// The character found.
        found: char,
    },
    /// Fewer bytes than the code announces: cut short when copied.
    #[error("invite code is incomplete ({found} of the {expected} bytes it announces); copy the whole line")]
    Truncated {
        /// Bytes the code holds.
        found: usize,
        /// Bytes it should hold.
        expected: usize,
    },
    /// More bytes than the code announces.
    #[error(
        "invite code has {count} bytes more than it announces; was something pasted after it?"
    )]
    TrailingBytes {
        /// Bytes too many.
        count: usize,
    },
    /// The last character carries bits no encoder writes.
    #[error("invite code's last character is not one an encoder writes; it was mistyped")]
    NonCanonical,
    /// The checksum does not match: a typo, or an altered code.
    #[error("invite code checksum does not match: it was mistyped or altered")]
    Checksum,
    /// Flag bits this build does not know.
    #[error("invite code flags {flags:#04x} are not known to this build; update bae-sync")]
    UnknownFlags {
        /// The flags byte.
        flags: u8,
    },
    /// A 32-byte field that is not an Ed25519 public key.
    #[error("invite {field} is not a public key")]
    BadKey {
        /// `founder`, `inviter`, `invitee` or `credentials invitee`.
        field: &'static str,
    },
    /// A role byte that is not a role.
    #[error("invite role byte {byte} is not a role (0 owner, 1 admin, 2 member, 3 reader)")]
    BadRole {
        /// The byte.
        byte: u8,
    },
    /// A text field that is not UTF-8.
    #[error("invite {field} is not UTF-8")]
    BadUtf8 {
        /// `bucket`, `access key`, `secret key` or `session token`.
        field: &'static str,
    },
    /// A field longer than the format allows.
    #[error("invite {field} is {len} bytes, more than {max}")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The sealed credentials do not open (sealed to another identity, or
    /// altered).
    #[error("invite credentials: {source}")]
    Seal {
        /// What the sealed box reported.
        #[from]
        source: SealError,
    },
    /// Opened credentials of a version this build does not read.
    #[error("invite credentials version {version} is not supported (this build reads {CREDENTIALS_VERSION})")]
    CredentialsVersion {
        /// The version byte.
        version: u8,
    },
    /// Opened credentials whose length does not match their fields.
    #[error("invite credentials are {len} bytes, which does not match their fields")]
    CredentialsLength {
        /// Plaintext bytes.
        len: usize,
    },
    /// A session-token flag other than 0 or 1.
    #[error("invite credentials session-token flag {byte} is not 0 or 1")]
    BadTokenFlag {
        /// The byte.
        byte: u8,
    },
    /// Credentials bound to another library.
    #[error("invite credentials are for library {found}, not {expected}")]
    WrongLibrary {
        /// The library of the invite.
        expected: LibraryId,
        /// The library the credentials name.
        found: LibraryId,
    },
    /// An invite, or credentials, addressed to another identity.
    #[error("this invite is for {invitee}, not for this identity ({identity}); ask the inviter for a code made for {identity}")]
    WrongInvitee {
        /// Whom it is addressed to.
        invitee: Box<IdentityPublicKey>,
        /// The identity reading it.
        identity: Box<IdentityPublicKey>,
    },
}

/// An invitation to a library, as its code carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    /// The library.
    pub library_id: LibraryId,
    /// The bucket URL as `bae-sync` stores it (absolute path, `file://`,
    /// `s3://...?endpoint=..`); at most [`MAX_BUCKET_BYTES`].
    pub bucket: String,
    /// The library's founder, whose genesis entry roots the membership
    /// chain. The invitee pins it from the code, not from the bucket: any
    /// key holder (a removed member too) can rewrite the library marker.
    pub founder: IdentityPublicKey,
    /// Who made the invite (and added the invitee to the chain).
    pub inviter: IdentityPublicKey,
    /// Whom the code is for.
    pub invitee: IdentityPublicKey,
    /// The role the chain entry grants; informational (the chain is the
    /// truth).
    pub role: Role,
    /// S3 credentials sealed to the invitee, if the inviter shared theirs.
    pub credentials: Option<SealedCredentials>,
}

/// S3 credentials to reach the bucket. `Debug` shows the access key id
/// only.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteCredentials {
    /// The access key id (not a secret: it names the key).
    pub access_key: String,
    /// The secret key.
    pub secret_key: Zeroizing<String>,
    /// A temporary session token, if the credentials are temporary.
    pub session_token: Option<Zeroizing<String>>,
}

impl fmt::Debug for InviteCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InviteCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// [`InviteCredentials`] sealed (`crypto_box_seal`) to the invitee's X25519
/// key, bound inside to the library id and the invitee. At most
/// [`MAX_SEALED_CREDENTIALS_BYTES`].
#[derive(Clone, PartialEq, Eq)]
pub struct SealedCredentials(Vec<u8>);

impl fmt::Debug for SealedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedCredentials({} bytes)", self.0.len())
    }
}

impl InviteCredentials {
    /// Refuses fields longer than the format carries.
    fn check(&self) -> Result<(), InviteError> {
        bounded("access key", self.access_key.len(), MAX_ACCESS_KEY_BYTES)?;
        bounded("secret key", self.secret_key.len(), MAX_SECRET_KEY_BYTES)?;
        if let Some(token) = &self.session_token {
            bounded("session token", token.len(), MAX_SESSION_TOKEN_BYTES)?;
        }
        Ok(())
    }

    /// The plaintext sealed to the invitee: `version || library id ||
    /// invitee || access key || secret key || token flag [|| token]`, each
    /// string as `length (u16 LE) || UTF-8`.
    pub(crate) fn plaintext(
        &self,
        library_id: LibraryId,
        invitee: &IdentityPublicKey,
    ) -> Result<Zeroizing<Vec<u8>>, InviteError> {
        self.check()?;
        let token = self.session_token.as_ref().map(|t| t.as_bytes());
        let len = MIN_CREDENTIALS_LEN
            + self.access_key.len()
            + self.secret_key.len()
            + token.map_or(0, |t| 2 + t.len());
        // Sized up front so no reallocation leaves a copy of the secret.
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.push(CREDENTIALS_VERSION);
        out.extend_from_slice(library_id.as_bytes());
        out.extend_from_slice(&invitee.to_bytes());
        put_str(&mut out, self.access_key.as_bytes());
        put_str(&mut out, self.secret_key.as_bytes());
        match token {
            Some(token) => {
                out.push(1);
                put_str(&mut out, token);
            }
            None => out.push(0),
        }
        Ok(out)
    }

    fn parse(
        plain: &[u8],
        library_id: LibraryId,
        identity: &IdentityPublicKey,
    ) -> Result<Self, InviteError> {
        let bad_length = |len| InviteError::CredentialsLength { len };
        if plain.len() < MIN_CREDENTIALS_LEN {
            return Err(bad_length(plain.len()));
        }
        let mut r = Reader::new(plain, bad_length);
        let [version] = r.take::<1>()?;
        if version != CREDENTIALS_VERSION {
            return Err(InviteError::CredentialsVersion { version });
        }
        let found = LibraryId::from_bytes(r.take()?);
        if found != library_id {
            return Err(InviteError::WrongLibrary {
                expected: library_id,
                found,
            });
        }
        let invitee = r.take::<32>()?;
        if invitee != identity.to_bytes() {
            let invitee =
                IdentityPublicKey::from_bytes(&invitee).map_err(|_| InviteError::BadKey {
                    field: "credentials invitee",
                })?;
            return Err(InviteError::WrongInvitee {
                invitee: Box::new(invitee),
                identity: Box::new(*identity),
            });
        }
        let access_key = r.string("access key", MAX_ACCESS_KEY_BYTES)?;
        let secret_key = Zeroizing::new(r.string("secret key", MAX_SECRET_KEY_BYTES)?);
        let session_token = match r.take::<1>()? {
            [0] => None,
            [1] => Some(Zeroizing::new(
                r.string("session token", MAX_SESSION_TOKEN_BYTES)?,
            )),
            [byte] => return Err(InviteError::BadTokenFlag { byte }),
        };
        if !r.rest.is_empty() {
            return Err(bad_length(plain.len()));
        }
        Ok(InviteCredentials {
            access_key,
            secret_key,
            session_token,
        })
    }
}

impl SealedCredentials {
    /// Seals `creds` to `invitee`, bound to `library_id` and `invitee`.
    pub fn seal(
        creds: &InviteCredentials,
        library_id: LibraryId,
        invitee: &IdentityPublicKey,
    ) -> Result<Self, InviteError> {
        let plain = creds.plaintext(library_id, invitee)?;
        Ok(SealedCredentials(seal_to(invitee, &plain)?))
    }

    /// Opens credentials sealed to `identity` for `library_id`. Checks, in
    /// order: the sealed box, length, version, library, invitee, each field.
    pub fn open(
        &self,
        library_id: LibraryId,
        identity: &IdentitySigningKey,
    ) -> Result<InviteCredentials, InviteError> {
        let plain = open_sealed(identity, &self.0)?;
        InviteCredentials::parse(&plain, library_id, &identity.public_key())
    }

    /// Sealed bytes as a code carries them (at most
    /// [`MAX_SEALED_CREDENTIALS_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InviteError> {
        bounded(
            "sealed credentials",
            bytes.len(),
            MAX_SEALED_CREDENTIALS_BYTES,
        )?;
        Ok(SealedCredentials(bytes.to_vec()))
    }

    /// The sealed bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Invite {
    /// Refuses an invite no code can carry (a bucket URL over
    /// [`MAX_BUCKET_BYTES`]); [`Invite::to_code`] of such an invite makes a
    /// code that [`Invite::from_code`] refuses.
    pub fn check(&self) -> Result<(), InviteError> {
        bounded("bucket", self.bucket.len(), MAX_BUCKET_BYTES)
    }

    /// Refuses an invite addressed to another identity than `identity`.
    pub fn check_invitee(&self, identity: &IdentityPublicKey) -> Result<(), InviteError> {
        if self.invitee == *identity {
            return Ok(());
        }
        Err(InviteError::WrongInvitee {
            invitee: Box::new(self.invitee),
            identity: Box::new(*identity),
        })
    }

    /// The code: one line, [`INVITE_CODE_PREFIX`] then base32.
    pub fn to_code(&self) -> String {
        let record = self.to_record();
        let mut code = String::with_capacity(INVITE_CODE_PREFIX.len() + MAX_CODE_CHARS);
        code.push_str(INVITE_CODE_PREFIX);
        base32_encode(&record, &mut code);
        code
    }

    /// The record a code encodes (before base32).
    fn to_record(&self) -> Vec<u8> {
        let sealed = self.credentials.as_ref().map(SealedCredentials::as_bytes);
        let len = FIXED_LEN + self.bucket.len() + sealed.map_or(0, |s| 2 + s.len()) + CHECKSUM_LEN;
        let mut out = Vec::with_capacity(len);
        // An over-long field saturates its length: the code is then refused
        // when read, never read as another invite.
        out.extend_from_slice(&saturating_u16(len).to_le_bytes());
        out.push(if sealed.is_some() {
            FLAG_CREDENTIALS
        } else {
            0
        });
        out.extend_from_slice(self.library_id.as_bytes());
        out.extend_from_slice(&self.founder.to_bytes());
        out.extend_from_slice(&self.inviter.to_bytes());
        out.extend_from_slice(&self.invitee.to_bytes());
        out.push(role_byte(self.role));
        put_str(&mut out, self.bucket.as_bytes());
        if let Some(sealed) = sealed {
            put_str(&mut out, sealed);
        }
        let checksum = crc32(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Reads a code, ignoring whitespace around it. Checks, in order: the
    /// prefix and its version, the length, the alphabet, the announced
    /// length, the last character, the checksum, then each field.
    pub fn from_code(text: &str) -> Result<Invite, InviteError> {
        let text = text.trim();
        let Some(body) = text.strip_prefix(INVITE_CODE_PREFIX) else {
            return Err(
                other_version(text).map_or(InviteError::MissingPrefix, |version| {
                    InviteError::UnsupportedVersion { version }
                }),
            );
        };
        if body.len() > MAX_CODE_CHARS {
            return Err(InviteError::TooLong {
                len: body.chars().count(),
                max: MAX_CODE_CHARS,
            });
        }
        let (record, canonical) = base32_decode(body)?;
        check_length(&record)?;
        if !canonical {
            return Err(InviteError::NonCanonical);
        }
        let (data, checksum) = record.split_at(record.len() - CHECKSUM_LEN);
        if crc32(data).to_le_bytes() != checksum {
            return Err(InviteError::Checksum);
        }
        parse_record(data)
    }
}

/// The version of a code of another version (`bae-invite-vN:`), if it is
/// one.
fn other_version(text: &str) -> Option<u32> {
    let (version, _) = text.strip_prefix(VERSION_PREFIX)?.split_once(':')?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    version.parse().ok()
}

/// Compares the record's length with the length its first two bytes
/// announce.
fn check_length(record: &[u8]) -> Result<(), InviteError> {
    let found = record.len();
    let expected = match record {
        [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
        _ => MIN_CODE_BYTES,
    };
    if found < expected {
        return Err(InviteError::Truncated { found, expected });
    }
    if found > expected {
        return Err(InviteError::TrailingBytes {
            count: found - expected,
        });
    }
    if found < MIN_CODE_BYTES {
        return Err(InviteError::Truncated {
            found,
            expected: MIN_CODE_BYTES,
        });
    }
    Ok(())
}

/// The fields of a record whose length and checksum were checked.
fn parse_record(data: &[u8]) -> Result<Invite, InviteError> {
    // Only a record whose checksum matches gets here, so a field running
    // past the end is a hostile encoder's, not a cut: "at least one more".
    let mut r = Reader::new(data, |len| InviteError::Truncated {
        found: len + CHECKSUM_LEN,
        expected: len + CHECKSUM_LEN + 1,
    });
    r.take::<2>()?;
    let [flags] = r.take::<1>()?;
    if flags & !FLAG_CREDENTIALS != 0 {
        return Err(InviteError::UnknownFlags { flags });
    }
    let library_id = LibraryId::from_bytes(r.take()?);
    let founder = r.key("founder")?;
    let inviter = r.key("inviter")?;
    let invitee = r.key("invitee")?;
    let [role] = r.take::<1>()?;
    let role = role_from_byte(role).ok_or(InviteError::BadRole { byte: role })?;
    let bucket = r.string("bucket", MAX_BUCKET_BYTES)?;
    let credentials = if flags & FLAG_CREDENTIALS != 0 {
        let len = r.len("sealed credentials", MAX_SEALED_CREDENTIALS_BYTES)?;
        Some(SealedCredentials::from_bytes(r.bytes(len)?)?)
    } else {
        None
    };
    if !r.rest.is_empty() {
        return Err(InviteError::TrailingBytes {
            count: r.rest.len(),
        });
    }
    Ok(Invite {
        library_id,
        bucket,
        founder,
        inviter,
        invitee,
        role,
        credentials,
    })
}

/// Reads fields off the front of a slice; `short(len)` is the error when
/// the slice (of `len` bytes) ends first.
struct Reader<'a> {
    rest: &'a [u8],
    len: usize,
    short: fn(usize) -> InviteError,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], short: fn(usize) -> InviteError) -> Self {
        Reader {
            rest: bytes,
            len: bytes.len(),
            short,
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], InviteError> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| (self.short)(self.len))?;
        self.rest = tail;
        Ok(*head)
    }

    fn bytes(&mut self, len: usize) -> Result<&'a [u8], InviteError> {
        if self.rest.len() < len {
            return Err((self.short)(self.len));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    /// A `u16` length, refused above `max` before anything is read.
    fn len(&mut self, field: &'static str, max: usize) -> Result<usize, InviteError> {
        let len = usize::from(u16::from_le_bytes(self.take()?));
        bounded(field, len, max)?;
        Ok(len)
    }

    fn string(&mut self, field: &'static str, max: usize) -> Result<String, InviteError> {
        let len = self.len(field, max)?;
        let bytes = self.bytes(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| InviteError::BadUtf8 { field })
    }

    fn key(&mut self, field: &'static str) -> Result<IdentityPublicKey, InviteError> {
        IdentityPublicKey::from_bytes(&self.take()?).map_err(|_| InviteError::BadKey { field })
    }
}

fn bounded(field: &'static str, len: usize, max: usize) -> Result<(), InviteError> {
    if len > max {
        return Err(InviteError::FieldTooLong { field, len, max });
    }
    Ok(())
}

fn saturating_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// `length (u16 LE) || bytes`; bytes over `u16::MAX` are cut at that length
/// (the reader refuses every field that long).
fn put_str(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = saturating_u16(bytes.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
}

/// Roles by the byte of the entry format (`FORMAT-membership.md` section 1).
fn role_byte(role: Role) -> u8 {
    match role {
        Role::Owner => 0,
        Role::Admin => 1,
        Role::Member => 2,
        Role::Reader => 3,
    }
}

fn role_from_byte(byte: u8) -> Option<Role> {
    Some(match byte {
        0 => Role::Owner,
        1 => Role::Admin,
        2 => Role::Member,
        3 => Role::Reader,
        _ => return None,
    })
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`). It detects every
/// error within 32 consecutive bits, so every single mistyped base32
/// character (5 bits, at most 16 once the CRC's bit order is applied).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn base32_encode(bytes: &[u8], out: &mut String) {
    let (mut acc, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((acc >> bits) & 31) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(BASE32[((acc << (5 - bits)) & 31) as usize]));
    }
}

/// Decodes base32 after the prefix; also says whether the text is the one
/// encoding of its bytes (fewer than 5 leftover bits, all zero).
fn base32_decode(body: &str) -> Result<(Vec<u8>, bool), InviteError> {
    let mut out = Vec::with_capacity(body.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, c) in body.chars().enumerate() {
        let value = match c {
            'a'..='z' => c as u32 - 'a' as u32,
            '2'..='7' => c as u32 - '2' as u32 + 26,
            _ => {
                return Err(InviteError::BadEncoding {
                    at: INVITE_CODE_PREFIX.len() + i + 1,
                    found: c,
                })
            }
        };
        acc = (acc << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok((out, bits < 5 && acc == 0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    const LIB: LibraryId = LibraryId::from_bytes([0x11; 16]);

    fn key(n: u8) -> IdentitySigningKey {
        IdentitySigningKey::from_seed(&[n; 32])
    }

    fn creds(token: Option<&str>) -> InviteCredentials {
        InviteCredentials {
            access_key: "AKIAEXAMPLE".into(),
            secret_key: Zeroizing::new("wJalrXUtnFEMI/K7MDENG".into()),
            session_token: token.map(|t| Zeroizing::new(t.into())),
        }
    }

    fn invite(with_credentials: bool) -> Invite {
        Invite {
            library_id: LIB,
            bucket: "s3://bucket/lib?endpoint=http://127.0.0.1:9000".into(),
            founder: key(3).public_key(),
            inviter: key(1).public_key(),
            invitee: key(2).public_key(),
            role: Role::Member,
            credentials: with_credentials.then(|| {
                SealedCredentials::seal(&creds(Some("token")), LIB, &key(2).public_key()).unwrap()
            }),
        }
    }

    #[test]
    fn the_limits_are_the_documented_ones() {
        assert_eq!(MIN_CODE_BYTES, 122);
        assert_eq!(MIN_CREDENTIALS_LEN, 54);
        assert_eq!(MAX_SEALED_CREDENTIALS_BYTES, 4712);
        assert_eq!(MAX_CODE_CHARS, 11_015);
        assert!(MAX_CODE_BYTES <= usize::from(u16::MAX));
    }

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn a_code_reads_back_with_whitespace_around_it() {
        for with in [false, true] {
            let invite = invite(with);
            let code = invite.to_code();
            assert!(code.starts_with(INVITE_CODE_PREFIX));
            assert!(code
                .bytes()
                .skip(INVITE_CODE_PREFIX.len())
                .all(|b| BASE32.contains(&b)));
            assert_eq!(Invite::from_code(&code).unwrap(), invite);
            assert_eq!(Invite::from_code(&format!("  {code}\r\n")).unwrap(), invite);
        }
    }

    #[test]
    fn every_single_character_change_is_a_typed_error() {
        let others: Vec<char> = "abcdefghijklmnopqrstuvwxyz234567ABZ019-_: é"
            .chars()
            .collect();
        for with in [false, true] {
            let code: Vec<char> = invite(with).to_code().chars().collect();
            for at in 0..code.len() {
                for &c in others.iter().filter(|&&c| c != code[at]) {
                    let mut changed = code.clone();
                    changed[at] = c;
                    let changed: String = changed.into_iter().collect();
                    assert!(
                        Invite::from_code(&changed).is_err(),
                        "{c:?} at {at} was read as an invite"
                    );
                }
            }
        }
    }

    #[test]
    fn every_truncation_is_a_typed_error_and_names_what_is_missing() {
        for with in [false, true] {
            let code = invite(with).to_code();
            for end in 0..code.len() {
                assert!(Invite::from_code(&code[..end]).is_err(), "cut at {end}");
            }
            let cut = &code[..code.len() - 8];
            assert!(
                matches!(
                    Invite::from_code(cut),
                    Err(InviteError::Truncated { found, expected }) if found + 5 == expected
                ),
                "{:?}",
                Invite::from_code(cut)
            );
        }
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let code = invite(false).to_code();
        assert_eq!(
            Invite::from_code("hello").unwrap_err(),
            InviteError::MissingPrefix
        );
        assert_eq!(
            Invite::from_code(&code.replace("-v1:", "-v2:")).unwrap_err(),
            InviteError::UnsupportedVersion { version: 2 }
        );
        let body = &code[INVITE_CODE_PREFIX.len()..];
        let upper = format!("{INVITE_CODE_PREFIX}{}", body.replacen('a', "A", 1));
        let at = upper.find('A').unwrap() + 1;
        assert_eq!(
            Invite::from_code(&upper).unwrap_err(),
            InviteError::BadEncoding { at, found: 'A' }
        );
        assert_eq!(
            Invite::from_code(&format!("{code}aaaaaaaa")).unwrap_err(),
            InviteError::TrailingBytes { count: 5 }
        );
        let huge = format!("{INVITE_CODE_PREFIX}{}", "a".repeat(MAX_CODE_CHARS + 1));
        assert!(matches!(
            Invite::from_code(&huge),
            Err(InviteError::TooLong { .. })
        ));
        // A typo in the middle of a record is caught by the checksum.
        let mut typo = code.clone().into_bytes();
        let mid = typo.len() / 2;
        typo[mid] = if typo[mid] == b'q' { b'r' } else { b'q' };
        assert_eq!(
            Invite::from_code(&String::from_utf8(typo).unwrap()).unwrap_err(),
            InviteError::Checksum
        );
    }

    /// A record with a valid length and checksum but `edit` applied: what a
    /// hostile or buggy encoder could write.
    fn forged(edit: impl FnOnce(&mut Vec<u8>)) -> Result<Invite, InviteError> {
        let mut record = invite(false).to_record();
        record.truncate(record.len() - CHECKSUM_LEN);
        edit(&mut record);
        let len = saturating_u16(record.len() + CHECKSUM_LEN);
        record[..2].copy_from_slice(&len.to_le_bytes());
        let checksum = crc32(&record);
        record.extend_from_slice(&checksum.to_le_bytes());
        let mut code = INVITE_CODE_PREFIX.to_owned();
        base32_encode(&record, &mut code);
        Invite::from_code(&code)
    }

    #[test]
    fn checksummed_records_with_bad_fields_are_refused_by_field() {
        let not_a_point = (0u8..=255)
            .map(|x| [x; 32])
            .find(|k| IdentityPublicKey::from_bytes(k).is_err())
            .unwrap();
        assert_eq!(
            forged(|r| r[2] = 0x80).unwrap_err(),
            InviteError::UnknownFlags { flags: 0x80 }
        );
        assert_eq!(
            forged(|r| r[19..51].copy_from_slice(&not_a_point)).unwrap_err(),
            InviteError::BadKey { field: "founder" }
        );
        assert_eq!(
            forged(|r| r[51..83].copy_from_slice(&not_a_point)).unwrap_err(),
            InviteError::BadKey { field: "inviter" }
        );
        assert_eq!(
            forged(|r| r[83..115].copy_from_slice(&not_a_point)).unwrap_err(),
            InviteError::BadKey { field: "invitee" }
        );
        assert_eq!(
            forged(|r| r[115] = 4).unwrap_err(),
            InviteError::BadRole { byte: 4 }
        );
        assert_eq!(
            forged(|r| r[118] = 0xff).unwrap_err(),
            InviteError::BadUtf8 { field: "bucket" }
        );
        assert_eq!(
            forged(|r| r.push(0)).unwrap_err(),
            InviteError::TrailingBytes { count: 1 }
        );
        assert!(matches!(
            forged(|r| r[116..118].copy_from_slice(&3000u16.to_le_bytes())).unwrap_err(),
            InviteError::FieldTooLong {
                field: "bucket",
                len: 3000,
                ..
            }
        ));
        // The credentials flag with nothing after the bucket.
        assert!(matches!(
            forged(|r| r[2] = FLAG_CREDENTIALS).unwrap_err(),
            InviteError::Truncated { .. }
        ));
    }

    #[test]
    fn an_invite_no_code_can_carry_makes_a_code_that_is_refused() {
        let mut long = invite(false);
        long.bucket = "b".repeat(MAX_BUCKET_BYTES + 1);
        assert!(matches!(
            long.check(),
            Err(InviteError::FieldTooLong {
                field: "bucket",
                ..
            })
        ));
        assert!(matches!(
            Invite::from_code(&long.to_code()),
            Err(InviteError::FieldTooLong {
                field: "bucket",
                ..
            })
        ));
        long.bucket = "b".repeat(70_000);
        assert!(Invite::from_code(&long.to_code()).is_err());
        let mut max = invite(false);
        max.bucket = "b".repeat(MAX_BUCKET_BYTES);
        max.check().unwrap();
        assert_eq!(Invite::from_code(&max.to_code()).unwrap(), max);
    }

    #[test]
    fn a_code_for_another_identity_is_refused_by_name() {
        let invite = invite(false);
        invite.check_invitee(&key(2).public_key()).unwrap();
        let err = invite.check_invitee(&key(3).public_key()).unwrap_err();
        assert_eq!(
            err,
            InviteError::WrongInvitee {
                invitee: Box::new(key(2).public_key()),
                identity: Box::new(key(3).public_key()),
            }
        );
        assert!(err.to_string().contains(&key(2).public_key().to_string()));
    }

    #[test]
    fn credentials_open_for_their_invitee_and_library_only() {
        let creds = creds(None);
        let sealed = SealedCredentials::seal(&creds, LIB, &key(2).public_key()).unwrap();
        assert_eq!(sealed.open(LIB, &key(2)).unwrap(), creds);
        assert_eq!(
            sealed.open(LIB, &key(3)).unwrap_err(),
            InviteError::Seal {
                source: SealError::CannotOpen
            }
        );
        let other = LibraryId::from_bytes([0x22; 16]);
        assert_eq!(
            sealed.open(other, &key(2)).unwrap_err(),
            InviteError::WrongLibrary {
                expected: other,
                found: LIB
            }
        );
        // Sealed to 2 but naming 3 inside: someone re-sealed another
        // invitee's credentials.
        let plain = creds.plaintext(LIB, &key(3).public_key()).unwrap();
        let resealed = SealedCredentials(seal_to(&key(2).public_key(), &plain).unwrap());
        assert!(matches!(
            resealed.open(LIB, &key(2)).unwrap_err(),
            InviteError::WrongInvitee { .. }
        ));
    }

    #[test]
    fn credentials_plaintext_failures_are_typed() {
        let me = key(2);
        let check = |bytes: &[u8]| {
            SealedCredentials(seal_to(&me.public_key(), bytes).unwrap())
                .open(LIB, &me)
                .unwrap_err()
        };
        let plain = creds(Some("tok")).plaintext(LIB, &me.public_key()).unwrap();
        let mut v2 = plain.to_vec();
        v2[0] = 2;
        assert_eq!(check(&v2), InviteError::CredentialsVersion { version: 2 });
        assert_eq!(
            check(&plain[..plain.len() - 1]),
            InviteError::CredentialsLength {
                len: plain.len() - 1
            }
        );
        let mut extra = plain.to_vec();
        extra.push(0);
        assert_eq!(
            check(&extra),
            InviteError::CredentialsLength {
                len: plain.len() + 1
            }
        );
        let flag_at = plain.len() - 2 - 3 - 1;
        let mut flag = plain.to_vec();
        flag[flag_at] = 7;
        assert_eq!(check(&flag), InviteError::BadTokenFlag { byte: 7 });
        let mut bad_utf8 = plain.to_vec();
        bad_utf8[CREDENTIALS_HEADER_LEN + 2] = 0xff;
        assert_eq!(
            check(&bad_utf8),
            InviteError::BadUtf8 {
                field: "access key"
            }
        );
        let mut long = plain.to_vec();
        long[CREDENTIALS_HEADER_LEN..CREDENTIALS_HEADER_LEN + 2]
            .copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(
            check(&long),
            InviteError::FieldTooLong {
                field: "access key",
                ..
            }
        ));
        let mut too_long = creds(None);
        too_long.secret_key = Zeroizing::new("s".repeat(MAX_SECRET_KEY_BYTES + 1));
        assert!(matches!(
            SealedCredentials::seal(&too_long, LIB, &me.public_key()),
            Err(InviteError::FieldTooLong {
                field: "secret key",
                ..
            })
        ));
    }

    #[test]
    fn debug_shows_no_secret() {
        let creds = creds(Some("session-token-value"));
        let invite = Invite {
            credentials: Some(SealedCredentials::seal(&creds, LIB, &key(2).public_key()).unwrap()),
            ..invite(false)
        };
        let shown = format!("{creds:?} {invite:?}");
        assert!(shown.contains("AKIAEXAMPLE"));
        assert!(!shown.contains("wJalr"), "{shown}");
        assert!(!shown.contains("session-token-value"), "{shown}");
    }

    fn arb_credentials() -> impl Strategy<Value = InviteCredentials> {
        (
            "[ -~]{0,64}",
            "[ -~]{0,64}",
            proptest::option::of("\\PC{0,200}"),
        )
            .prop_map(|(access_key, secret, token)| InviteCredentials {
                access_key,
                secret_key: Zeroizing::new(secret),
                session_token: token.map(Zeroizing::new),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn invites_round_trip_and_their_credentials_open(
            lib in any::<[u8; 16]>(),
            seeds in any::<(u8, u8)>(),
            role in 0u8..4,
            bucket in "\\PC{0,300}",
            creds in proptest::option::of(arb_credentials()),
        ) {
            let library_id = LibraryId::from_bytes(lib);
            let invitee = key(seeds.1);
            let invite = Invite {
                library_id,
                bucket,
                founder: key(seeds.0.wrapping_add(7)).public_key(),
                inviter: key(seeds.0).public_key(),
                invitee: invitee.public_key(),
                role: role_from_byte(role).unwrap(),
                credentials: creds.as_ref().map(|c| {
                    SealedCredentials::seal(c, library_id, &invitee.public_key()).unwrap()
                }),
            };
            let back = Invite::from_code(&invite.to_code()).unwrap();
            prop_assert_eq!(&back, &invite);
            if let (Some(sealed), Some(creds)) = (&back.credentials, &creds) {
                prop_assert_eq!(&sealed.open(library_id, &invitee).unwrap(), creds);
                let stranger = key(seeds.1.wrapping_add(1));
                prop_assert!(sealed.open(library_id, &stranger).is_err());
                let elsewhere = LibraryId::from_bytes(lib.map(|b| !b));
                let is_wrong_library = matches!(
                    sealed.open(elsewhere, &invitee),
                    Err(InviteError::WrongLibrary { .. })
                );
                prop_assert!(is_wrong_library);
            }
        }

        #[test]
        fn a_changed_or_cut_code_is_never_another_invite(
            with in any::<bool>(),
            at in any::<prop::sample::Index>(),
            c in any::<char>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let code: Vec<char> = invite(with).to_code().chars().collect();
            let i = at.index(code.len());
            if c != code[i] {
                let mut changed = code.clone();
                changed[i] = c;
                let changed: String = changed.into_iter().collect();
                prop_assert!(Invite::from_code(&changed).is_err());
            }
            let cut: String = code[..cut.index(code.len())].iter().collect();
            prop_assert!(Invite::from_code(&cut).is_err());
        }

        #[test]
        fn any_text_is_refused_or_read_without_panicking(text in "\\PC{0,400}") {
            if let Ok(invite) = Invite::from_code(&text) {
                prop_assert_eq!(invite.to_code(), text.trim());
            }
            let code = format!("{INVITE_CODE_PREFIX}{text}");
            if let Ok(invite) = Invite::from_code(&code) {
                prop_assert_eq!(invite.to_code(), code.trim());
            }
        }
    }
}
