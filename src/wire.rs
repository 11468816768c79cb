//! The byte encoding of the upgrade hand-over (`runtime/transfer.rs`): little-endian
//! integers, length-prefixed byte strings. A leaf: each layer writes and reads its own
//! state with it (`payload/`, `conn/snapshot.rs`), so no layer has to expose its
//! private fields to another.
//!
//! Reading is a pure function over `&[u8]` that fails with a typed error on anything
//! short or out of range: the bytes come from another process (another binary, maybe
//! another version), never trusted to be well formed.

use std::fmt;

/// Why a hand-over record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WireError {}

pub fn bad(what: impl Into<String>) -> WireError {
    WireError(what.into())
}

/// Appends values to a byte vector.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A length (u32) and the bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }

    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(x) => {
                self.u8(1);
                self.u64(x);
            }
            None => self.u8(0),
        }
    }

    pub fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }
}

/// Reads values back, failing on a short or malformed record.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.data.len()).ok_or_else(|| bad("record cut short"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(bad(format!("{b} is not a boolean"))),
        }
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize) -> Result<&'a [u8], WireError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(bad(format!("a field of {n} bytes, at most {max} expected")));
        }
        self.take(n)
    }

    pub fn str(&mut self, max: usize) -> Result<String, WireError> {
        let b = self.bytes(max)?;
        String::from_utf8(b.to_vec()).map_err(|_| bad("a text field is not UTF-8"))
    }

    pub fn opt_u64(&mut self) -> Result<Option<u64>, WireError> {
        Ok(if self.bool()? { Some(self.u64()?) } else { None })
    }

    pub fn opt_str(&mut self, max: usize) -> Result<Option<String>, WireError> {
        Ok(if self.bool()? { Some(self.str(max)?) } else { None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_short_records() {
        let mut w = Writer::new();
        w.u8(7);
        w.bool(true);
        w.u32(70000);
        w.u64(1 << 40);
        w.str("héllo");
        w.opt_u64(None);
        w.opt_str(Some("x"));
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.u32(), Ok(70000));
        assert_eq!(r.u64(), Ok(1 << 40));
        assert_eq!(r.str(64).as_deref(), Ok("héllo"));
        assert_eq!(r.opt_u64(), Ok(None));
        assert_eq!(r.opt_str(4), Ok(Some("x".into())));
        assert!(r.is_empty());
        for cut in 0..w.buf.len() {
            let mut r = Reader::new(&w.buf[..cut]);
            let all = (|| -> Result<(), WireError> {
                r.u8()?;
                r.bool()?;
                r.u32()?;
                r.u64()?;
                r.str(64)?;
                r.opt_u64()?;
                r.opt_str(4)?;
                Ok(())
            })();
            assert!(all.is_err(), "cut at {cut}");
        }
        assert!(Reader::new(&[2]).bool().is_err());
        assert!(Reader::new(&[9, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).bytes(4).is_err());
    }
}
