//! Known-answer tests against the committed vector files in `tests/vectors/`
//! (described in `docs/FORMAT-crypto.md`):
//! - `bae-chunked-v1.json`: made with libsodium by bae; must decrypt and
//!   re-encrypt byte for byte.
//! - `bae-chunked-fixed-v1.json`, `bae-object-v1.json`: our own fixed
//!   key/nonce vectors. Regenerate with `BAE_REGEN_VECTORS=1 cargo test -p
//!   bae-crypto --test vectors` only when a format version changes.

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
