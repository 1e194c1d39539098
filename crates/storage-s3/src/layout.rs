//! The bucket layout (SPEC section 4, `docs/BUCKET-LAYOUT.md`): the one place
//! that builds and parses object keys.
//!
//! ```text
//! library                                 LIBRARY_MARKER_KEY (one object: which library this is)
//! heads/{device_id}/{seq:020}             HeadsKey   (seq: the newest batch it names)
//! ops/{device_id}/{seq:020}               OpsKey
//! checkpoints/{hlc:020}-{suffix}          CheckpointId
//! checkpoint-signatures/{hlc:020}-{suffix} the writer's signature of that checkpoint
//! images/{ab}/{cd}/{image_id}             ImageKey   (ab, cd: first hex digits)
//! storage/{ab}/{cd}/{file_id}             StorageKey
//! membership/{author_pubkey_hex}/{seq:020} MembershipKey
//! keys/{member_pubkey_hex}/{epoch:010}   KeyBlobKey (epoch: a u32 key epoch)
//! ```
//!
//! Numbers are zero-padded to 20 digits (all of `u64`), so a listing's
//! bytewise order is numeric order. Builders validate their inputs and parse
//! functions reject anything they would not have built, so a hostile or
//! stray object name never turns into a device id or seq.
//!
//! A device is a [`bae_hlc::DeviceId`], spelled in keys as its lowercase
//! hyphenated UUID; a key with any other spelling of one does not parse.

use std::fmt;

use bae_hlc::DeviceId;
use thiserror::Error;

/// `library`: the library marker, one small sealed object written by
/// `init` before anything else, so a device with a key can prove the key
/// opens this bucket's library before it writes anything locally.
pub const LIBRARY_MARKER_KEY: &str = "library";
/// `heads/`: one current object per device, named by the seq it advertises,
/// so a single LIST tells every device's newest seq.
pub const HEADS_PREFIX: &str = "heads/";
/// `ops/`: batches, per device.
pub const OPS_PREFIX: &str = "ops/";
/// `checkpoints/`: compacted snapshots.
pub const CHECKPOINTS_PREFIX: &str = "checkpoints/";
/// `checkpoint-signatures/`: per checkpoint, its writer's signature (phase
/// 2), a small object written after the checkpoint it signs.
pub const CHECKPOINT_SIGNATURES_PREFIX: &str = "checkpoint-signatures/";
/// `images/`: image bytes.
pub const IMAGES_PREFIX: &str = "images/";
/// `storage/`: release audio files.
pub const STORAGE_PREFIX: &str = "storage/";
/// `membership/`: membership chain entries, per author.
pub const MEMBERSHIP_PREFIX: &str = "membership/";
/// `keys/`: per member and key epoch, the library keys sealed to that member.
pub const KEYS_PREFIX: &str = "keys/";

/// A key or path component that does not fit the layout.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutError {
    /// A device id segment that is not a lowercase hyphenated UUID (the only
    /// spelling of a [`DeviceId`] in a key).
    #[error("invalid device id {0:?}: expected a lowercase hyphenated UUID")]
    InvalidDeviceId(String),
    /// Not 64 lowercase hex digits (a 32-byte public key).
    #[error("invalid public key {0:?}: expected 64 lowercase hex digits")]
    InvalidPublicKey(String),
    /// Not a content id (lowercase hex, hyphens allowed, 4 to 128 chars,
    /// starting with 4 hex digits).
    #[error("invalid object id {0:?}")]
    InvalidObjectId(String),
    /// A checkpoint suffix that is not 1 to 16 lowercase hex digits.
    #[error("invalid checkpoint suffix {0:?}: expected 1-16 lowercase hex digits")]
    InvalidCheckpointSuffix(String),
    /// A key that is not of the kind asked for.
    #[error("key {key:?} is not a {expected} key")]
    UnexpectedKey {
        /// The key.
        key: String,
        /// What was expected (`"heads"`, `"ops"`, ...).
        expected: &'static str,
    },
}

/// A 32-byte public key in lowercase hex (membership authors, members).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKeyHex(String);

impl PublicKeyHex {
    /// Validates a hex public key.
    pub fn parse(hex: &str) -> Result<Self, LayoutError> {
        if hex.len() == 64 && hex.bytes().all(is_lower_hex) {
            Ok(Self(hex.to_owned()))
        } else {
            Err(LayoutError::InvalidPublicKey(hex.to_owned()))
        }
    }

    /// Hex-encodes raw key bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The key as hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An image or file id: lowercase hex (a hash or a UUID with hyphens),
/// sharded by its first four hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(String);

impl ObjectId {
    /// Validates an id.
    pub fn parse(id: &str) -> Result<Self, LayoutError> {
        let ok = (4..=128).contains(&id.len())
            && id.bytes().take(4).all(is_lower_hex)
            && id.bytes().all(|b| is_lower_hex(b) || b == b'-');
        if ok {
            Ok(Self(id.to_owned()))
        } else {
            Err(LayoutError::InvalidObjectId(id.to_owned()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn sharded(&self) -> String {
        format!("{}/{}/{}", &self.0[..2], &self.0[2..4], self.0)
    }
}

/// A checkpoint id, sortable newest-last: the HLC it was taken at, then a
/// short hex suffix so two devices checkpointing at the same HLC differ.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointId {
    hlc: u64,
    suffix: String,
}

impl CheckpointId {
    /// An id from an HLC and a suffix of 1 to 16 lowercase hex digits.
    pub fn new(hlc: u64, suffix: &str) -> Result<Self, LayoutError> {
        if (1..=16).contains(&suffix.len()) && suffix.bytes().all(is_lower_hex) {
            Ok(Self {
                hlc,
                suffix: suffix.to_owned(),
            })
        } else {
            Err(LayoutError::InvalidCheckpointSuffix(suffix.to_owned()))
        }
    }

    /// An id at `hlc` with a random 8-digit suffix.
    pub fn generate(hlc: u64) -> Self {
        Self {
            hlc,
            suffix: format!("{:08x}", rand::random::<u32>()),
        }
    }

    /// The HLC the checkpoint was taken at.
    pub fn hlc(&self) -> u64 {
        self.hlc
    }

    /// The disambiguating suffix.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:020}-{}", self.hlc, self.suffix)
    }
}

/// `heads/{device_id}/`: list it to find a device's head object(s).
pub fn heads_prefix(device: &DeviceId) -> String {
    format!("{HEADS_PREFIX}{device}/")
}

/// `heads/{device_id}/{seq:020}`: the head advertising batch `seq`.
pub fn heads_key(device: &DeviceId, seq: u64) -> String {
    format!("{HEADS_PREFIX}{device}/{seq:020}")
}

/// `ops/{device_id}/`: list it to get a device's batches in seq order.
pub fn ops_prefix(device: &DeviceId) -> String {
    format!("{OPS_PREFIX}{device}/")
}

/// `ops/{device_id}/{seq:020}`.
pub fn ops_key(device: &DeviceId, seq: u64) -> String {
    format!("{OPS_PREFIX}{device}/{seq:020}")
}

/// `checkpoints/{id}`.
pub fn checkpoint_key(id: &CheckpointId) -> String {
    format!("{CHECKPOINTS_PREFIX}{id}")
}

/// `checkpoint-signatures/{id}`: the signature of `checkpoints/{id}`.
pub fn checkpoint_signature_key(id: &CheckpointId) -> String {
    format!("{CHECKPOINT_SIGNATURES_PREFIX}{id}")
}

/// `images/{ab}/{cd}/{image_id}`.
pub fn image_key(image: &ObjectId) -> String {
    format!("{IMAGES_PREFIX}{}", image.sharded())
}

/// `storage/{ab}/{cd}/{file_id}`.
pub fn storage_key(file: &ObjectId) -> String {
    format!("{STORAGE_PREFIX}{}", file.sharded())
}

/// `membership/{author}/`: list it to get an author's entries in seq order.
pub fn membership_prefix(author: &PublicKeyHex) -> String {
    format!("{MEMBERSHIP_PREFIX}{}/", author.as_str())
}

/// `membership/{author_pubkey_hex}/{seq:020}`.
pub fn membership_key(author: &PublicKeyHex, seq: u64) -> String {
    format!("{MEMBERSHIP_PREFIX}{}/{seq:020}", author.as_str())
}

/// `keys/{member}/`: list it to get a member's key blobs in epoch order.
pub fn key_blobs_prefix(member: &PublicKeyHex) -> String {
    format!("{KEYS_PREFIX}{}/", member.as_str())
}

/// `keys/{member_pubkey_hex}/{epoch:010}`: the key blob of `epoch` (every
/// library key up to it) sealed to `member`.
pub fn key_blob_key(member: &PublicKeyHex, epoch: u32) -> String {
    format!("{KEYS_PREFIX}{}/{epoch:010}", member.as_str())
}

/// Any key of the layout, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketPath {
    /// `library`: the library marker.
    LibraryMarker,
    /// `heads/{device}/{seq}`.
    Head(DeviceId, u64),
    /// `ops/{device}/{seq}`.
    Ops(DeviceId, u64),
    /// `checkpoints/{id}`.
    Checkpoint(CheckpointId),
    /// `checkpoint-signatures/{id}`.
    CheckpointSignature(CheckpointId),
    /// `images/{ab}/{cd}/{id}`.
    Image(ObjectId),
    /// `storage/{ab}/{cd}/{id}`.
    Storage(ObjectId),
    /// `membership/{author}/{seq}`.
    Membership(PublicKeyHex, u64),
    /// `keys/{member}/{epoch}`.
    KeyBlob(PublicKeyHex, u32),
}

impl BucketPath {
    /// Parses any layout key; [`LayoutError::UnexpectedKey`] for keys outside
    /// the layout.
    pub fn parse(key: &str) -> Result<Self, LayoutError> {
        if key == LIBRARY_MARKER_KEY {
            return Ok(BucketPath::LibraryMarker);
        }
        let top = key.split('/').next().unwrap_or_default();
        match top {
            "heads" => parse_heads_key(key).map(|(d, s)| BucketPath::Head(d, s)),
            "ops" => parse_ops_key(key).map(|(d, s)| BucketPath::Ops(d, s)),
            "checkpoints" => parse_checkpoint_key(key).map(BucketPath::Checkpoint),
            "checkpoint-signatures" => {
                parse_checkpoint_signature_key(key).map(BucketPath::CheckpointSignature)
            }
            "images" => parse_image_key(key).map(BucketPath::Image),
            "storage" => parse_storage_key(key).map(BucketPath::Storage),
            "membership" => parse_membership_key(key).map(|(a, s)| BucketPath::Membership(a, s)),
            "keys" => parse_key_blob_key(key).map(|(m, e)| BucketPath::KeyBlob(m, e)),
            _ => Err(unexpected(key, "bucket layout")),
        }
    }

    /// The key this path is stored under.
    pub fn key(&self) -> String {
        match self {
            BucketPath::LibraryMarker => LIBRARY_MARKER_KEY.to_owned(),
            BucketPath::Head(d, s) => heads_key(d, *s),
            BucketPath::Ops(d, s) => ops_key(d, *s),
            BucketPath::Checkpoint(id) => checkpoint_key(id),
            BucketPath::CheckpointSignature(id) => checkpoint_signature_key(id),
            BucketPath::Image(id) => image_key(id),
            BucketPath::Storage(id) => storage_key(id),
            BucketPath::Membership(a, s) => membership_key(a, *s),
            BucketPath::KeyBlob(m, e) => key_blob_key(m, *e),
        }
    }
}

/// `heads/{device}/{seq}` -> (device, seq).
pub fn parse_heads_key(key: &str) -> Result<(DeviceId, u64), LayoutError> {
    let [device, seq] = segments(key, HEADS_PREFIX, "heads")?;
    Ok((parse_device(device)?, parse_seq(key, seq, "heads")?))
}

/// `ops/{device}/{seq}` -> (device, seq).
pub fn parse_ops_key(key: &str) -> Result<(DeviceId, u64), LayoutError> {
    let [device, seq] = segments(key, OPS_PREFIX, "ops")?;
    Ok((parse_device(device)?, parse_seq(key, seq, "ops")?))
}

/// `checkpoints/{hlc:020}-{suffix}` -> id.
pub fn parse_checkpoint_key(key: &str) -> Result<CheckpointId, LayoutError> {
    parse_checkpoint_id(key, CHECKPOINTS_PREFIX, "checkpoints")
}

/// `checkpoint-signatures/{hlc:020}-{suffix}` -> id.
pub fn parse_checkpoint_signature_key(key: &str) -> Result<CheckpointId, LayoutError> {
    parse_checkpoint_id(key, CHECKPOINT_SIGNATURES_PREFIX, "checkpoint-signatures")
}

fn parse_checkpoint_id(
    key: &str,
    prefix: &str,
    kind: &'static str,
) -> Result<CheckpointId, LayoutError> {
    let [id] = segments(key, prefix, kind)?;
    let (hlc, suffix) = id.split_once('-').ok_or_else(|| unexpected(key, kind))?;
    CheckpointId::new(parse_seq(key, hlc, kind)?, suffix)
}

/// `images/{ab}/{cd}/{id}` -> id.
pub fn parse_image_key(key: &str) -> Result<ObjectId, LayoutError> {
    parse_sharded(key, IMAGES_PREFIX, "images")
}

/// `storage/{ab}/{cd}/{id}` -> id.
pub fn parse_storage_key(key: &str) -> Result<ObjectId, LayoutError> {
    parse_sharded(key, STORAGE_PREFIX, "storage")
}

/// `membership/{author}/{seq}` -> (author, seq).
pub fn parse_membership_key(key: &str) -> Result<(PublicKeyHex, u64), LayoutError> {
    let [author, seq] = segments(key, MEMBERSHIP_PREFIX, "membership")?;
    Ok((
        PublicKeyHex::parse(author)?,
        parse_seq(key, seq, "membership")?,
    ))
}

/// `keys/{member}/{epoch}` -> (member, epoch).
pub fn parse_key_blob_key(key: &str) -> Result<(PublicKeyHex, u32), LayoutError> {
    let [member, epoch] = segments(key, KEYS_PREFIX, "keys")?;
    if epoch.len() != 10 || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unexpected(key, "keys"));
    }
    let epoch = epoch.parse().map_err(|_| unexpected(key, "keys"))?;
    Ok((PublicKeyHex::parse(member)?, epoch))
}

fn parse_sharded(key: &str, prefix: &str, kind: &'static str) -> Result<ObjectId, LayoutError> {
    let [ab, cd, id] = segments(key, prefix, kind)?;
    let id = ObjectId::parse(id)?;
    if id.as_str().get(..2) != Some(ab) || id.as_str().get(2..4) != Some(cd) {
        return Err(unexpected(key, kind));
    }
    Ok(id)
}

/// Splits what follows `prefix` into exactly `N` non-empty segments.
fn segments<'k, const N: usize>(
    key: &'k str,
    prefix: &str,
    kind: &'static str,
) -> Result<[&'k str; N], LayoutError> {
    let rest = key
        .strip_prefix(prefix)
        .ok_or_else(|| unexpected(key, kind))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let parts: [&str; N] = parts.try_into().map_err(|_| unexpected(key, kind))?;
    if parts.iter().any(|p| p.is_empty()) {
        return Err(unexpected(key, kind));
    }
    Ok(parts)
}

/// A device id segment: [`DeviceId`]'s parser accepts only the lowercase
/// hyphenated UUID its `Display` writes.
fn parse_device(segment: &str) -> Result<DeviceId, LayoutError> {
    segment
        .parse()
        .map_err(|_| LayoutError::InvalidDeviceId(segment.to_owned()))
}

/// Exactly 20 decimal digits.
fn parse_seq(key: &str, digits: &str, kind: &'static str) -> Result<u64, LayoutError> {
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unexpected(key, kind));
    }
    digits.parse().map_err(|_| unexpected(key, kind))
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn unexpected(key: &str, expected: &'static str) -> LayoutError {
    LayoutError::UnexpectedKey {
        key: key.to_owned(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::key::validate_key;

    const DEV: &str = "0b0c7a4e-6a8f-4f1e-9a57-3c2d1e0f9b8a";

    fn dev() -> DeviceId {
        DEV.parse().unwrap()
    }

    fn pk() -> PublicKeyHex {
        PublicKeyHex::from_bytes(&[0xab; 32])
    }

    #[test]
    fn keys_match_the_documented_layout() {
        assert_eq!(
            heads_key(&dev(), 3),
            format!("heads/{DEV}/00000000000000000003")
        );
        assert_eq!(heads_prefix(&dev()), format!("heads/{DEV}/"));
        assert_eq!(
            ops_key(&dev(), 42),
            format!("ops/{DEV}/00000000000000000042")
        );
        assert_eq!(ops_prefix(&dev()), format!("ops/{DEV}/"));
        let cp = CheckpointId::new(7, "beef").unwrap();
        assert_eq!(checkpoint_key(&cp), "checkpoints/00000000000000000007-beef");
        let img = ObjectId::parse("d41d8cd98f00b204").unwrap();
        assert_eq!(image_key(&img), "images/d4/1d/d41d8cd98f00b204");
        let file = ObjectId::parse(DEV).unwrap();
        assert_eq!(storage_key(&file), format!("storage/0b/0c/{DEV}"));
        assert_eq!(
            membership_key(&pk(), 1),
            format!("membership/{}/00000000000000000001", "ab".repeat(32))
        );
        assert_eq!(
            key_blob_key(&pk(), 7),
            format!("keys/{}/0000000007", "ab".repeat(32))
        );
        assert_eq!(
            parse_key_blob_key(&key_blob_key(&pk(), u32::MAX))
                .unwrap()
                .1,
            u32::MAX
        );
        for bad in ["000000007", "99999999999", "4294967296", "000000007a"] {
            let key = format!("keys/{}/{bad}", "ab".repeat(32));
            assert!(parse_key_blob_key(&key).is_err(), "{key}");
        }
    }

    #[test]
    fn listed_keys_parse_back_to_typed_paths() {
        assert_eq!(
            parse_heads_key(&format!("heads/{DEV}/00000000000000000003")).unwrap(),
            (dev(), 3)
        );
        assert_eq!(
            parse_ops_key(&format!("ops/{DEV}/00000000000000000042")).unwrap(),
            (dev(), 42)
        );
        assert_eq!(
            parse_checkpoint_key("checkpoints/00000000000000000007-beef").unwrap(),
            CheckpointId::new(7, "beef").unwrap()
        );
    }

    #[test]
    fn keys_outside_the_layout_do_not_parse() {
        for bad in [
            "heads/",
            "heads/not-a-uuid",
            "heads/0B0C7A4E-6A8F-4F1E-9A57-3C2D1E0F9B8A",
            "heads/0b0c7a4e6a8f4f1e9a573c2d1e0f9b8a",
            &format!("heads/{DEV}"),
            &format!("heads/{DEV}/extra"),
            &format!("ops/{DEV}/42"),
            &format!("ops/{DEV}/0000000000000000004x"),
            &format!("ops/{DEV}/99999999999999999999"),
            "checkpoints/00000000000000000007",
            "checkpoints/00000000000000000007-XYZ",
            "images/aa/bb/ccddeeff",
            "images/d4/1d/d41d/x",
            "keys/abc",
            "membership/abc/00000000000000000001",
            "other/thing",
            "",
        ] {
            assert!(BucketPath::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_device_id_spelled_any_other_way_is_refused() {
        for device in [
            DEV.to_uppercase(),
            DEV.replace('-', ""),
            format!("{{{DEV}}}"),
            format!("urn:uuid:{DEV}"),
            format!(" {DEV}"),
            "not-a-uuid".to_owned(),
        ] {
            let heads = format!("heads/{device}/00000000000000000003");
            let ops = format!("ops/{device}/00000000000000000003");
            for parsed in [parse_heads_key(&heads), parse_ops_key(&ops)] {
                assert_eq!(parsed, Err(LayoutError::InvalidDeviceId(device.clone())));
            }
        }
    }

    #[test]
    fn checkpoint_ids_sort_newest_last() {
        let older = checkpoint_key(&CheckpointId::generate(9));
        let newer = checkpoint_key(&CheckpointId::generate(10));
        assert!(older < newer);
    }

    fn any_path() -> impl Strategy<Value = BucketPath> {
        let dev = any::<[u8; 16]>().prop_map(DeviceId::from_bytes);
        let pk = any::<[u8; 32]>().prop_map(|b| PublicKeyHex::from_bytes(&b));
        let id = "[0-9a-f]{4}[0-9a-f-]{0,60}".prop_map(|s| ObjectId::parse(&s).unwrap());
        prop_oneof![
            Just(BucketPath::LibraryMarker),
            (dev.clone(), any::<u64>()).prop_map(|(d, s)| BucketPath::Head(d, s)),
            (dev, any::<u64>()).prop_map(|(d, s)| BucketPath::Ops(d, s)),
            (any::<u64>(), "[0-9a-f]{1,16}")
                .prop_map(|(h, s)| BucketPath::Checkpoint(CheckpointId::new(h, &s).unwrap())),
            (any::<u64>(), "[0-9a-f]{1,16}").prop_map(|(h, s)| {
                BucketPath::CheckpointSignature(CheckpointId::new(h, &s).unwrap())
            }),
            id.clone().prop_map(BucketPath::Image),
            id.prop_map(BucketPath::Storage),
            (pk.clone(), any::<u64>()).prop_map(|(a, s)| BucketPath::Membership(a, s)),
            (pk.clone(), any::<u32>()).prop_map(|(m, e)| BucketPath::KeyBlob(m, e)),
        ]
    }

    proptest! {
        #[test]
        fn every_path_round_trips_and_is_a_valid_store_key(path in any_path()) {
            let key = path.key();
            prop_assert!(validate_key(&key).is_ok());
            prop_assert_eq!(BucketPath::parse(&key).unwrap(), path);
        }

        #[test]
        fn ops_listing_order_is_seq_order(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(ops_key(&dev(), a).cmp(&ops_key(&dev(), b)), a.cmp(&b));
        }
    }

    proptest! {
        /// Any text, and a real key with any character changed, parses to
        /// the one path whose key it is, or is a typed error.
        #[test]
        fn any_key_is_its_path_or_a_typed_error(
            text in "\\PC{0,100}",
            path in any_path(),
            at in any::<prop::sample::Index>(),
            with in any::<char>(),
        ) {
            let mut mutated: Vec<char> = path.key().chars().collect();
            let i = at.index(mutated.len());
            mutated[i] = with;
            let mutated: String = mutated.into_iter().collect();
            for key in [text, mutated] {
                if let Ok(parsed) = BucketPath::parse(&key) {
                    prop_assert_eq!(parsed.key(), key);
                }
            }
        }
    }
}
