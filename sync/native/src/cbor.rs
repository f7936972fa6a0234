//! Reading and writing the CBOR this network signs (RFC 8949), strictly: a definite
//! length, the shortest argument (RFC 8949 §4.2.1, "preferred serialization" of
//! §4.1), no tags. Anything else is refused, and the caller hands the input to the
//! Python reference (`schemas.chain`, `sync.compare`), which reads CBOR leniently:
//! refusing here is never a finding, only a slower path. Nothing here does I/O.

pub type Result<T> = std::result::Result<T, Refused>;

/// Input this reader does not take (not necessarily wrong: the Python path decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

// Major types, RFC 8949 §3.1.
pub const UINT: u8 = 0;
pub const NINT: u8 = 1;
pub const BYTES: u8 = 2;
pub const TEXT: u8 = 3;
pub const ARRAY: u8 = 4;
pub const MAP: u8 = 5;
const SIMPLE: u8 = 7;
const FALSE: u64 = 20;
const NULL: u64 = 22;
const MAX_DEPTH: usize = 32;

pub struct Reader<'a> {
    data: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.data.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Refused)?;
        let out = self.data.get(self.pos..end).ok_or(Refused)?;
        self.pos = end;
        Ok(out)
    }

    /// The initial byte's major type and its argument (RFC 8949 §3), which must be in
    /// its shortest form (§4.2.1); indefinite lengths and reserved values are refused.
    pub fn head(&mut self) -> Result<(u8, u64)> {
        let first = self.take(1)?[0];
        let (major, info) = (first >> 5, first & 0x1f);
        let arg = match info {
            0..=23 => return Ok((major, u64::from(info))),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(
                self.take(2)?.try_into().map_err(|_| Refused)?,
            )),
            26 => u64::from(u32::from_be_bytes(
                self.take(4)?.try_into().map_err(|_| Refused)?,
            )),
            27 => u64::from_be_bytes(self.take(8)?.try_into().map_err(|_| Refused)?),
            _ => return Err(Refused),
        };
        let shortest = match info {
            24 => arg >= 24,
            25 => arg > 0xff,
            26 => arg > 0xffff,
            _ => arg > 0xffff_ffff,
        };
        // a float's argument is its bits, not a length: floats are refused below anyway
        if !shortest && major != SIMPLE {
            return Err(Refused);
        }
        Ok((major, arg))
    }

    fn sized(&mut self, major: u8) -> Result<usize> {
        match self.head()? {
            (m, n) if m == major => usize::try_from(n).map_err(|_| Refused),
            _ => Err(Refused),
        }
    }

    pub fn text(&mut self) -> Result<&'a str> {
        let n = self.sized(TEXT)?;
        std::str::from_utf8(self.take(n)?).map_err(|_| Refused)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.sized(BYTES)?;
        self.take(n)
    }

    pub fn map(&mut self) -> Result<usize> {
        self.sized(MAP)
    }

    pub fn uint(&mut self) -> Result<u64> {
        match self.head()? {
            (UINT, n) => Ok(n),
            _ => Err(Refused),
        }
    }

    /// An integer of major type 0 or 1 (RFC 8949 §3.1), widened so that every one fits.
    pub fn int(&mut self) -> Result<i128> {
        match self.head()? {
            (UINT, n) => Ok(i128::from(n)),
            (NINT, n) => Ok(-1 - i128::from(n)),
            _ => Err(Refused),
        }
    }

    /// Whether the next item is null (then consumed).
    pub fn null(&mut self) -> bool {
        if self.data.get(self.pos) == Some(&0xf6) {
            self.pos += 1;
            return true;
        }
        false
    }

    /// One whole item, returned as its bytes, if it holds nothing the Python reading
    /// could take differently: integers, byte and text strings (valid UTF-8), arrays,
    /// maps keyed by integers or strings, false, true and null. Floats (NaN is not
    /// equal to itself), tags and other simple values are refused.
    pub fn item(&mut self) -> Result<&'a [u8]> {
        let start = self.pos;
        self.skip(0)?;
        Ok(&self.data[start..self.pos])
    }

    fn skip(&mut self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Refused);
        }
        let start = self.pos;
        let (major, arg) = self.head()?;
        let n = usize::try_from(arg).map_err(|_| Refused)?;
        match major {
            UINT | NINT => {}
            BYTES => {
                self.take(n)?;
            }
            TEXT => {
                std::str::from_utf8(self.take(n)?).map_err(|_| Refused)?;
            }
            ARRAY => {
                for _ in 0..n {
                    self.skip(depth + 1)?;
                }
            }
            MAP => {
                for _ in 0..n {
                    match self.data.get(self.pos).map(|b| b >> 5) {
                        Some(UINT | NINT | BYTES | TEXT) => self.skip(depth + 1)?,
                        _ => return Err(Refused),
                    }
                    self.skip(depth + 1)?;
                }
            }
            // false, true, null: one byte each (RFC 8949 §3.3)
            SIMPLE if (FALSE..=NULL).contains(&arg) && self.pos == start + 1 => {}
            _ => return Err(Refused),
        }
        Ok(())
    }
}

/// Appends a head in its shortest form (RFC 8949 §4.2.1).
pub fn put_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if arg <= 0xff {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(arg as u16).to_be_bytes());
    } else if arg <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

pub fn put_int(out: &mut Vec<u8>, n: i64) {
    if n >= 0 {
        put_head(out, UINT, n as u64);
    } else {
        put_head(out, NINT, (-1 - n) as u64);
    }
}

pub fn put_text(out: &mut Vec<u8>, s: &str) {
    put_head(out, TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_head(out, BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

/// A map key: a text string (every key this network writes is one).
pub fn put_key(out: &mut Vec<u8>, key: &str) {
    put_text(out, key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_shortest() {
        let mut out = Vec::new();
        for n in [0u64, 23, 24, 255, 256, 65535, 65536, u32::MAX as u64 + 1] {
            out.clear();
            put_head(&mut out, UINT, n);
            let mut r = Reader::new(&out);
            assert_eq!(r.uint(), Ok(n));
            assert!(r.at_end());
        }
        assert_eq!(Reader::new(&[0x18, 0x05]).uint(), Err(Refused)); // 5 in two bytes
        assert_eq!(Reader::new(&[0x5f]).item(), Err(Refused)); // indefinite bytes
        assert_eq!(Reader::new(&[0xc1, 0x00]).item(), Err(Refused)); // a tag
        assert_eq!(Reader::new(&[0xf9, 0x7e, 0x00]).item(), Err(Refused)); // NaN
        assert_eq!(Reader::new(&[0x62, 0xff, 0xfe]).item(), Err(Refused)); // not UTF-8
        assert_eq!(
            Reader::new(&[0x82, 0xf5, 0xf6]).item(),
            Ok(&[0x82, 0xf5, 0xf6][..])
        );
    }
}
