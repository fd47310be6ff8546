//! A fixed-length set of piece indices, stored as the peerwire bitfield
//! (most significant bit of the first byte is piece 0).

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: usize,
    ones: usize,
}

impl Bitfield {
    pub fn new(len: usize) -> Bitfield {
        Bitfield {
            bytes: vec![0; len.div_ceil(8)],
            len,
            ones: 0,
        }
    }

    pub fn full(len: usize) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// Reads a wire bitfield; `None` if its size is wrong or a spare bit is set.
    pub fn from_bytes(bytes: &[u8], len: usize) -> Option<Bitfield> {
        if bytes.len() != len.div_ceil(8) {
            return None;
        }
        let spare = bytes.len() * 8 - len;
        if spare > 0 && bytes[bytes.len() - 1] & ((1u8 << spare) - 1) != 0 {
            return None;
        }
        let ones = bytes.iter().map(|b| b.count_ones() as usize).sum();
        Some(Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn count(&self) -> usize {
        self.ones
    }

    pub fn is_complete(&self) -> bool {
        self.ones == self.len
    }

    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.bytes[i / 8] & (0x80 >> (i % 8)) != 0
    }

    /// Sets bit `i`; returns true if it was clear. Out of range is ignored.
    pub fn set(&mut self, i: usize) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bytes[i / 8] |= 0x80 >> (i % 8);
        self.ones += 1;
        true
    }

    pub fn clear(&mut self, i: usize) {
        if self.get(i) {
            self.bytes[i / 8] &= !(0x80 >> (i % 8));
            self.ones -= 1;
        }
    }

    pub fn iter_ones(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).filter(move |&i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_count() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0));
        assert!(!b.set(0));
        assert!(b.set(9));
        assert!(!b.set(10));
        assert_eq!(b.count(), 2);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        b.clear(0);
        assert_eq!(b.count(), 1);
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![9]);
    }

    #[test]
    fn from_bytes_rejects_bad_sizes_and_spare_bits() {
        assert!(Bitfield::from_bytes(&[0xff], 9).is_none());
        assert!(Bitfield::from_bytes(&[0xff, 0x80], 9).is_some());
        assert!(Bitfield::from_bytes(&[0xff, 0xc0], 9).is_none());
        assert!(Bitfield::full(9).is_complete());
    }
}
