//! The on-disk record format.
//!
//! ```text
//! | len: u32 LE | crc: u32 LE | offset: u64 LE | payload: len bytes |
//! ```
//! `crc` is CRC-32 (IEEE) over the offset bytes and the payload, so a record copied to the
//! wrong place, a torn write or flipped bits are all detected.

pub(crate) const HEADER_LEN: usize = 16;

/// Records larger than this are treated as corruption when reading: no valid append can
/// produce one (the collector caps batches far lower), so a huge length is garbage.
pub(crate) const MAX_PAYLOAD: u32 = 64 << 20;

pub(crate) fn encode(buf: &mut Vec<u8>, offset: u64, payload: &[u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&offset.to_le_bytes());
    crc.update(payload);
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// What a header says, once parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub len: u32,
    pub crc: u32,
    pub offset: u64,
}

pub(crate) fn parse_header(h: &[u8; HEADER_LEN]) -> Header {
    Header {
        len: u32::from_le_bytes(h[0..4].try_into().unwrap()),
        crc: u32::from_le_bytes(h[4..8].try_into().unwrap()),
        offset: u64::from_le_bytes(h[8..16].try_into().unwrap()),
    }
}

pub(crate) fn checksum_ok(h: &Header, payload: &[u8]) -> bool {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h.offset.to_le_bytes());
    crc.update(payload);
    crc.finalize() == h.crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(offset: u64, payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = Vec::new();
            encode(&mut buf, offset, &payload);
            prop_assert_eq!(buf.len(), HEADER_LEN + payload.len());
            let h = parse_header(buf[..HEADER_LEN].try_into().unwrap());
            prop_assert_eq!(h.offset, offset);
            prop_assert_eq!(h.len as usize, payload.len());
            prop_assert!(checksum_ok(&h, &buf[HEADER_LEN..]));
        }

        #[test]
        fn any_flipped_bit_is_detected(payload in proptest::collection::vec(any::<u8>(), 1..256), bit in 0usize..2048) {
            let mut buf = Vec::new();
            encode(&mut buf, 7, &payload);
            let bit = bit % ((buf.len() - 4) * 8); // leave the length alone: it frames the record
            buf[4 + bit / 8] ^= 1 << (bit % 8);
            let h = parse_header(buf[..HEADER_LEN].try_into().unwrap());
            prop_assert!(!checksum_ok(&h, &buf[HEADER_LEN..]));
        }
    }
}
