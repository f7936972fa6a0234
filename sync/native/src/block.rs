//! A stored block checked as `schemas.chain.check_block` checks it: the message and
//! its header read, the header signed by the chain's Ed25519 key (RFC 8032), the
//! block following the tip, its entries hash-chained to the header's head and under
//! its Merkle root (RFC 6962 §2.1). Only what this module reads exactly as the Python
//! reference does is accepted; everything else is `Refused` and goes to that reference,
//! which names the problem. Nothing here does I/O.

use crate::cbor::{put_bytes, put_head, put_key, put_text, Reader, Refused, Result, MAP, UINT};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// Where a chain stands: `schemas.chain.Tip`.
#[derive(Clone, Debug)]
pub struct Tip {
    pub height: u64,
    pub hash: Vec<u8>,
    pub seq: u64,
    pub head: Vec<u8>,
}

/// One entry of a block, as signed: its kind, payload and hash.
pub struct Signed<'a> {
    pub kind: &'a str,
    pub payload: &'a [u8],
    pub hash: [u8; 32],
}

pub struct Checked<'a> {
    pub first: u64,
    pub entries: Vec<Signed<'a>>,
    pub tip: Tip,
}

// The DER SubjectPublicKeyInfo of an Ed25519 key (RFC 8410 §4): this prefix, then the
// 32 key bytes. Keys in another form go to the Python path.
const ED25519_SPKI: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

pub fn key(der: &[u8]) -> Result<VerifyingKey> {
    let raw = der.strip_prefix(&ED25519_SPKI[..]).ok_or(Refused)?;
    VerifyingKey::from_bytes(raw.try_into().map_err(|_| Refused)?).map_err(|_| Refused)
}

struct Header<'a> {
    alg: &'a str,
    head: &'a [u8],
    prev: &'a [u8],
    root: &'a [u8],
    chain: &'a str,
    count: u64,
    first: u64,
    height: u64,
}

/// The header in exactly the form `Header.encode` writes (keys in RFC 8949 §4.2.1
/// order), so that the Python re-encoding check would pass too.
fn header(data: &[u8]) -> Result<Header<'_>> {
    let mut r = Reader::new(data);
    expect_map(&mut r, 10)?;
    expect_key(&mut r, "v")?;
    if r.uint()? != 1 {
        return Err(Refused);
    }
    expect_key(&mut r, "at")?;
    r.uint()?;
    let h = Header {
        alg: field(&mut r, "alg", Reader::text)?,
        head: field(&mut r, "head", Reader::bytes)?,
        prev: field(&mut r, "prev", Reader::bytes)?,
        root: field(&mut r, "root", Reader::bytes)?,
        chain: field(&mut r, "chain", Reader::text)?,
        count: field(&mut r, "count", Reader::uint)?,
        first: field(&mut r, "first", Reader::uint)?,
        height: field(&mut r, "height", Reader::uint)?,
    };
    if !r.at_end() || h.count < 1 || h.first < 1 || h.height < 1 {
        return Err(Refused);
    }
    Ok(h)
}

fn expect_map(r: &mut Reader<'_>, n: usize) -> Result<()> {
    if r.map()? != n {
        return Err(Refused);
    }
    Ok(())
}

fn expect_key(r: &mut Reader<'_>, key: &str) -> Result<()> {
    if r.text()? != key {
        return Err(Refused);
    }
    Ok(())
}

fn field<'a, T>(
    r: &mut Reader<'a>,
    key: &str,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T>,
) -> Result<T> {
    expect_key(r, key)?;
    read(r)
}

/// The block `message` (as `Block.message` writes it) checked against `tip` and `key`,
/// and its hash against `stored_hash`.
pub fn check<'a>(
    message: &'a [u8],
    stored_hash: &[u8],
    tip: &Tip,
    key: &VerifyingKey,
) -> Result<Checked<'a>> {
    let mut r = Reader::new(message);
    expect_map(&mut r, 4)?;
    expect_key(&mut r, "v")?;
    if r.uint()? != 1 {
        return Err(Refused);
    }
    let sig = field(&mut r, "sig", Reader::bytes)?;
    let header_bytes = field(&mut r, "header", Reader::bytes)?;
    expect_key(&mut r, "entries")?;
    let (4, n) = r.head()? else {
        return Err(Refused);
    };
    let mut raw = Vec::new();
    for _ in 0..n {
        if r.head()? != (4, 2) {
            return Err(Refused);
        }
        let kind = r.text()?;
        if kind != "op" && kind != "anchor" {
            return Err(Refused);
        }
        raw.push((kind, r.bytes()?));
    }
    if !r.at_end() {
        return Err(Refused);
    }
    let h = header(header_bytes)?;
    if raw.len() as u64 != h.count || h.alg != "sha256" {
        return Err(Refused); // SM3 chains are checked in Python
    }
    let signature = Signature::from_slice(sig).map_err(|_| Refused)?;
    // verify_strict refuses what OpenSSL's Ed25519 (the Python path's) may accept, never
    // the reverse, for the directory's keys: a pass here is a pass there
    key.verify_strict(header_bytes, &signature)
        .map_err(|_| Refused)?;
    if h.height != tip.height + 1 || h.prev != tip.hash || h.first != tip.seq + 1 {
        return Err(Refused);
    }
    let mut prev: Vec<u8> = tip.head.clone();
    let mut entries = Vec::with_capacity(raw.len());
    let mut buf = Vec::with_capacity(512);
    for (n, (kind, payload)) in raw.into_iter().enumerate() {
        let hash = entry_hash(&mut buf, h.chain, h.first + n as u64, kind, &prev, payload);
        prev.clear();
        prev.extend_from_slice(&hash);
        entries.push(Signed {
            kind,
            payload,
            hash,
        });
    }
    if prev != h.head || merkle_root(&entries) != h.root {
        return Err(Refused);
    }
    let hash: [u8; 32] = Sha256::digest(header_bytes).into();
    if hash[..] != *stored_hash {
        return Err(Refused);
    }
    let tip = Tip {
        height: h.height,
        hash: hash.to_vec(),
        seq: h.first + h.count - 1,
        head: h.head.to_vec(),
    };
    Ok(Checked {
        first: h.first,
        entries,
        tip,
    })
}

/// H(CBOR {"seq", "kind", "prev", "chain", "payload"}), keys in RFC 8949 §4.2.1 order
/// (`schemas.chain.entry_hash`).
fn entry_hash(
    buf: &mut Vec<u8>,
    chain: &str,
    seq: u64,
    kind: &str,
    prev: &[u8],
    payload: &[u8],
) -> [u8; 32] {
    buf.clear();
    put_head(buf, MAP, 5);
    put_key(buf, "seq");
    put_head(buf, UINT, seq);
    put_key(buf, "kind");
    put_text(buf, kind);
    put_key(buf, "prev");
    put_bytes(buf, prev);
    put_key(buf, "chain");
    put_text(buf, chain);
    put_key(buf, "payload");
    put_bytes(buf, payload);
    Sha256::digest(&buf[..]).into()
}

/// RFC 6962 §2.1: leaves H(0x00 || h), nodes H(0x01 || left || right), an odd last
/// node carried up unchanged (`schemas.chain.merkle_root`).
fn merkle_root(entries: &[Signed<'_>]) -> [u8; 32] {
    let mut level: Vec<[u8; 32]> = entries
        .iter()
        .map(|e| {
            Sha256::new()
                .chain_update([0u8])
                .chain_update(e.hash)
                .finalize()
                .into()
        })
        .collect();
    while level.len() > 1 {
        let mut up = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            up.push(match pair {
                [l, r] => Sha256::new()
                    .chain_update([1u8])
                    .chain_update(l)
                    .chain_update(r)
                    .finalize()
                    .into(),
                [one] => *one,
                _ => unreachable!(),
            });
        }
        level = up;
    }
    level
        .first()
        .copied()
        .unwrap_or_else(|| Sha256::digest(b"").into())
}

/// An anchor payload's chain and height, in exactly the form `Anchor.encode` writes.
pub fn anchor(payload: &[u8]) -> Result<(&str, u64)> {
    let mut r = Reader::new(payload);
    expect_map(&mut r, 6)?;
    expect_key(&mut r, "v")?;
    if r.uint()? != 1 {
        return Err(Refused);
    }
    field(&mut r, "seq", Reader::uint)?;
    field(&mut r, "hash", Reader::bytes)?;
    field(&mut r, "head", Reader::bytes)?;
    let chain = field(&mut r, "chain", Reader::text)?;
    let height = field(&mut r, "height", Reader::uint)?;
    if !r.at_end() {
        return Err(Refused);
    }
    Ok((chain, height))
}
