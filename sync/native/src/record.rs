//! An operation's fields, and whether the rows PostgreSQL stores for its record are
//! the record it carries: the rows are written as the CBOR the operation holds
//! (`sync.compare.stored_map`, keys in RFC 8949 §4.2.1 order as `schemas.codec_cbor`
//! and `schemas.commitment` build them) and the bytes compared. Equal bytes are an
//! equal record to the Python comparison too; any other outcome ("differs", or input
//! this module does not take) goes to that comparison, which says how. No I/O here.

use crate::cbor::{put_bytes, put_head, put_int, put_key, put_text, Reader, Refused, Result};
use crate::cbor::{ARRAY, MAP};
use sha2::{Digest, Sha256};

/// What a records check needs of an operation (`sync.compare.OpFields`).
pub struct Op<'a> {
    pub handle: &'a str,
    pub version: i128,
    pub record: Option<&'a [u8]>, // the record map's bytes; None for a delete
}

const OP_KEYS: [&str; 7] = ["v", "at", "op", "actor", "handle", "record", "version"];

/// The operation in `payload`: a map of exactly the keys `sync.compare.op_fields`
/// requires, each once, every value readable (`Reader::item`).
pub fn op(payload: &[u8]) -> Result<Op<'_>> {
    let mut r = Reader::new(payload);
    if r.map()? != OP_KEYS.len() {
        return Err(Refused);
    }
    let (mut seen, mut handle, mut version, mut record) = (0u8, None, None, None);
    for _ in 0..OP_KEYS.len() {
        let key = r.text()?;
        let k = OP_KEYS.iter().position(|&k| k == key).ok_or(Refused)?;
        if seen & (1 << k) != 0 {
            return Err(Refused);
        }
        seen |= 1 << k;
        match key {
            "handle" => handle = Some(r.text()?),
            "version" => version = Some(r.int()?),
            "record" => {
                record = Some(if r.null() {
                    None
                } else {
                    let start = r.pos;
                    r.map()?;
                    r.pos = start;
                    Some(r.item()?)
                })
            }
            _ => {
                r.item()?;
            }
        }
    }
    if !r.at_end() {
        return Err(Refused);
    }
    match (handle, version, record) {
        (Some(handle), Some(version), Some(record)) => Ok(Op {
            handle,
            version,
            record,
        }),
        _ => Err(Refused),
    }
}

/// A stored value row: `idx, type, format, data, ttl, ttl_type, ts, perms, refs, salt`.
pub struct Row {
    pub idx: i64,
    pub type_: String,
    pub format: String,
    pub data: Vec<u8>,
    pub ttl: i64,
    pub ttl_type: i64,
    pub ts: i64,
    pub perms: i64,
    pub refs: Vec<u8>,
    pub salt: Option<Vec<u8>>,
}

const COMMITMENT_FORMAT: &str = "commitment"; // schemas.commitment.COMMITMENT_FORMAT
const PUBLIC_READ: i64 = 0b0010;
const EMPTY_ARRAY: &[u8] = &[0x80];

/// The record map the chain must carry for `rows` (in index order) of `handle`, as
/// bytes; `holder`: private values are kept here in clear and committed with their
/// salts (schemas/commitment.py). Refused where the Python comparison must decide.
pub fn stored(out: &mut Vec<u8>, handle: &str, rows: &[Row], holder: bool) -> Result<()> {
    out.clear();
    let committed = rows
        .iter()
        .any(|r| r.format == COMMITMENT_FORMAT || (holder && r.perms & PUBLIC_READ == 0));
    put_head(out, MAP, 3);
    put_key(out, "v");
    put_int(out, if committed { 2 } else { 1 });
    put_key(out, "handle");
    put_text(out, handle);
    put_key(out, "values");
    put_head(out, ARRAY, rows.len() as u64);
    for row in rows {
        if row.format == COMMITMENT_FORMAT {
            commitment_map(out, row, &row.data);
        } else if holder && row.perms & PUBLIC_READ == 0 {
            let digest = commit(handle, row)?;
            commitment_map(out, row, &digest);
        } else {
            plain_map(out, row)?;
        }
    }
    Ok(())
}

fn plain_map(out: &mut Vec<u8>, row: &Row) -> Result<()> {
    put_head(out, MAP, 9);
    put_key(out, "ttl");
    put_int(out, row.ttl);
    put_key(out, "data");
    data(out, &row.format, &row.data)?;
    put_key(out, "refs");
    out.extend_from_slice(refs(&row.refs)?);
    put_key(out, "type");
    put_text(out, &row.type_);
    put_key(out, "index");
    put_int(out, row.idx);
    put_key(out, "perms");
    put_int(out, row.perms);
    put_key(out, "format");
    put_text(out, &row.format);
    put_key(out, "ttlType");
    put_int(out, row.ttl_type);
    put_key(out, "timestamp");
    put_int(out, row.ts);
    Ok(())
}

/// `schemas.commitment._wire`'s map.
fn commitment_map(out: &mut Vec<u8>, row: &Row, commit: &[u8]) {
    put_head(out, MAP, 6);
    put_key(out, "ttl");
    put_int(out, row.ttl);
    put_key(out, "index");
    put_int(out, row.idx);
    put_key(out, "perms");
    put_int(out, row.perms);
    put_key(out, "commit");
    put_bytes(out, commit);
    put_key(out, "ttlType");
    put_int(out, row.ttl_type);
    put_key(out, "timestamp");
    put_int(out, row.ts);
}

/// A value's data as `sync.compare._data` reads it: text for "string", the stored
/// CBOR itself for "admin" and "vlist", bytes otherwise.
fn data(out: &mut Vec<u8>, format: &str, data: &[u8]) -> Result<()> {
    match format {
        "string" => put_text(out, std::str::from_utf8(data).map_err(|_| Refused)?),
        "admin" | "vlist" => out.extend_from_slice(one_item(data)?),
        _ => put_bytes(out, data),
    }
    Ok(())
}

fn refs(refs: &[u8]) -> Result<&[u8]> {
    if refs == EMPTY_ARRAY {
        return Ok(refs);
    }
    one_item(refs)
}

fn one_item(data: &[u8]) -> Result<&[u8]> {
    let mut r = Reader::new(data);
    let item = r.item()?;
    if !r.at_end() {
        return Err(Refused);
    }
    Ok(item)
}

/// SHA-256(salt || deterministic CBOR of {"handle", "index", "type", "format", "data",
/// "refs"}) (schemas/commitment.py), for a string or byte value without references;
/// others are committed by the Python path.
fn commit(handle: &str, row: &Row) -> Result<[u8; 32]> {
    let salt = row.salt.as_deref().ok_or(Refused)?;
    if row.refs != EMPTY_ARRAY || matches!(row.format.as_str(), "admin" | "vlist") {
        return Err(Refused);
    }
    let mut bound = Vec::with_capacity(64 + row.data.len());
    // keys as cbor2's canonical form sorts them: by length, then bytewise
    put_head(&mut bound, MAP, 6);
    put_key(&mut bound, "data");
    data(&mut bound, &row.format, &row.data)?;
    put_key(&mut bound, "refs");
    bound.extend_from_slice(EMPTY_ARRAY);
    put_key(&mut bound, "type");
    put_text(&mut bound, &row.type_);
    put_key(&mut bound, "index");
    put_int(&mut bound, row.idx);
    put_key(&mut bound, "format");
    put_text(&mut bound, &row.format);
    put_key(&mut bound, "handle");
    put_text(&mut bound, handle);
    Ok(Sha256::new()
        .chain_update(salt)
        .chain_update(&bound)
        .finalize()
        .into())
}
