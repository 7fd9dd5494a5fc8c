//! Time expressions of the CLI (`--at`): RFC 3339 instants, plain dates, and relative forms such
//! as `2h`, `90 min`, `3 days ago`. The caller passes "now", so parsing stays pure.

use std::time::{Duration, UNIX_EPOCH};

use crate::{Error, Result};

/// Parses `value` into nanoseconds since the Unix epoch, relative forms counted back from
/// `now_ns`.
///
/// # Errors
/// An expression that is neither an instant nor a relative form; the error quotes it.
pub fn parse_instant(value: &str, now_ns: i64) -> Result<i64> {
    let v = value.trim();
    let err = |reason: &str| Error::InvalidTime {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if v.eq_ignore_ascii_case("now") {
        return Ok(now_ns);
    }
    if v.len() == 10 && v.as_bytes()[4] == b'-' && v.as_bytes()[7] == b'-' {
        return parse_rfc3339(&format!("{v}T00:00:00Z")).map_err(|e| err(&e));
    }
    if v.as_bytes().first().is_some_and(|b| b.is_ascii_digit())
        && v.contains('-')
        && v.contains(':')
    {
        return parse_rfc3339(v).map_err(|e| err(&e));
    }
    let rel = parse_relative(v).ok_or_else(|| {
        err("expected RFC 3339 (2026-11-22T10:00:00Z), a date (2026-11-22) or a relative time (2h, 3 days ago)")
    })?;
    let ns = i64::try_from(rel.as_nanos()).map_err(|_| err("too far back"))?;
    Ok(now_ns.saturating_sub(ns))
}

fn parse_rfc3339(v: &str) -> std::result::Result<i64, String> {
    let with_zone = if v.ends_with('Z') || v.ends_with('z') || has_offset(v) {
        v.to_string()
    } else {
        format!("{v}Z")
    };
    let (base, offset_secs) = split_offset(&with_zone);
    let t = humantime::parse_rfc3339_weak(&base).map_err(|e| e.to_string())?;
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "before 1970".to_string())?;
    let ns = i64::try_from(d.as_nanos()).map_err(|_| "too far ahead".to_string())?;
    Ok(ns - offset_secs * 1_000_000_000)
}

fn has_offset(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() > 6 && (b[b.len() - 6] == b'+' || b[b.len() - 6] == b'-') && b[b.len() - 3] == b':'
}

/// Splits a `+HH:MM` / `-HH:MM` suffix into seconds east of UTC; `Z` yields 0.
fn split_offset(v: &str) -> (String, i64) {
    if has_offset(v) {
        let (base, off) = v.split_at(v.len() - 6);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let h: i64 = off[1..3].parse().unwrap_or(0);
        let m: i64 = off[4..6].parse().unwrap_or(0);
        (base.to_string(), sign * (h * 3600 + m * 60))
    } else {
        (v.trim_end_matches(['Z', 'z']).to_string(), 0)
    }
}

/// `2h`, `2h30m`, `3 days`, `3 days ago`, `1 week`.
fn parse_relative(v: &str) -> Option<Duration> {
    let v = v.strip_suffix("ago").unwrap_or(v).trim();
    if v.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let secs = match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 604_800,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(secs)?)?;
    }
    Some(Duration::from_secs(total))
}

/// The UTC calendar date (year, month, day) of a Unix time in seconds.
pub fn civil_date(unix_secs: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let z = unix_secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// RFC 3339 text (UTC, seconds) for nanoseconds since the epoch.
pub fn format_instant(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let (y, m, d) = civil_date(secs);
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_305_600_000_000_000; // 2026-11-22T00:00:00Z

    #[test]
    fn forms() {
        assert_eq!(format_instant(NOW), "2026-11-22T00:00:00Z");
        assert_eq!(parse_instant("2026-11-22T00:00:00Z", 0).ok(), Some(NOW));
        assert_eq!(parse_instant("2026-11-22", 0).ok(), Some(NOW));
        assert_eq!(
            parse_instant("2026-11-22T01:00:00+01:00", 0).ok(),
            Some(NOW)
        );
        assert_eq!(parse_instant("2h", NOW).ok(), Some(NOW - 7_200_000_000_000));
        assert_eq!(
            parse_instant("3 days ago", NOW).ok(),
            Some(NOW - 3 * 86_400_000_000_000)
        );
        assert_eq!(
            parse_instant("1h30m", NOW).ok(),
            Some(NOW - 5_400_000_000_000)
        );
        assert!(parse_instant("yesterday-ish", NOW).is_err());
        assert!(parse_instant("5 parsecs", NOW).is_err());
    }
}
