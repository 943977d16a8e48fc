//! xs:dateTime <-> epoch milliseconds, without depending on the system clock.

use crate::clock::Millis;

/// Parses `YYYY-MM-DDThh:mm:ss[.fraction][Z|±hh:mm]` (no zone means UTC, as SAML requires UTC).
pub(crate) fn parse_instant(text: &str) -> Option<Millis> {
    let s = text.trim();
    let b = s.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let digits = &frac[..n];
        let padded: String = digits.chars().chain("000".chars()).take(3).collect();
        millis = padded.parse::<i64>().ok()?;
        rest = &frac[n..];
    }
    let offset_min = match rest {
        "" | "Z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let z = &rest[1..];
            if z.len() != 5 || z.as_bytes()[2] != b':' {
                return None;
            }
            let hh: i64 = z[0..2].parse().ok()?;
            let mm: i64 = z[3..5].parse().ok()?;
            if hh > 14 || mm > 59 {
                return None;
            }
            sign * (hh * 60 + mm)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_min * 60;
    Some(secs * 1_000 + millis)
}

/// Formats epoch milliseconds as `YYYY-MM-DDThh:mm:ss.mmmZ` (UTC).
pub(crate) fn format_instant(ms: Millis) -> String {
    let secs = ms.div_euclid(1_000);
    let millis = ms.rem_euclid(1_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3_600,
        (sod / 60) % 60,
        sod % 60
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil-date algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_instants() {
        assert_eq!(parse_instant("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_instant("2026-11-26T08:05:38Z"),
            Some(1_795_680_338_000)
        );
        assert_eq!(
            parse_instant("2026-11-26T08:05:38.1234567Z"),
            Some(1_795_680_338_123)
        );
        assert_eq!(
            parse_instant("2026-11-26T09:05:38+01:00"),
            Some(1_795_680_338_000)
        );
        assert_eq!(parse_instant("2024-02-29T00:00:00Z").map(|_| ()), Some(()));
        assert_eq!(parse_instant("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_instant("2026-11-26 08:05:38Z"), None);
        assert_eq!(parse_instant("garbage"), None);
        assert_eq!(
            format_instant(1_795_680_338_123),
            "2026-11-26T08:05:38.123Z"
        );
        assert_eq!(format_instant(0), "1970-01-01T00:00:00.000Z");
    }
}
