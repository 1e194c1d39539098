//! Known-answer tests against the committed vector files in `tests/vectors/`
//! (described in `docs/FORMAT-crypto.md`):
//! - `bae-chunked-v1.json`: made with libsodium by bae; must decrypt and
//!   re-encrypt byte for byte.
//! - `bae-chunked-fixed-v1.json`, `bae-object-v1.json`: our own fixed
//!   key/nonce vectors.
//! - `bae-object-v1-invalid.json`, `bae-chunked-v1-invalid.json`: must-fail
//!   cases, each refused with the error it names.
//!
//! Regenerate ours with `BAE_REGEN_VECTORS=1 cargo test -p bae-crypto
//! --test vectors` only when a format version changes.

// Test code: a malformed vector file should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bae_crypto::chunked::{self, BaseNonce};
use bae_crypto::object::{self, ObjectHeader};
use bae_crypto::{open_object, KeyEpoch, LibraryKey, ObjectKind, ObjectPlace};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
}

fn load(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(vector_path(name)).unwrap()).unwrap()
}

fn bytes(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap()).unwrap()
}

fn array<const N: usize>(v: &Value, field: &str) -> [u8; N] {
    bytes(v, field).try_into().unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `sha256(prefix || counter_u64_le)` blocks, concatenated, first `len` bytes.
fn rule_plaintext(prefix: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 0u64;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(prefix);
        h.update(counter.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// The plaintext of a vector: `plaintext_hex` if present, else regenerated
/// from the prefix quoted in `plaintext_rule` (`sha256(b'PREFIX' || ...`).
fn plaintext_of(v: &Value) -> Vec<u8> {
    let len = v["plaintext_len"].as_u64().unwrap() as usize;
    let pt = match v.get("plaintext_hex") {
        Some(h) => hex::decode(h.as_str().unwrap()).unwrap(),
        None => {
            let rule = v["plaintext_rule"].as_str().unwrap();
            let start = rule.find("b'").unwrap() + 2;
            let end = start + rule[start..].find('\'').unwrap();
            rule_plaintext(&rule.as_bytes()[start..end], len)
        }
    };
    assert_eq!(pt.len(), len);
    assert_eq!(sha256_hex(&pt), v["plaintext_sha256"].as_str().unwrap());
    pt
}

fn check_ciphertext(v: &Value, ct: &[u8], len_field: &str, hex_field: &str, sha_field: &str) {
    assert_eq!(ct.len() as u64, v[len_field].as_u64().unwrap());
    assert_eq!(sha256_hex(ct), v[sha_field].as_str().unwrap());
    if let Some(h) = v.get(hex_field) {
        assert_eq!(hex::encode(ct), h.as_str().unwrap());
    }
}

#[test]
fn libsodium_chunked_vectors_encrypt_and_decrypt_byte_for_byte() {
    let file = load("bae-chunked-v1.json");
    assert_eq!(file["chunk_size"], 65536);
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 10);
    for v in vectors {
        check_chunked_vector(v);
    }
}

/// Encrypts a chunked vector's plaintext under its key and nonce, checks the
/// ciphertext against it, and decrypts it back (with and without the length).
fn check_chunked_vector(v: &Value) {
    let key = LibraryKey::from_bytes(array(v, "key_hex"));
    let nonce = BaseNonce::from_bytes(array(v, "base_nonce_hex"));
    let pt = plaintext_of(v);
    let ct = chunked::encrypt_with_nonce(&key, &nonce, &pt);
    check_ciphertext(
        v,
        &ct,
        "ciphertext_len",
        "ciphertext_hex",
        "ciphertext_sha256",
    );
    assert_eq!(chunked::decrypt(&key, &ct).unwrap(), pt);
    assert_eq!(
        chunked::decrypt_with_len(&key, &ct, pt.len() as u64).unwrap(),
        pt
    );
}

fn regenerate() -> bool {
    std::env::var_os("BAE_REGEN_VECTORS").is_some()
}

fn write_or_compare(name: &str, generated: Value) {
    if regenerate() {
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(vector_path(name), text).unwrap();
    }
}

fn fixed_key() -> LibraryKey {
    LibraryKey::from_bytes(core::array::from_fn(|i| i as u8))
}

fn fixed_nonce() -> BaseNonce {
    BaseNonce::from_bytes(core::array::from_fn(|i| 0x40 + i as u8))
}

fn rule_text(prefix: &str, len: usize) -> String {
    format!("sha256(b'{prefix}' || counter_u64_le) blocks, concatenated, first {len} bytes")
}

fn plaintext_fields(prefix: &str, len: usize) -> (Vec<u8>, Value) {
    let pt = rule_plaintext(prefix.as_bytes(), len);
    let mut fields = json!({
        "plaintext_len": len,
        "plaintext_rule": rule_text(prefix, len),
        "plaintext_sha256": sha256_hex(&pt),
    });
    if len <= 64 {
        fields["plaintext_hex"] = json!(hex::encode(&pt));
    }
    (pt, fields)
}

#[test]
fn fixed_chunked_vectors_match() {
    if regenerate() {
        let (key, nonce) = (fixed_key(), fixed_nonce());
        let vectors: Vec<Value> = [0usize, 3, 65536, 65537]
            .into_iter()
            .map(|len| {
                let (pt, mut v) = plaintext_fields(&format!("bae-chunked-fixed-v1/pt/{len}"), len);
                let ct = chunked::encrypt_with_nonce(&key, &nonce, &pt);
                v["key_hex"] = json!(hex::encode(key.expose_secret()));
                v["base_nonce_hex"] = json!(hex::encode(nonce.as_bytes()));
                v["ciphertext_len"] = json!(ct.len());
                v["ciphertext_sha256"] = json!(sha256_hex(&ct));
                if ct.len() <= 200 {
                    v["ciphertext_hex"] = json!(hex::encode(&ct));
                }
                v
            })
            .collect();
        write_or_compare(
            "bae-chunked-fixed-v1.json",
            json!({"format": "bae chunked XChaCha20-Poly1305 v1 (fixed key/nonce, made by bae-crypto)", "vectors": vectors}),
        );
    }
    for v in load("bae-chunked-fixed-v1.json")["vectors"]
        .as_array()
        .unwrap()
    {
        check_chunked_vector(v);
    }
}

fn kind_name(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Head => "Head",
        ObjectKind::OpBatch => "OpBatch",
        ObjectKind::Checkpoint => "Checkpoint",
        ObjectKind::Image => "Image",
        ObjectKind::Membership => "Membership",
        ObjectKind::KeyWrap => "KeyWrap",
        ObjectKind::LibraryMarker => "LibraryMarker",
    }
}

#[test]
fn fixed_object_vectors_match() {
    if regenerate() {
        let (key, nonce) = (fixed_key(), fixed_nonce());
        let cases = [
            (ObjectKind::Head, 0u64, 0usize, 0u32),
            (ObjectKind::OpBatch, 42, 3, 0),
            (ObjectKind::OpBatch, 43, 65536, 1),
            (ObjectKind::Checkpoint, 1, 65537, 7),
            (ObjectKind::Checkpoint, 2, 200_000, 7),
        ];
        let vectors: Vec<Value> = cases
            .into_iter()
            .map(|(kind, seq, len, epoch)| {
                let device: [u8; 16] = core::array::from_fn(|i| 0xa0 + i as u8);
                let place = ObjectPlace { kind, device, seq };
                let (pt, mut v) = plaintext_fields(&format!("bae-object-v1/pt/{len}"), len);
                let obj =
                    object::seal_object_with_nonce(&key, KeyEpoch(epoch), &place, &nonce, &pt);
                v["key_hex"] = json!(hex::encode(key.expose_secret()));
                v["key_fingerprint_hex"] = json!(key.fingerprint().to_string());
                v["base_nonce_hex"] = json!(hex::encode(nonce.as_bytes()));
                v["kind"] = json!(kind_name(kind));
                v["kind_byte"] = json!(kind.to_byte());
                v["device_hex"] = json!(hex::encode(device));
                v["seq"] = json!(seq);
                v["key_epoch"] = json!(epoch);
                v["header_hex"] = json!(hex::encode(&obj[..object::HEADER_LEN]));
                v["object_len"] = json!(obj.len());
                v["object_sha256"] = json!(sha256_hex(&obj));
                if obj.len() <= 200 {
                    v["object_hex"] = json!(hex::encode(&obj));
                }
                v
            })
            .collect();
        write_or_compare(
            "bae-object-v1.json",
            json!({"format": "bae sync object v1 (fixed key/nonce, made by bae-crypto)", "vectors": vectors}),
        );
    }
    for v in load("bae-object-v1.json")["vectors"].as_array().unwrap() {
        let key = LibraryKey::from_bytes(array(v, "key_hex"));
        assert_eq!(
            key.fingerprint().to_string(),
            v["key_fingerprint_hex"].as_str().unwrap()
        );
        let nonce = BaseNonce::from_bytes(array(v, "base_nonce_hex"));
        let kind = ObjectKind::from_byte(v["kind_byte"].as_u64().unwrap() as u8).unwrap();
        assert_eq!(kind_name(kind), v["kind"].as_str().unwrap());
        let place = ObjectPlace {
            kind,
            device: array(v, "device_hex"),
            seq: v["seq"].as_u64().unwrap(),
        };
        let epoch = KeyEpoch(v["key_epoch"].as_u64().unwrap() as u32);
        let pt = plaintext_of(v);
        let obj = object::seal_object_with_nonce(&key, epoch, &place, &nonce, &pt);
        assert_eq!(
            hex::encode(&obj[..object::HEADER_LEN]),
            v["header_hex"].as_str().unwrap()
        );
        check_ciphertext(v, &obj, "object_len", "object_hex", "object_sha256");
        let header = ObjectHeader::parse(&obj).unwrap();
        assert_eq!((header.place, header.epoch), (place, epoch));
        assert_eq!(open_object(&(epoch, &key), &place, &obj).unwrap(), pt);
    }
}

// ---------------------------------------------------------------------------
// Must-fail vectors: inputs a reader must refuse, each with the error it must
// give (like age's CCTV). Made from the good vectors above by cutting,
// flipping or appending bytes, or by reading them with the wrong
// expectations; regenerate with `BAE_REGEN_VECTORS=1` like the others.

/// The error a case expects, as it is written in the files: the variant's
/// name and the fields that say which one (a chunk index, a version byte).
fn object_error_json(err: &bae_crypto::ObjectError) -> Value {
    use bae_crypto::ObjectError as E;
    match err {
        E::UnsupportedVersion { version } => {
            json!({"variant": "UnsupportedVersion", "version": version})
        }
        E::UnsupportedFlags { flags } => json!({"variant": "UnsupportedFlags", "flags": flags}),
        E::UnknownKind { byte } => json!({"variant": "UnknownKind", "byte": byte}),
        E::WrongPlace { found, .. } => json!({"variant": "WrongPlace", "found": place_json(found)}),
        E::UnknownEpoch { epoch } => json!({"variant": "UnknownEpoch", "key_epoch": epoch.0}),
        E::WrongKey { epoch, .. } => json!({"variant": "WrongKey", "key_epoch": epoch.0}),
        E::Tampered { chunk } => json!({"variant": "Tampered", "chunk": chunk}),
        other => json!({"variant": variant_name(other)}),
    }
}

fn chunked_error_json(err: &bae_crypto::ChunkedError) -> Value {
    match err {
        bae_crypto::ChunkedError::Tampered { chunk } => {
            json!({"variant": "Tampered", "chunk": chunk})
        }
        other => json!({"variant": variant_name(other)}),
    }
}

/// `Truncated` from `Truncated`, `Io` from `Io(..)`.
fn variant_name(err: &impl std::fmt::Debug) -> String {
    format!("{err:?}")
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

fn place_json(place: &ObjectPlace) -> Value {
    json!({
        "kind": kind_name(place.kind),
        "kind_byte": place.kind.to_byte(),
        "device_hex": hex::encode(place.device),
        "seq": place.seq,
    })
}

fn place_from_json(v: &Value) -> ObjectPlace {
    let kind = ObjectKind::from_byte(v["kind_byte"].as_u64().unwrap() as u8).unwrap();
    assert_eq!(kind_name(kind), v["kind"].as_str().unwrap());
    ObjectPlace {
        kind,
        device: array(v, "device_hex"),
        seq: v["seq"].as_u64().unwrap(),
    }
}

/// A key that is not the vectors' key (`20 21 .. 3f`).
fn other_key() -> LibraryKey {
    LibraryKey::from_bytes(core::array::from_fn(|i| 0x20 + i as u8))
}

/// One good sync object of `bae-object-v1.json`, rebuilt from its inputs.
struct GoodObject {
    bytes: Vec<u8>,
    place: ObjectPlace,
    epoch: KeyEpoch,
    source: String,
}

fn good_object(kind: ObjectKind, seq: u64, len: usize, epoch: u32) -> GoodObject {
    let device: [u8; 16] = core::array::from_fn(|i| 0xa0 + i as u8);
    let place = ObjectPlace { kind, device, seq };
    let (pt, _) = plaintext_fields(&format!("bae-object-v1/pt/{len}"), len);
    let bytes =
        object::seal_object_with_nonce(&fixed_key(), KeyEpoch(epoch), &place, &fixed_nonce(), &pt);
    let source = format!(
        "bae-object-v1.json: {} seq {seq}, epoch {epoch}, {len}-byte plaintext",
        kind_name(kind)
    );
    GoodObject {
        bytes,
        place,
        epoch: KeyEpoch(epoch),
        source,
    }
}

/// A must-fail object case: what a reader is given and the error it owes.
struct ObjectCase {
    name: &'static str,
    what: String,
    input: Vec<u8>,
    keys: Vec<(KeyEpoch, LibraryKey)>,
    expected: ObjectPlace,
    error: Value,
}

impl ObjectCase {
    /// A case read with the vectors' key at the object's epoch, at its place.
    fn new(
        name: &'static str,
        base: &GoodObject,
        edit: &str,
        input: Vec<u8>,
        error: Value,
    ) -> Self {
        ObjectCase {
            name,
            what: format!("{}; {edit}", base.source),
            input,
            keys: vec![(base.epoch, fixed_key())],
            expected: base.place,
            error,
        }
    }

    fn to_json(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|(e, k)| json!({"key_epoch": e.0, "key_hex": hex::encode(k.expose_secret())}))
            .collect();
        json!({
            "name": self.name,
            "description": self.what,
            "input_len": self.input.len(),
            "input_hex": hex::encode(&self.input),
            "keys": keys,
            "expected_place": place_json(&self.expected),
            "error": self.error,
        })
    }
}

fn flipped(bytes: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at] ^= mask;
    out
}

fn appended(bytes: &[u8], extra: &[u8]) -> Vec<u8> {
    [bytes, extra].concat()
}

fn err(variant: &str) -> Value {
    json!({ "variant": variant })
}

fn tampered(chunk: u64) -> Value {
    json!({"variant": "Tampered", "chunk": chunk})
}

/// Every must-fail object case, with the error `open_object` gives for it
/// (reasoned from the reading order in `docs/FORMAT-crypto.md` section 2;
/// the test checks each).
fn object_cases() -> Vec<ObjectCase> {
    use ObjectCase as C;
    let small = good_object(ObjectKind::OpBatch, 42, 3, 0);
    let full = good_object(ObjectKind::OpBatch, 43, 65536, 1);
    let two = good_object(ObjectKind::Checkpoint, 1, 65537, 7);
    let s = &small.bytes;
    let last = s.len() - 1;
    let wrong_place = |name, what: &str, expected: ObjectPlace| C {
        expected,
        ..C::new(
            name,
            &small,
            what,
            s.clone(),
            json!({"variant": "WrongPlace", "found": place_json(&small.place)}),
        )
    };
    let mut fingerprint_forged = s.clone();
    fingerprint_forged[36..52].copy_from_slice(other_key().fingerprint().as_bytes());
    vec![
        // Truncated: inside the header, in the first tag, at a chunk boundary, the last byte.
        C::new(
            "truncated-empty",
            &small,
            "no bytes",
            vec![],
            err("Truncated"),
        ),
        C::new(
            "truncated-in-magic",
            &small,
            "first 2 bytes",
            s[..2].to_vec(),
            err("Truncated"),
        ),
        C::new(
            "truncated-in-header",
            &small,
            "first 40 bytes",
            s[..40].to_vec(),
            err("Truncated"),
        ),
        C::new(
            "truncated-header-minus-one",
            &small,
            "first 75 bytes",
            s[..75].to_vec(),
            err("Truncated"),
        ),
        C::new(
            "truncated-after-header",
            &small,
            "the 76 header bytes, no chunk",
            s[..76].to_vec(),
            err("Truncated"),
        ),
        C::new(
            "truncated-in-tag",
            &small,
            "header and 15 bytes of the 19-byte chunk (shorter than a tag)",
            s[..91].to_vec(),
            err("Truncated"),
        ),
        C::new(
            "truncated-at-chunk-boundary",
            &two,
            "cut after chunk 0 (sealed as not final)",
            two.bytes[..76 + 65552].to_vec(),
            err("Truncated"),
        ),
        C::new(
            "truncated-last-byte",
            &small,
            "last byte removed (a cut inside the final chunk)",
            s[..last].to_vec(),
            tampered(0),
        ),
        // One flipped bit: each header field, the ciphertext, the tag.
        C::new(
            "flipped-magic",
            &small,
            "bit 0 of byte 0 (magic) flipped",
            flipped(s, 0, 0x01),
            err("NotAnObject"),
        ),
        C::new(
            "flipped-kind",
            &small,
            "bit 7 of byte 5 (kind 2 -> 130) flipped",
            flipped(s, 5, 0x80),
            json!({"variant": "UnknownKind", "byte": 130}),
        ),
        C::new(
            "flipped-flags",
            &small,
            "bit 7 of byte 7 (flags 0 -> 0x8000) flipped",
            flipped(s, 7, 0x80),
            json!({"variant": "UnsupportedFlags", "flags": 0x8000}),
        ),
        C::new(
            "flipped-epoch",
            &small,
            "bit 0 of byte 8 (epoch 0 -> 1) flipped; the reader has no key for epoch 1",
            flipped(s, 8, 0x01),
            json!({"variant": "UnknownEpoch", "key_epoch": 1}),
        ),
        C::new(
            "flipped-device",
            &small,
            "bit 0 of byte 12 (device) flipped",
            flipped(s, 12, 0x01),
            json!({"variant": "WrongPlace", "found": place_json(&ObjectPlace { device: flipped(&small.place.device, 0, 0x01).try_into().unwrap(), ..small.place })}),
        ),
        C::new(
            "flipped-seq",
            &small,
            "bit 0 of byte 28 (seq 42 -> 43) flipped",
            flipped(s, 28, 0x01),
            json!({"variant": "WrongPlace", "found": place_json(&ObjectPlace { seq: 43, ..small.place })}),
        ),
        C::new(
            "flipped-fingerprint",
            &small,
            "bit 0 of byte 36 (key fingerprint) flipped",
            flipped(s, 36, 0x01),
            json!({"variant": "WrongKey", "key_epoch": 0}),
        ),
        C::new(
            "flipped-nonce",
            &small,
            "bit 0 of byte 52 (base nonce) flipped",
            flipped(s, 52, 0x01),
            tampered(0),
        ),
        C::new(
            "flipped-ciphertext",
            &small,
            "bit 0 of byte 76 (first ciphertext byte) flipped",
            flipped(s, 76, 0x01),
            tampered(0),
        ),
        C::new(
            "flipped-tag",
            &small,
            "bit 7 of the last byte (the tag) flipped",
            flipped(s, last, 0x80),
            tampered(0),
        ),
        // A header edited to where the reader looks: the header is in every chunk's associated data.
        C {
            expected: ObjectPlace {
                seq: 43,
                ..small.place
            },
            ..C::new(
                "header-seq-edited-to-the-expected-place",
                &small,
                "seq edited 42 -> 43, read as seq 43",
                flipped(s, 28, 0x01),
                tampered(0),
            )
        },
        C {
            keys: vec![(KeyEpoch(0), fixed_key()), (KeyEpoch(1), fixed_key())],
            ..C::new(
                "header-epoch-relabelled",
                &small,
                "epoch edited 0 -> 1; the reader has the right key at both epochs",
                flipped(s, 8, 0x01),
                tampered(0),
            )
        },
        C {
            keys: vec![(KeyEpoch(0), other_key())],
            ..C::new(
                "header-fingerprint-forged",
                &small,
                "fingerprint replaced by the reader's (wrong) key's",
                fingerprint_forged,
                tampered(0),
            )
        },
        // Read at another place than it was sealed for (moved or swapped).
        wrong_place(
            "wrong-place-kind",
            "read as a Head",
            ObjectPlace {
                kind: ObjectKind::Head,
                ..small.place
            },
        ),
        wrong_place(
            "wrong-place-device",
            "read as device b0..bf",
            ObjectPlace {
                device: core::array::from_fn(|i| 0xb0 + i as u8),
                ..small.place
            },
        ),
        wrong_place(
            "wrong-place-seq",
            "read as seq 41",
            ObjectPlace {
                seq: 41,
                ..small.place
            },
        ),
        C {
            keys: vec![(KeyEpoch(1), fixed_key())],
            ..C::new(
                "wrong-epoch",
                &small,
                "the reader has the right key, but only as epoch 1",
                s.clone(),
                json!({"variant": "UnknownEpoch", "key_epoch": 0}),
            )
        },
        // Wrong key.
        C {
            keys: vec![(KeyEpoch(0), other_key())],
            ..C::new(
                "wrong-key",
                &small,
                "the reader's key for epoch 0 is 20 21 .. 3f",
                s.clone(),
                json!({"variant": "WrongKey", "key_epoch": 0}),
            )
        },
        // Trailing bytes.
        C::new(
            "trailing-byte-after-full-final-chunk",
            &full,
            "one 00 byte appended",
            appended(&full.bytes, &[0]),
            err("TrailingData"),
        ),
        C::new(
            "trailing-byte-after-short-final-chunk",
            &small,
            "one 00 byte appended (it merges into the final chunk)",
            appended(s, &[0]),
            tampered(0),
        ),
        // Unsupported version.
        C::new(
            "unsupported-version-0",
            &small,
            "version byte set to 0",
            {
                let mut b = s.clone();
                b[4] = 0;
                b
            },
            json!({"variant": "UnsupportedVersion", "version": 0}),
        ),
        C::new(
            "unsupported-version-2",
            &small,
            "version byte set to 2",
            {
                let mut b = s.clone();
                b[4] = 2;
                b
            },
            json!({"variant": "UnsupportedVersion", "version": 2}),
        ),
    ]
}

#[test]
fn object_must_fail_vectors_are_refused_with_their_error() {
    let name = "bae-object-v1-invalid.json";
    if regenerate() {
        let cases: Vec<Value> = object_cases().iter().map(ObjectCase::to_json).collect();
        write_or_compare(
            name,
            json!({
                "format": "bae sync object v1: must-fail cases (made by bae-crypto)",
                "how_to_check": "open input_hex with the keys (epoch -> key) expecting expected_place; it must fail with error (docs/FORMAT-crypto.md, 'Must-fail vectors')",
                "cases": cases,
            }),
        );
    }
    let cases = load(name)["cases"].as_array().unwrap().clone();
    assert!(cases.len() >= 30);
    for case in &cases {
        let mut ring = bae_crypto::KeyRing::new();
        for k in case["keys"].as_array().unwrap() {
            ring.insert(
                KeyEpoch(k["key_epoch"].as_u64().unwrap() as u32),
                LibraryKey::from_bytes(array(k, "key_hex")),
            );
        }
        let expected = place_from_json(&case["expected_place"]);
        let input = bytes(case, "input_hex");
        assert_eq!(input.len() as u64, case["input_len"].as_u64().unwrap());
        let whole = open_object(&ring, &expected, &input).map(|_| ());
        let streamed =
            object::open_object_stream(&ring, &expected, &input[..], std::io::sink(), u64::MAX)
                .map(|_| ());
        for (reader, result) in [("open_object", whole), ("open_object_stream", streamed)] {
            let got = result.map_err(|e| object_error_json(&e));
            assert_eq!(
                got,
                Err(case["error"].clone()),
                "case {} with {reader}",
                case["name"]
            );
        }
    }
}

/// A must-fail chunked case: a blob, the key, the plaintext length a
/// reader may know, and the error of each kind of reader.
struct ChunkedCase {
    name: &'static str,
    what: String,
    input: Vec<u8>,
    key: LibraryKey,
    plaintext_len: u64,
    /// A reader that checks the blob length against the plaintext length
    /// before decrypting (`decrypt_with_len`).
    error: Value,
    /// A reader that decrypts chunk by chunk and compares the length at the
    /// end (`decrypt_stream(.., Some(len))`).
    error_streaming: Value,
    /// A reader that does not know the length (`decrypt`,
    /// `decrypt_stream(.., None)`); `None` where it accepts the input.
    error_without_len: Option<Value>,
}

/// Every must-fail chunked case, made from `bae-chunked-fixed-v1.json`.
/// A blob cut at a chunk boundary is refused only by a reader that knows
/// the length: without it, it is a valid shorter blob (the format has no
/// final flag).
fn chunked_cases() -> Vec<ChunkedCase> {
    let blob = |len: usize| {
        let (pt, _) = plaintext_fields(&format!("bae-chunked-fixed-v1/pt/{len}"), len);
        chunked::encrypt_with_nonce(&fixed_key(), &fixed_nonce(), &pt)
    };
    let (small, two) = (blob(3), blob(65537));
    let last = small.len() - 1;
    // Errors that do not depend on the reader.
    let same = |name, edit: &str, input: Vec<u8>, error: Value| ChunkedCase {
        name,
        what: format!("bae-chunked-fixed-v1.json: 3-byte plaintext; {edit}"),
        input,
        key: fixed_key(),
        plaintext_len: 3,
        error: error.clone(),
        error_streaming: error.clone(),
        error_without_len: Some(error),
    };
    vec![
        same(
            "truncated-in-nonce",
            "first 10 bytes",
            small[..10].to_vec(),
            err("Truncated"),
        ),
        same(
            "truncated-in-tag",
            "nonce and 15 bytes (shorter than a tag)",
            small[..39].to_vec(),
            err("Truncated"),
        ),
        ChunkedCase {
            what: "bae-chunked-fixed-v1.json: 65537-byte plaintext; cut after chunk 0 \
                   (without the length, a valid blob of 65536 bytes)"
                .into(),
            plaintext_len: 65537,
            error_without_len: None,
            ..same(
                "truncated-at-chunk-boundary",
                "",
                two[..24 + 65552].to_vec(),
                err("Truncated"),
            )
        },
        ChunkedCase {
            error: err("Truncated"),
            ..same(
                "truncated-last-byte",
                "last byte removed (a cut inside the final chunk)",
                small[..last].to_vec(),
                tampered(0),
            )
        },
        same(
            "flipped-nonce",
            "bit 0 of byte 0 (base nonce) flipped",
            flipped(&small, 0, 0x01),
            tampered(0),
        ),
        same(
            "flipped-ciphertext",
            "bit 0 of byte 24 (first ciphertext byte) flipped",
            flipped(&small, 24, 0x01),
            tampered(0),
        ),
        same(
            "flipped-tag",
            "bit 7 of the last byte (the tag) flipped",
            flipped(&small, last, 0x80),
            tampered(0),
        ),
        ChunkedCase {
            key: other_key(),
            ..same(
                "wrong-key",
                "read with key 20 21 .. 3f",
                small.clone(),
                tampered(0),
            )
        },
        ChunkedCase {
            error: err("TrailingData"),
            ..same(
                "trailing-byte",
                "one 00 byte appended (it merges into the final chunk)",
                appended(&small, &[0]),
                tampered(0),
            )
        },
    ]
}

#[test]
fn chunked_must_fail_vectors_are_refused_with_their_error() {
    let name = "bae-chunked-v1-invalid.json";
    if regenerate() {
        let cases: Vec<Value> = chunked_cases()
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "description": c.what,
                    "input_len": c.input.len(),
                    "input_hex": hex::encode(&c.input),
                    "key_hex": hex::encode(c.key.expose_secret()),
                    "plaintext_len": c.plaintext_len,
                    "error": c.error,
                    "error_streaming": c.error_streaming,
                    "error_without_len": c.error_without_len,
                })
            })
            .collect();
        write_or_compare(
            name,
            json!({
                "format": "bae chunked XChaCha20-Poly1305 v1: must-fail cases (made by bae-crypto)",
                "how_to_check": "decrypt input_hex with key_hex knowing plaintext_len: it must fail, with error when the blob length is checked first, error_streaming when chunks are decrypted first; without the length it fails with error_without_len, or decrypts to a shorter plaintext where that is null (docs/FORMAT-crypto.md, 'Must-fail vectors')",
                "cases": cases,
            }),
        );
    }
    let cases = load(name)["cases"].as_array().unwrap().clone();
    assert!(cases.len() >= 9);
    for case in &cases {
        let key = LibraryKey::from_bytes(array(case, "key_hex"));
        let input = bytes(case, "input_hex");
        assert_eq!(input.len() as u64, case["input_len"].as_u64().unwrap());
        let len = case["plaintext_len"].as_u64().unwrap();
        let stream = |len| {
            chunked::decrypt_stream(&key, &input[..], std::io::sink(), len).map(|n| n as usize)
        };
        let without_len = case["error_without_len"].clone();
        for (reader, result, expected) in [
            (
                "decrypt_with_len",
                chunked::decrypt_with_len(&key, &input, len).map(|p| p.len()),
                &case["error"],
            ),
            (
                "decrypt_stream(Some(len))",
                stream(Some(len)),
                &case["error_streaming"],
            ),
            (
                "decrypt",
                chunked::decrypt(&key, &input).map(|p| p.len()),
                &without_len,
            ),
            ("decrypt_stream(None)", stream(None), &without_len),
        ] {
            let name = &case["name"];
            match result {
                Err(e) => assert_eq!(&chunked_error_json(&e), expected, "{name} with {reader}"),
                // Accepted only without the length, and then short.
                Ok(n) => assert!(
                    expected.is_null() && (n as u64) < len,
                    "{name} with {reader}: decrypted {n} bytes"
                ),
            }
        }
    }
}
