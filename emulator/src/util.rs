//! Small helpers: a seeded PRNG, GUIDs, UTC date formatting, base64 and a keyed integrity hash.

use base64::Engine as _;
use std::hash::{Hash as _, Hasher as _};

/// splitmix64: tiny, fast, deterministic; good enough for test data.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n == 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: no modulo bias worth caring about here.
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A random version-4 style GUID (lower-case, hyphenated).
    pub(crate) fn guid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format_guid(a, b)
    }

    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

pub(crate) fn format_guid(a: u64, b: u64) -> String {
    let a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
    let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

pub(crate) fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// True for `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits, any case).
pub(crate) fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// (year, month, day, hour, minute, second) of a Unix time in UTC.
fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (y, m, d, rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Graph `innerError.date`: `YYYY-MM-DDTHH:MM:SS` (no zone, no fraction).
pub(crate) fn graph_date(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")
}

/// ISO-8601 with `Z`, as in `createdDateTime`.
pub(crate) fn iso_z(secs: u64) -> String {
    format!("{}Z", graph_date(secs))
}

/// AAD error `timestamp`: `YYYY-MM-DD HH:MM:SSZ`.
pub(crate) fn aad_timestamp(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}Z")
}

pub(crate) fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

pub(crate) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

pub(crate) fn b64std_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// A keyed 64-bit hash (SipHash with a per-instance secret mixed in). Not cryptographic, only
/// meant to make tampered tokens fail.
pub(crate) fn keyed_hash(secret: &str, data: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    secret.hash(&mut h);
    data.hash(&mut h);
    let first = h.finish();
    let mut h2 = std::hash::DefaultHasher::new();
    first.hash(&mut h2);
    secret.len().hash(&mut h2);
    data.hash(&mut h2);
    h2.finish()
}

/// Seal a JSON payload into an opaque URL-safe token: base64url(hash ‖ payload).
pub(crate) fn seal<T: serde::Serialize>(secret: &str, payload: &T) -> String {
    let body = serde_json::to_vec(payload).unwrap_or_default();
    let mut blob = keyed_hash(secret, &body).to_be_bytes().to_vec();
    blob.extend_from_slice(&body);
    b64url(&blob)
}

/// Open a token made by [`seal`]; `None` when it was tampered with or is garbage.
pub(crate) fn unseal<T: serde::de::DeserializeOwned>(secret: &str, token: &str) -> Option<T> {
    let blob = b64url_decode(token)?;
    if blob.len() < 8 {
        return None;
    }
    let (mac, body) = blob.split_at(8);
    let mut expected = [0u8; 8];
    expected.copy_from_slice(mac);
    if u64::from_be_bytes(expected) != keyed_hash(secret, body) {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// Percent-decode a URL path (not `+`).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encode a query value (RFC 3986 unreserved characters kept).
pub(crate) fn query_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b',' | b'$') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(graph_date(0), "1970-01-01T00:00:00");
        assert_eq!(graph_date(1_452_304_932), "2016-01-09T02:02:12");
        assert_eq!(aad_timestamp(1_452_304_932), "2016-01-09 02:02:12Z");
        assert_eq!(graph_date(951_782_400), "2000-02-29T00:00:00");
    }

    #[test]
    fn guid_shape() {
        let mut r = SplitMix::new(3);
        let g = r.guid();
        assert!(is_guid(&g), "{g}");
        assert_eq!(&g[14..15], "4");
    }

    #[test]
    fn seal_roundtrip_and_tamper() {
        let t = seal("k", &vec![1, 2, 3]);
        assert_eq!(unseal::<Vec<i32>>("k", &t), Some(vec![1, 2, 3]));
        assert_eq!(unseal::<Vec<i32>>("other", &t), None);
        let mut bad = t.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            unseal::<Vec<i32>>("k", &String::from_utf8(bad).unwrap()),
            None
        );
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("/v1.0/users/%24count"), "/v1.0/users/$count");
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
