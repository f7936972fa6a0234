//! The checker against bytes the Python reference wrote (schemas.chain.cut_block,
//! schemas.oplog.encode_operation, registry.store.value_to_row; key: Ed25519 seed
//! 0x00..0x1f): what it accepts, what it refuses, and records written as the chain
//! carries them.

use crate::block::{self, Tip};
use crate::record::{self, Row};

const DER: &str =
    "302a300506032b657003210003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
const OP: &str = "a761760262617405626f7066637265617465656163746f7261746668616e646c657438382e3130302e31302f56303030303030303130667265636f7264a36176026668616e646c657438382e3130302e31302f563030303030303031306676616c75657382a96374746c1a0001518064646174617068747470733a2f2f652e782f702f313064726566738064747970656355524c65696e64657801657065726d730e66666f726d617466737472696e676774746c54797065006974696d657374616d701a6b03f280a66374746c1a0001518065696e64657802657065726d730c66636f6d6d69745820d7127f66467ea61798a90bbd167925c47547f454cad03ab020c6341cafa95f0a6774746c54797065006974696d657374616d701a6b03f2806776657273696f6e01";
const B1_HEAD: &str = "a4617601637369675840ff8ac536e6de7894766e3c9ae2464c41df8898a780eda432fb3bb97a91fcaf8123a2fa711b37d64fd9bf4e681e48513ed66098f549561e1717fc30e64d62cd0a6668656164657258a8aa6176016261740763616c676673686132353664686561645820596de582cdfa7d04ada6cf255a2602985e3d65b3e2eba8eb5f40f18c4f08f53864707265765820000000000000000000000000000000000000000000000000000000000000000064726f6f74582061da3b0cb553ad519a36f2bdbe521d1753792aa6cfc52c01036b8d5027120f5165636861696e6373756265636f756e740165666972737401666865696768740167656e74726965738182626f7059012a";
const H1: &str = "cf4a795ab1fdd20aae5dc0f2181f2cca98476a46d5901301e109f8acab1e2313";
const HEAD1: &str = "596de582cdfa7d04ada6cf255a2602985e3d65b3e2eba8eb5f40f18c4f08f538";
const B2_HEAD: &str = "a4617601637369675840741731a090dc8edd652c7ae41dcaf334e847f1df1f1186560a4ea8be65ce555a8223c0b896b4318af747e0d7abf0e5d6997104daf252e65c01803388bdd49d0f6668656164657258a8aa6176016261740863616c676673686132353664686561645820ebcf474a3ac8c32581380005f307aee3874109020d1984a3c046a3ada41a6acf64707265765820cf4a795ab1fdd20aae5dc0f2181f2cca98476a46d5901301e109f8acab1e231364726f6f745820b9b5cf6e8fa4d49563da0efc19f3b1403509f6929115c88a04a34e8c28b585b265636861696e6373756265636f756e740365666972737402666865696768740267656e74726965738382626f7059012a";
const ANCHOR: &str = "a6617601637365710164686173685820cf4a795ab1fdd20aae5dc0f2181f2cca98476a46d5901301e109f8acab1e231364686561645820596de582cdfa7d04ada6cf255a2602985e3d65b3e2eba8eb5f40f18c4f08f53865636861696e637375626668656967687401";
const H2: &str = "311682e693027a01bd45559d1741222fcedd236f76aedcb9f15590985cadde27";
const HEAD2: &str = "ebcf474a3ac8c32581380005f307aee3874109020d1984a3c046a3ada41a6acf";
const HANDLE: &str = "88.100.10/V000000010";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Block 1 holds the operation; block 2 the operation, block 1's anchor, the operation.
fn blocks() -> (Vec<u8>, Vec<u8>) {
    let (op, anchor) = (hex(OP), hex(ANCHOR));
    let mut b1 = hex(B1_HEAD);
    b1.extend_from_slice(&op);
    let mut b2 = hex(B2_HEAD);
    b2.extend_from_slice(&op);
    b2.extend_from_slice(&[0x82, 0x66]);
    b2.extend_from_slice(b"anchor");
    b2.extend_from_slice(&[0x58, anchor.len() as u8]);
    b2.extend_from_slice(&anchor);
    b2.extend_from_slice(&[0x82, 0x62, b'o', b'p', 0x59, 0x01, 0x2a]);
    b2.extend_from_slice(&op);
    (b1, b2)
}

fn genesis() -> Tip {
    Tip {
        height: 0,
        hash: vec![0; 32],
        seq: 0,
        head: vec![0; 32],
    }
}

#[test]
fn blocks_the_python_reference_cut_check_and_chain() {
    let key = block::key(&hex(DER)).unwrap();
    let (b1, b2) = blocks();
    let one = block::check(&b1, &hex(H1), &genesis(), &key).unwrap();
    assert_eq!((one.tip.height, one.tip.seq), (1, 1));
    assert_eq!(
        (one.tip.hash.clone(), one.tip.head.clone()),
        (hex(H1), hex(HEAD1))
    );
    let two = block::check(&b2, &hex(H2), &one.tip, &key).unwrap();
    assert_eq!(two.first, 2);
    assert_eq!(
        two.entries.iter().map(|e| e.kind).collect::<Vec<_>>(),
        ["op", "anchor", "op"]
    );
    assert_eq!(
        (two.tip.height, two.tip.seq, two.tip.head.clone()),
        (2, 4, hex(HEAD2))
    );
    assert_eq!(block::anchor(two.entries[1].payload).unwrap(), ("sub", 1));
}

#[test]
fn blocks_that_do_not_check_are_refused() {
    let key = block::key(&hex(DER)).unwrap();
    let (b1, b2) = blocks();
    let one = block::check(&b1, &hex(H1), &genesis(), &key).unwrap().tip;
    assert!(block::check(&b2, &hex(H2), &genesis(), &key).is_err()); // does not follow
    assert!(block::check(&b1, &hex(H2), &genesis(), &key).is_err()); // stored hash
    let mut forged = b1.clone();
    forged[10] ^= 1; // in the signature
    assert!(block::check(&forged, &hex(H1), &genesis(), &key).is_err());
    let mut changed = b2.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1; // the last entry's payload: no longer under the head
    assert!(block::check(&changed, &hex(H2), &one, &key).is_err());
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    assert!(block::check(&b1, &hex(H1), &genesis(), &other).is_err());
    assert!(block::key(&hex(DER)[1..]).is_err());
}

fn row(idx: i64, type_: &str, format: &str, data: &[u8], perms: i64, salt: Option<u8>) -> Row {
    Row {
        idx,
        type_: type_.into(),
        format: format.into(),
        data: data.to_vec(),
        ttl: 86400,
        ttl_type: 0,
        ts: 1795420800,
        perms,
        refs: vec![0x80],
        salt: salt.map(|b| vec![b; 16]),
    }
}

const COMMIT: &str = "d7127f66467ea61798a90bbd167925c47547f454cad03ab020c6341cafa95f0a";

#[test]
fn stored_rows_are_written_as_the_operation_carries_them() {
    let payload = hex(OP);
    let op = record::op(&payload).unwrap();
    assert_eq!((op.handle, op.version), (HANDLE, 1));
    let want = op.record.unwrap();
    let url = row(1, "URL", "string", b"https://e.x/p/10", 14, None);
    let mut out = Vec::new();
    // as any node but the holder keeps it: the private value as its commitment
    let kept = [
        url,
        row(2, "idres.committed", "commitment", &hex(COMMIT), 12, None),
    ];
    record::stored(&mut out, HANDLE, &kept, false).unwrap();
    assert_eq!(out, want);
    // as the holder keeps it: in clear, with the salt that commits to it
    let [url, _] = kept;
    let mut held = [url, row(2, "EMAIL", "string", b"owner10@e.x", 12, Some(0))];
    record::stored(&mut out, HANDLE, &held, true).unwrap();
    assert_eq!(out, want);
    held[1].salt = Some(vec![1; 16]);
    record::stored(&mut out, HANDLE, &held, true).unwrap();
    assert_ne!(out, want);
    held[1].salt = None;
    assert!(record::stored(&mut out, HANDLE, &held, true).is_err()); // said in Python
}

#[test]
fn operations_are_read_only_in_the_form_python_reads_alike() {
    let payload = hex(OP);
    assert!(record::op(&payload[..payload.len() - 1]).is_err()); // cut short
    let mut longer = payload.clone();
    longer.push(0);
    assert!(record::op(&longer).is_err()); // trailing bytes
    let mut six = payload.clone();
    six[0] = 0xa6; // a map of six keys: the seventh is left over
    assert!(record::op(&six).is_err());
}
