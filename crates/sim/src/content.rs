//! Object bytes as segments of numbered contents: equal segments mean equal bytes.

/// A run of bytes `offset..offset + len` of content number `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Segment {
    id: u64,
    offset: u64,
    len: u64,
}

/// The bytes of an object, symbolically.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Content(Vec<Segment>);

impl Content {
    /// `len` fresh bytes, distinct from every other content id.
    pub fn fresh(id: u64, len: u64) -> Self {
        let mut content = Content::default();
        content.push(Segment { id, offset: 0, len });
        content
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|s| s.len).sum()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `first..=last`.
    pub fn range(&self, first: u64, last: u64) -> Content {
        let mut out = Content::default();
        let mut at = 0;
        for segment in &self.0 {
            let (start, end) = (at, at + segment.len);
            at = end;
            let from = first.max(start);
            let to = (last + 1).min(end);
            if from < to {
                out.push(Segment {
                    id: segment.id,
                    offset: segment.offset + (from - start),
                    len: to - from,
                });
            }
        }
        out
    }

    /// These bytes followed by `other`'s.
    pub fn append(&mut self, other: &Content) {
        for segment in &other.0 {
            self.push(*segment);
        }
    }

    fn push(&mut self, segment: Segment) {
        if segment.len == 0 {
            return;
        }
        if let Some(last) = self.0.last_mut() {
            if last.id == segment.id && last.offset + last.len == segment.offset {
                last.len += segment.len;
                return;
            }
        }
        self.0.push(segment);
    }

    /// A stand-in for the MD5 of these bytes: 32 hex digits, equal exactly when the bytes are.
    pub fn digest(&self) -> String {
        digest_of(&format!("{:?}", self.0))
    }
}

/// 32 hex digits from a string (FNV-1a, twice with different offsets).
pub(crate) fn digest_of(text: &str) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for byte in text.bytes() {
        a = (a ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        b = (b ^ u64::from(byte))
            .wrapping_mul(0x100_0000_01b3)
            .rotate_left(7);
    }
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_appends_reassemble_the_same_bytes() {
        let whole = Content::fresh(7, 100);
        let mut parts = whole.range(0, 39);
        parts.append(&whole.range(40, 99));
        assert_eq!(parts, whole);
        assert_eq!(parts.digest(), whole.digest());
        assert_ne!(Content::fresh(8, 100).digest(), whole.digest());
        assert_eq!(whole.range(90, 200).len(), 10);
    }
}
