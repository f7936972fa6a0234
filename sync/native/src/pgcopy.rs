//! Rows of PostgreSQL's binary COPY format (PostgreSQL documentation, "COPY", section
//! "Binary Format"): a signature, flags, a header extension, then each tuple as a
//! 16-bit field count and each field as a 32-bit length (-1: NULL) and its bytes in
//! the type's binary send form (int2/int4/int8 big-endian, text as UTF-8, bytea as
//! is). Nothing here does I/O: the caller fetched the bytes.

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

#[derive(Debug)]
pub struct Malformed(pub &'static str);

pub type Field<'a> = Option<&'a [u8]>;

/// Every tuple of a COPY ... TO STDOUT (FORMAT binary) output, each with `width` fields.
pub fn rows(data: &[u8], width: usize) -> Result<Vec<Vec<Field<'_>>>, Malformed> {
    if data.is_empty() {
        return Ok(Vec::new()); // a COPY of no rows may come back as nothing at all
    }
    let mut r = Cursor { data, pos: 0 };
    if r.take(SIGNATURE.len())? != SIGNATURE {
        return Err(Malformed("not a binary COPY"));
    }
    r.take(4)?; // flags: bit 16 (OIDs) is never asked for
    let extension = r.i32()?;
    r.take(usize::try_from(extension).map_err(|_| Malformed("bad header extension"))?)?;
    let mut out = Vec::new();
    loop {
        let count = r.i16()?;
        if count == -1 {
            return Ok(out); // the trailer
        }
        if usize::try_from(count).ok() != Some(width) {
            return Err(Malformed("a tuple of another width"));
        }
        let mut row = Vec::with_capacity(width);
        for _ in 0..width {
            let n = r.i32()?;
            row.push(if n < 0 {
                None
            } else {
                Some(r.take(n as usize)?)
            });
        }
        out.push(row);
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let out = self
            .data
            .get(self.pos..self.pos + n)
            .ok_or(Malformed("truncated"))?;
        self.pos += n;
        Ok(out)
    }
    fn i16(&mut self) -> Result<i16, Malformed> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn i32(&mut self) -> Result<i32, Malformed> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
}

pub fn int(field: Field<'_>) -> Result<i64, Malformed> {
    match field {
        Some(b) if b.len() == 8 => Ok(i64::from_be_bytes(b.try_into().unwrap())),
        Some(b) if b.len() == 4 => Ok(i64::from(i32::from_be_bytes(b.try_into().unwrap()))),
        Some(b) if b.len() == 2 => Ok(i64::from(i16::from_be_bytes(b.try_into().unwrap()))),
        _ => Err(Malformed("not an integer")),
    }
}

pub fn text(field: Field<'_>) -> Result<String, Malformed> {
    let b = field.ok_or(Malformed("a NULL text"))?;
    Ok(std::str::from_utf8(b)
        .map_err(|_| Malformed("text not UTF-8"))?
        .to_owned())
}

pub fn bytes(field: Field<'_>) -> Result<Vec<u8>, Malformed> {
    Ok(field.ok_or(Malformed("a NULL bytea"))?.to_vec())
}
