//! Little-endian byte writer and reader for the records kept in shared data.
//! Records are small layouts behind a version byte (fixed-size numbers, and
//! length-prefixed byte strings for the few that carry text); a reader that
//! runs out of bytes yields `None`, so a truncated or foreign value reads as
//! absent.

#[derive(Default)]
pub struct Writer(Vec<u8>);

impl Writer {
    pub fn with_version(version: u8) -> Writer {
        Writer(vec![version])
    }

    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.0.push(value);
        self
    }

    pub fn u16(&mut self, value: u16) -> &mut Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A byte string behind its `u32` length. Callers bound what they store
    /// far below 4 GiB; a longer value is cut at `u32::MAX` bytes rather
    /// than written with a length that lies.
    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        let length = u32::try_from(value.len()).unwrap_or(u32::MAX);
        self.u32(length);
        self.0.extend_from_slice(&value[..length as usize]);
        self
    }

    pub fn f32(&mut self, value: f32) -> &mut Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader positioned after the version byte, if it is `version`.
    pub fn with_version(bytes: &'a [u8], version: u8) -> Option<Reader<'a>> {
        match bytes.split_first() {
            Some((&found, rest)) if found == version => Some(Reader(rest)),
            _ => None,
        }
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[byte]| byte)
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    /// A byte string written by [`Writer::bytes`], borrowed from the value.
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let length = usize::try_from(self.u32()?).ok()?;
        let (head, rest) = self.0.split_at_checked(length)?;
        self.0 = rest;
        Some(head)
    }

    /// Non-finite values (never written) read as absent.
    pub fn f32(&mut self) -> Option<f32> {
        self.take().map(f32::from_le_bytes).filter(|value| value.is_finite())
    }

    /// True when every byte was consumed: a longer value is another layout.
    pub fn is_done(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let mut writer = Writer::with_version(3);
        writer.u8(1).u16(2).u64(3).f32(4.5).u32(6).bytes(b"seven");
        let bytes = writer.finish();
        let mut reader = Reader::with_version(&bytes, 3).unwrap();
        assert_eq!(
            (reader.u8(), reader.u16(), reader.u64(), reader.f32()),
            (Some(1), Some(2), Some(3), Some(4.5))
        );
        assert_eq!((reader.u32(), reader.bytes()), (Some(6), Some(&b"seven"[..])));
        assert!(reader.is_done());
    }

    #[test]
    fn short_or_foreign_bytes_read_as_absent() {
        assert!(Reader::with_version(&[2, 0], 3).is_none());
        let mut reader = Reader::with_version(&[3, 1], 3).unwrap();
        assert_eq!(reader.u16(), None);
        let mut reader = Reader::with_version(&[3, 9, 0, 0, 0, b'a'], 3).unwrap();
        assert_eq!(reader.bytes(), None, "a length past the end");
        let nan = f32::NAN.to_le_bytes();
        assert_eq!(
            Reader::with_version(&[3, nan[0], nan[1], nan[2], nan[3]], 3)
                .unwrap()
                .f32(),
            None
        );
    }
}
