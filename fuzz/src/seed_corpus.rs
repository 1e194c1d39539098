//! Writes real encodings into `corpus/TARGET/` (the directory given as the
//! only argument): a batch, sealed objects, chunked blobs, a head, a
//! checkpoint, a marker, key texts, bucket keys and URLs, membership
//! entries, a signed envelope, key blobs, invite codes and credentials,
//! share grants and their payloads.
//! `cargo xtask fuzz --seed-corpus` runs it before minimizing.

use bae_crypto::chunked::{encrypt_with_nonce, BaseNonce, CHUNK_SIZE};
use bae_crypto::object::seal_object_with_nonce;
use bae_crypto::{IdentitySigningKey, KeyEpoch, LibraryKey, ReleaseKey};
use bae_fuzz::{object_place, IDENTITY_SEED, LIBRARY_ID, LIBRARY_KEY};
use bae_hlc::{DeviceId, Timestamp};
use bae_membership::{
    seal_key_blob, Action, Cutoffs, Entry, EnvelopeHeader, Invite, InviteCredentials, LibraryId,
    Role, SealedCredentials, SignedEntry, SignedKind, SignedObject,
};
use bae_oplog::{encode_batch, Batch, BatchHash, BatchSeq, Op, OpKind, Value, BAE_SCHEMA};
use bae_membership::grant::{Grant, GrantBucket, GrantFile, GrantPayload, GrantTerms};
use bae_storage_s3::layout;
use bae_sync_service::fuzzing::{sample_checkpoint, sealed_marker};
use bae_sync_service::Head;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::args()
        .nth(1)
        .ok_or("usage: seed_corpus CORPUS_DIR")?;
    let root = Path::new(&root);
    let key = LibraryKey::from_bytes(LIBRARY_KEY);
    let batch = encode_batch(&sample_batch())?;
    let nonce = BaseNonce::from_bytes([3; 24]);
    let pattern = |len: usize| (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>();

    let objects = [0, 5, CHUNK_SIZE, CHUNK_SIZE + 5].map(|len| {
        seal_object_with_nonce(
            &key,
            KeyEpoch::FIRST,
            &object_place(),
            &nonce,
            &pattern(len),
        )
    });
    let mut object_seeds = objects.to_vec();
    object_seeds.push(seal_object_with_nonce(
        &key,
        KeyEpoch::FIRST,
        &object_place(),
        &nonce,
        &batch,
    ));
    write(root, "object", &object_seeds)?;

    let chunked = [0, 5, CHUNK_SIZE + 5].map(|len| {
        let blob = encrypt_with_nonce(&key, &nonce, &pattern(len));
        let len = len as u64;
        let mut seed = Vec::new();
        for word in [len, len / 3, len] {
            seed.extend(word.to_le_bytes());
        }
        seed.extend(blob);
        seed
    });
    write(root, "chunked", &chunked)?;

    write(root, "batch", &[batch.clone()])?;
    write(root, "head", &[sample_head().encode()])?;
    write(root, "checkpoint", &[sample_checkpoint(&BAE_SCHEMA)])?;

    let (sealed, place) = sealed_marker(&key);
    let marker = bae_crypto::open_object(&(KeyEpoch::FIRST, &key), &place, &sealed)?;
    write(root, "marker", &[marker])?;

    let v2 = key.to_key_text();
    let v1 = format!("{}{}", LibraryKey::TEXT_PREFIX_V1, hex_of(&LIBRARY_KEY));
    let release = ReleaseKey::from_bytes([7; 32]).to_key_text();
    write(
        root,
        "library_key_text",
        &[
            v2.as_bytes().to_vec(),
            v1.into_bytes(),
            release.as_bytes().to_vec(),
        ],
    )?;

    let identity = IdentitySigningKey::from_seed(&[9; 32]);
    write(
        root,
        "identity_key_text",
        &[
            identity.to_key_text().as_bytes().to_vec(),
            hex_of(&identity.public_key().to_bytes()).into_bytes(),
            identity.sign(b"bae").to_bytes().to_vec(),
        ],
    )?;

    let device = DeviceId::from_bytes([0x11; 16]);
    let checkpoint = layout::CheckpointId::new(1 << 40, "0a1b")?;
    let image = layout::ObjectId::parse(&"ab".repeat(32))?;
    let member = layout::PublicKeyHex::parse(&"cd".repeat(32))?;
    let keys = [
        layout::LIBRARY_MARKER_KEY.to_owned(),
        layout::heads_key(&device, 3),
        layout::ops_key(&device, u64::MAX),
        layout::checkpoint_key(&checkpoint),
        layout::image_key(&image),
        layout::storage_key(&image),
        layout::membership_key(&member, 1),
        layout::key_blob_key(&member, 2),
    ];
    write(root, "bucket_key", &keys.map(String::into_bytes))?;

    let urls = [
        "/var/lib/bae/bucket",
        "file:///var/lib/bae/bucket",
        "memory://",
        "s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&style=path",
        "s3://bucket?timeout=30s&connect_timeout=500ms",
    ];
    write(root, "bucket_url", &urls.map(|u| u.as_bytes().to_vec()))?;
    write_membership(root)
}

/// Seeds of the membership targets: entries, an envelope, key blobs and
/// invites, sealed where they are sealed to the targets' fixed identity.
fn write_membership(root: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let library = LibraryId::from_bytes(LIBRARY_ID);
    let owner = IdentitySigningKey::from_seed(&[1; 32]);
    let member = IdentitySigningKey::from_seed(&IDENTITY_SEED);
    let hlc = Timestamp::from_unix_millis(1_800_000_000_000).ok_or("hlc out of range")?;
    let genesis = SignedEntry::sign(
        &owner,
        Entry {
            library_id: library,
            author: owner.public_key(),
            seq: 0,
            prev: None,
            hlc,
            action: Action::Add {
                subject: owner.public_key(),
                role: Role::Owner,
            },
        },
    )?;
    let removal = SignedEntry::sign(
        &owner,
        Entry {
            library_id: library,
            author: owner.public_key(),
            seq: 1,
            prev: Some(genesis.hash()),
            hlc: Timestamp::from_u64(hlc.as_u64() + 1),
            action: Action::Remove {
                subject: member.public_key(),
                cutoffs: Cutoffs {
                    last_entry: Some(0),
                    devices: vec![(DeviceId::from_bytes([0x22; 16]), 41)],
                },
            },
        },
    )?;
    write(
        root,
        "membership_entry",
        &[genesis.to_bytes(), removal.to_bytes()],
    )?;

    let header = EnvelopeHeader {
        library_id: library,
        kind: SignedKind::Batch,
        device: DeviceId::from_bytes([0x33; 16]),
        seq: 7,
        hlc,
        epoch: KeyEpoch(2),
        prev: Some(BatchHash([0x44; 32])),
    };
    let batch = SignedObject::sign(&owner, header, encode_batch(&sample_batch())?)?;
    let head = SignedObject::sign(
        &owner,
        EnvelopeHeader {
            kind: SignedKind::Head,
            prev: None,
            ..header
        },
        sample_head().encode(),
    )?;
    write(
        root,
        "signed_envelope",
        &[batch.to_bytes(), head.to_bytes()],
    )?;

    // Sealed blobs never open for the fuzzer's mutations; their plaintexts,
    // which the target seals itself, do.
    let mut ring = bae_crypto::KeyRing::new();
    ring.insert(KeyEpoch(0), LibraryKey::from_bytes([0xa0; 32]));
    ring.insert(KeyEpoch(1), LibraryKey::from_bytes([0xa1; 32]));
    let (_, sealed_blob) = seal_key_blob(&owner, library, &member.public_key(), &ring)?;
    let blob = bae_crypto::open_sealed(&member, &sealed_blob)?;
    write(root, "key_blob", &[blob.to_vec(), sealed_blob])?;

    let creds = InviteCredentials {
        access_key: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned().into(),
        session_token: Some("FwoGZXIvYXdzEXAMPLE".to_owned().into()),
    };
    let sealed = SealedCredentials::seal(&creds, library, &member.public_key())?;
    let plaintext = bae_crypto::open_sealed(&member, sealed.as_bytes())?;
    write(
        root,
        "invite_credentials",
        &[plaintext.to_vec(), sealed.as_bytes().to_vec()],
    )?;

    let invite = Invite {
        library_id: library,
        bucket: "s3://bae-library/alice?endpoint=https://s3.example.com".into(),
        founder: owner.public_key(),
        inviter: owner.public_key(),
        invitee: member.public_key(),
        role: Role::Member,
        credentials: None,
    };
    let with_credentials = Invite {
        bucket: "/srv/bae/bucket".into(),
        role: Role::Reader,
        credentials: Some(sealed),
        ..invite.clone()
    };
    write(
        root,
        "invite_code",
        &[
            invite.to_code().into_bytes(),
            format!("{}\n", with_credentials.to_code()).into_bytes(),
        ],
    )?;

    let terms = GrantTerms {
        library_id: library,
        release_id: "release-0001".into(),
        recipient: member.public_key(),
        expires_at: u64::MAX,
        bucket: GrantBucket::Local {
            path: "/srv/bae".into(),
        },
    };
    let payload = GrantPayload {
        release_key: ReleaseKey::from_bytes([0x77; 32]),
        files: vec![GrantFile {
            id: "0a0b0c0d-0000-4000-8000-000000000000".into(),
            name: "01 Intro.flac".into(),
            size: 300_000,
            nonce: BaseNonce::from_bytes([3; 24]),
            scheme: "bae-chunked-v1".into(),
        }],
        credentials: Some(creds),
    };
    let grant = Grant::issue(&owner, terms.clone(), &payload)?;
    let plain = bae_membership::grant::payload_plaintext(&terms, &payload)?;
    let mut grant_seed = vec![0];
    grant_seed.extend_from_slice(grant.as_bytes());
    let mut payload_seed = vec![1];
    payload_seed.extend_from_slice(&plain);
    write(root, "grant", &[grant_seed, payload_seed])?;
    Ok(())
}

fn sample_batch() -> Batch {
    Batch {
        schema_version: 1,
        device: DeviceId::from_bytes([0x11; 16]),
        seq: BatchSeq(2),
        prev: Some(BatchHash([0xab; 32])),
        ops: vec![
            Op {
                hlc: Timestamp::from_u64(0x0123_4567_89ab_cdef),
                table: "albums".into(),
                row_id: "a1".into(),
                kind: OpKind::Update,
                fields: vec![
                    ("title".into(), Value::Text("Blue".into())),
                    ("year".into(), Value::Integer(-1)),
                ],
            },
            Op {
                hlc: Timestamp::from_u64(1),
                table: "tracks".into(),
                row_id: "t1".into(),
                kind: OpKind::Delete,
                fields: vec![],
            },
        ],
    }
}

fn sample_head() -> Head {
    Head {
        version: 1,
        device: DeviceId::from_bytes([0x11; 16]),
        seq: 300,
        hash: Some(BatchHash([0xab; 32])),
        hlc: Timestamp::from_u64(0x0123_4567_89ab_cdef),
        pushed_at_ms: 1_800_000_000_000,
        cursors: vec![(DeviceId::from_bytes([0x22; 16]), 7)],
        schema_version: 1,
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes each seed as `corpus/TARGET/seed-N`.
fn write(root: &Path, target: &str, seeds: &[Vec<u8>]) -> std::io::Result<()> {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir)?;
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), seed)?;
    }
    Ok(())
}
