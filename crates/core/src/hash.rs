//! Stable, non-secret fingerprints (FNV-1a): claim comments, run-lock keys, snapshot ids.
//! Not for anything an attacker chooses to collide; the approval links use HMAC-SHA256.

/// FNV-1a's 64-bit offset basis: the usual seed.
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// The second seed of [`fingerprint_128`]: the offset basis with its halves swapped.
const SECOND_SEED: u64 = 0x8422_2325_cbf2_9ce4;

/// FNV-1a over `bytes` from `seed`: a stable 64-bit fingerprint.
pub fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// 128 bits as 32 hex digits: FNV-1a twice, from two seeds (enough to keep runs apart).
pub fn fingerprint_128(bytes: &[u8]) -> String {
    format!("{:016x}{:016x}", fnv1a(FNV_OFFSET_BASIS, bytes), fnv1a(SECOND_SEED, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // http://www.isthe.com/chongo/src/fnv/test_fnv.c (FNV-1a 64)
        assert_eq!(fnv1a(FNV_OFFSET_BASIS, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET_BASIS, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET_BASIS, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fingerprints_are_stable_and_tell_inputs_apart() {
        assert_eq!(fingerprint_128(b"run-1"), fingerprint_128(b"run-1"));
        assert_ne!(fingerprint_128(b"run-1"), fingerprint_128(b"run-2"));
        assert_eq!(fingerprint_128(b"").len(), 32);
    }
}
