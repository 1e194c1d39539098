//! Errors of the sync service.

use bae_hlc::DeviceId;

/// Everything push, pull, checkpoints and the library commands can fail
/// with. Each names what was wrong and, for bucket objects, which object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The bucket failed.
    #[error("bucket: {0}")]
    Store(#[from] bae_storage_s3::StoreError),
    /// A release file cannot be listed, uploaded or fetched.
    #[error(transparent)]
    File(Box<crate::releases::FileError>),
    /// A release cannot be shared, or a share grant cannot be redeemed.
    #[error(transparent)]
    Share(Box<crate::grants::ShareError>),
    /// The bucket URL does not parse, or the store it names cannot be
    /// opened.
    #[error("bucket {url}: {source}")]
    BucketUrl {
        /// The URL as given.
        url: String,
        /// Why.
        source: bae_storage_s3::StoreError,
    },
    /// The library database failed.
    #[error("library: {0}")]
    Oplog(#[from] bae_oplog::OplogError),
    /// SQLite failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// Merge failed before any batch was tried.
    #[error("merge: {0}")]
    Merge(#[from] bae_merge::MergeError),
    /// An object does not decrypt or verify (wrong key, tampered, moved, truncated).
    #[error("object {key} rejected: {source}")]
    Object {
        /// The bucket key.
        key: String,
        /// Why.
        source: bae_crypto::ObjectError,
    },
    /// An object decrypts but its contents are not valid.
    #[error("object {key} rejected: {source}")]
    Invalid {
        /// The bucket key.
        key: String,
        /// What is wrong with it.
        source: Box<InvalidObject>,
    },
    /// Writing a checkpoint locally (before any upload) failed.
    #[error("writing a checkpoint: {0}")]
    CheckpointWrite(crate::checkpoint::CheckpointError),
    /// A signed batch or head refused by membership (unsigned, forged,
    /// not a member's, past a cutoff, a device of another author): never
    /// applied.
    #[error("object {key} refused: {reason}")]
    Refused {
        /// The bucket key.
        key: String,
        /// Why.
        reason: Box<crate::members::Refusal>,
    },
    /// Signing an envelope failed (a body or HLC the format cannot carry).
    #[error("signing an object: {0}")]
    SignEnvelope(Box<bae_membership::EnvelopeError>),
    /// Inviting someone who is already a member, with another role.
    #[error("{member} is already a member, as {role:?}")]
    AlreadyMember {
        /// Who.
        member: Box<bae_crypto::IdentityPublicKey>,
        /// Their role now.
        role: bae_membership::Role,
    },
    /// Revoking someone who is not a member (and holds no current key).
    #[error("{member} is not a member of this library")]
    NotAMember {
        /// Who.
        member: Box<bae_crypto::IdentityPublicKey>,
    },
    /// `join --invite` found no key blob sealed to this identity.
    #[error("the bucket {bucket} holds no library key sealed to {member}: the invite was not written there, or was for another identity")]
    NoKeySealedToYou {
        /// The bucket.
        bucket: String,
        /// This identity.
        member: Box<bae_crypto::IdentityPublicKey>,
    },
    /// The bucket's library marker names another founder than the one
    /// the invite code or key file pins (a key holder rewrote it).
    #[error("the bucket's library marker names {marker} as founder, not {expected} as your invite or key file says: refusing a rewritten marker")]
    FounderMismatch {
        /// The founder the marker names.
        marker: Box<bae_crypto::IdentityPublicKey>,
        /// The founder pinned out of band.
        expected: Box<bae_crypto::IdentityPublicKey>,
    },
    /// A key file whose third line is not a founder line.
    #[error("key file {path}: the third line is not `bae-founder-v1:` and a public key; export the key again")]
    KeyFileFounder {
        /// The key file.
        path: String,
    },
    /// `join --invite`: the chain does not list this identity.
    #[error("{member} is not a member of the library: the invite was revoked or never written")]
    NotInvited {
        /// This identity.
        member: Box<bae_crypto::IdentityPublicKey>,
    },
    /// `join --invite`: the inviter (or whoever sealed the key) cannot
    /// manage membership in the library's chain.
    #[error("{inviter} cannot add members to this library: refusing its invite")]
    InviterCannotManage {
        /// Who.
        inviter: Box<bae_crypto::IdentityPublicKey>,
    },
    /// The S3 credentials stored for a library do not read back (or an
    /// invite carried ones with a line break inside).
    #[error("the S3 credentials stored for library {library_id} are damaged: join again with a new invite, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")]
    DamagedCredentials {
        /// The library.
        library_id: String,
    },
    /// Revoking this member's own identity.
    #[error("you cannot revoke yourself; another owner or admin can")]
    RevokeSelf,
    /// Inviting or revoking without the right to manage membership.
    #[error("only an owner or admin can change membership; you are {}", role.map_or("not a member".to_owned(), |r| format!("a {r:?}").to_lowercase()))]
    CannotManage {
        /// This member's role (`None`: not a member).
        role: Option<bae_membership::Role>,
    },
    /// A membership entry that would not count in the chain.
    #[error("the membership change would not count: {}", reason.map_or("it is refused".to_owned(), |r| r.to_string()))]
    EntryWouldNotCount {
        /// Why (`None`: refused without a reason recorded).
        reason: Option<bae_membership::Rejection>,
    },
    /// A membership entry already exists where this member's next one goes
    /// (another device of this member wrote one not yet seen): pull, then
    /// try again.
    #[error("membership entry {key} already exists; pull and try again")]
    EntryExists {
        /// Its bucket key.
        key: String,
    },
    /// Sealing a key blob failed (a ring the format cannot carry).
    #[error("sealing a key blob: {0}")]
    SealKeyBlob(Box<bae_membership::KeyBlobError>),
    /// Signing a membership entry failed.
    #[error("signing a membership entry: {0}")]
    SignEntry(Box<bae_membership::EntryError>),
    /// The user's identity could not be loaded, made or stored.
    #[error("identity: {0}")]
    Identity(#[from] bae_membership::IdentityError),
    /// A key file without the identity line (written before phase 2).
    #[error("key file {path} holds no identity (it was written by an older bae-sync): run `bae-sync key export` again on a device of the library")]
    KeyFileWithoutIdentity {
        /// The file.
        path: String,
    },
    /// A library set up before phase 2 (no founder saved): leave and join
    /// again.
    #[error("this library was set up without a membership founder (before phase 2): run `bae-sync leave`, then `bae-sync join` again")]
    NoFounder,
    /// `join` on a bucket whose library was made before phase 2 (heads
    /// that open, no marker naming a founder): its unsigned objects are
    /// not read by this build.
    #[error("bucket {0} holds a library made before signed objects (no marker naming its founder); this build cannot join it")]
    PhaseOneLibrary(String),
    /// A device's stream is broken: a gap, swap or rollback.
    #[error("stream of device {device} broken at batch {seq}: {broken}")]
    Chain {
        /// The device.
        device: DeviceId,
        /// The batch.
        seq: u64,
        /// What does not link.
        broken: ChainBreak,
    },
    /// A device's newest head names an older batch than one already applied
    /// here or by another device (whose head says so): the bucket rolled
    /// that device's stream back, or lost its newest batches.
    #[error("stream of device {device} rolled back: its newest head {key} names batch {head}, but batch {known} was already applied {}", applied_by(.witness))]
    RolledBack {
        /// The device whose stream went back.
        device: DeviceId,
        /// The head object found.
        key: String,
        /// The batch it names.
        head: u64,
        /// The newer batch known to have existed.
        known: u64,
        /// Who applied it: `None` for this device, else the device whose
        /// head reports it.
        witness: Option<DeviceId>,
    },
    /// This device's database went back in time and one of the batches it
    /// pushed before (found in the bucket above its local state) does not
    /// apply yet (a parent row another device wrote has not been pulled):
    /// nothing was renumbered or uploaded; a pull, then push, settles it.
    #[error(
        "re-taking {key}, pushed by this device before its database went back in time: {source} (a pull brings what it needs: run `bae-sync sync`, or pull then push)"
    )]
    OwnBatchHeld {
        /// The batch object.
        key: String,
        /// Why it does not apply (boxed: a merge error is large).
        source: Box<bae_merge::MergeError>,
    },
    /// The library has not been set up for sync (`bae-sync init` or `join`).
    #[error("library is not set up for sync: run `bae-sync init` or `bae-sync join` first")]
    NotInitialized,
    /// The library is already set up for sync.
    #[error("library is already set up for sync with {0}")]
    AlreadyInitialized(String),
    /// `join` with a key that does not open the library in the bucket (a
    /// key of another library, or a damaged one): nothing was written.
    #[error("this key does not open the library in {bucket} (its library id is {library_id}); nothing was changed")]
    KeyDoesNotOpenLibrary {
        /// The bucket URL.
        bucket: String,
        /// The id of the library the bucket holds.
        library_id: String,
    },
    /// `join` on a bucket that holds no library (no marker, no heads).
    #[error("bucket {0} is empty, not a library: run `bae-sync init` on the first device, or check the bucket URL")]
    NotALibrary(String),
    /// `init` on a bucket that already holds a library (or other objects).
    #[error("bucket {bucket} already holds a library{}: use `bae-sync join` with its key, or another bucket", library_named(.library_id))]
    BucketHoldsLibrary {
        /// The bucket URL.
        bucket: String,
        /// The id its marker names (`None`: objects without a marker).
        library_id: Option<String>,
    },
    /// `key export` onto an existing file without `--force`.
    #[error("{path} already exists: choose a new file, or pass --force to replace it")]
    ExportTargetExists {
        /// The file.
        path: String,
    },
    /// `key export` onto the library itself or another SQLite database:
    /// refused even with `--force`.
    #[error("{path} is a database (or the library itself): a key export never replaces it")]
    ExportOntoDatabase {
        /// The file.
        path: String,
    },
    /// The OS keyring failed, or holds no key for the library.
    #[error("OS keyring, key of library {library_id}: {source}")]
    Keyring {
        /// The library whose key was stored or loaded.
        library_id: String,
        /// What the keyring said.
        source: keyring::Error,
    },
    /// The service holds no key to seal new objects with (a service built
    /// without a current key epoch).
    #[error("no library key to seal with")]
    NoCurrentKey,
    /// A key ring to store lacks an epoch below its newest (key rings run
    /// 0, 1, … with no gap).
    #[error("the library keys lack epoch {} below the newest", epoch.0)]
    KeyRingGap {
        /// The first missing epoch.
        epoch: bae_crypto::KeyEpoch,
    },
    /// A key file others can read or write: refused, since the key may
    /// have leaked; the owner fixes the mode (or rotates the key).
    #[error("key file {path} is readable by others (mode {mode:o}): run `chmod 600 {path}`")]
    KeyFileNotPrivate {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file or key text does not parse.
    #[error("library key: {0}")]
    Key(#[from] bae_crypto::KeyParseError),
    /// Local file I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A checkpoint was not written: this device lacks a batch that is gone
    /// from the bucket and that an older checkpoint still holds (or may: it
    /// did not open, perhaps only this time), so a newer one without it
    /// would put it out of every other device's reach. The gap is also
    /// reported by pull; a checkpoint from a device that holds the range
    /// (or this one, once it recovers) lifts it.
    #[error("no checkpoint written: batch {seq} of device {device} is gone from the bucket, this device never applied it, and an older checkpoint that holds it (or did not open and may) would be hidden")]
    CheckpointWouldHideGap {
        /// The device whose stream has the gap.
        device: bae_hlc::DeviceId,
        /// The first missing seq.
        seq: u64,
    },
    /// Nothing was pushed: the bucket holds this device's batch `seq`
    /// above its local state (its database went back in time, and GC
    /// removed the batches just above the copy), but no head of this
    /// device was found to go on from. It is there and not listed yet, or
    /// the bucket withholds it; pushing now would write new batches under
    /// seqs other devices applied. Run the push again.
    #[error("nothing pushed: this device's batch {seq} is in the bucket above its local state, but no head of this device was found to continue from (run the push again)")]
    OwnHeadNotFound {
        /// The lowest such batch.
        seq: u64,
    },
    /// Nothing was pushed: reads of this device's own object `key` kept
    /// coming back shorter than the bucket says the object is, so whether
    /// it is garbage the push may replace, or a batch or head other devices
    /// applied, could not be told. Run the push again.
    #[error("nothing pushed: {key} came back cut short {reads} times (run the push again)")]
    OwnObjectCutShort {
        /// The object's key.
        key: String,
        /// How many reads were cut short.
        reads: usize,
    },
    /// The bucket holds no checkpoint that opens and verifies.
    #[error("no usable checkpoint in {0}")]
    NoCheckpoint(String),
    /// A blocking database task panicked or was cancelled (a bug, or the
    /// runtime shutting down); nothing it did was committed half-way.
    #[error("a background task failed: {0}")]
    Background(#[from] tokio::task::JoinError),
    /// The operation was cancelled ([`crate::SyncService::with_cancellation`])
    /// and stopped at a safe point: what it committed stays, nothing is
    /// half applied; running it again resumes.
    #[error("cancelled")]
    Cancelled,
    /// Another process holds the library's lock
    /// ([`crate::library::LibraryLock`]) and did not release it in time.
    #[error("another bae-sync {} is working on {path}", holder(.pid))]
    LibraryBusy {
        /// The library file.
        path: String,
        /// The holder's process id, when it could be read.
        pid: Option<u32>,
    },
    /// A database task panicked while holding the library; the service
    /// must be reopened.
    #[error("the library connection was poisoned by a failed task; reopen the library")]
    LibraryPoisoned,
}

fn holder(pid: &Option<u32>) -> String {
    pid.map_or_else(|| "process".to_owned(), |pid| format!("(pid {pid})"))
}

fn library_named(id: &Option<String>) -> String {
    id.as_ref()
        .map_or_else(String::new, |id| format!(" (library id {id})"))
}

fn applied_by(witness: &Option<DeviceId>) -> String {
    match witness {
        None => "here".to_owned(),
        Some(d) => format!("by device {d}"),
    }
}

impl SyncError {
    /// An object at `key` whose contents are invalid.
    pub fn invalid(key: impl Into<String>, source: impl Into<InvalidObject>) -> Self {
        SyncError::Invalid {
            key: key.into(),
            source: Box::new(source.into()),
        }
    }

    /// An I/O error on a named file.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        SyncError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// What is wrong with the contents of an object that decrypted and
/// verified under the library key (so a key holder wrote it, or the key
/// leaked): each names the failed check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidObject {
    /// A head that does not decode.
    #[error("head: {0}")]
    Head(#[from] crate::head::HeadError),
    /// A head whose contents name another device or seq than its key.
    #[error("head names device {device} seq {seq}, not its place")]
    HeadPlace {
        /// The device it names.
        device: DeviceId,
        /// The seq it names.
        seq: u64,
    },
    /// A head naming a seq no device can reach (above `i64::MAX`): it
    /// would overflow the stream arithmetic and the stored cursors.
    #[error("head seq {0} is out of range")]
    SeqOutOfRange(u64),
    /// A batch that does not decode or breaks the sync schema.
    #[error("batch: {0}")]
    Batch(#[from] bae_oplog::CodecError),
    /// A batch whose contents name another device or seq than its key.
    #[error("batch names device {device} seq {seq}, not its place")]
    BatchPlace {
        /// The device it names.
        device: DeviceId,
        /// The seq it names.
        seq: u64,
    },
    /// A checkpoint that is not a valid record stream or names something
    /// outside the sync schema.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A library marker that does not decode or names another library.
    #[error("library marker: {0}")]
    Marker(#[from] crate::marker::MarkerError),
    /// A membership entry that does not decode or verify.
    #[error("membership entry: {0}")]
    Entry(#[from] bae_membership::EntryError),
    /// A membership entry whose author or seq is not the one its key names.
    #[error("membership entry is not the one its key names")]
    EntryPlace,
    /// A key outside the bucket layout.
    #[error("not a key of the bucket layout: {0}")]
    Layout(#[from] bae_storage_s3::layout::LayoutError),
    /// A key blob that does not open, verify or belong here.
    #[error("key blob: {0}")]
    KeyBlob(#[from] bae_membership::KeyBlobError),
    /// A key blob whose key of an epoch differs from the one this member
    /// already holds (a forged or conflicting rotation).
    #[error("key blob's key of epoch {} differs from the one held", epoch.0)]
    KeyBlobDisagrees {
        /// The epoch.
        epoch: bae_crypto::KeyEpoch,
    },
    /// A key blob signed by someone who cannot manage membership.
    #[error("key blob signed by {author}, who cannot manage membership")]
    KeyBlobAuthor {
        /// Its signer.
        author: Box<bae_crypto::IdentityPublicKey>,
    },
}

/// How a batch fails to extend its device's hash chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainBreak {
    /// The batch does not name the previous batch's hash: a gap, a swap,
    /// or a rollback.
    #[error("previous-batch hash does not match (gap, swap or rollback)")]
    PreviousHash,
    /// The last batch fetched is not the one its head names.
    #[error("batch does not match its head (rolled back or swapped)")]
    NotTheHeadsBatch,
    /// A removed member's batch is not the one their removal pinned: the
    /// chain up to the cutoff does not end in the hash the remover applied
    /// (the removed member wrote other batches at those seqs).
    #[error("batch is not the one the removal of its author pinned (rewritten after the removal)")]
    NotPinned,
    /// More batches of a removed member's device lie between this device's
    /// cursor and the pinned cutoff than a pull reads ahead of applying.
    #[error("more batches up to the pinned cutoff than a pull checks ahead")]
    PinnedRangeTooLong,
}
