//! UTC calendar dates from Unix times, without a time-zone database: undo
//! file names, FAT timestamps and `ls -l` all need the same conversion.

/// A UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcDateTime {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// 0 to 23.
    pub hour: u32,
    /// 0 to 59.
    pub minute: u32,
    /// 0 to 59.
    pub second: u32,
}

/// The UTC date and time `secs` seconds after 1970-01-01T00:00:00Z
/// (negative: before it).
pub fn utc(secs: i64) -> UtcDateTime {
    let days = secs.div_euclid(86_400);
    // OK to cast: 0 <= sod < 86400.
    let sod = secs.rem_euclid(86_400) as u32;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // OK to cast: 1 <= day <= 31, 1 <= month <= 12.
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    UtcDateTime {
        year,
        month,
        day,
        hour: sod / 3600,
        minute: sod / 60 % 60,
        second: sod % 60,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let t = |s| {
            let u = utc(s);
            (u.year, u.month, u.day, u.hour, u.minute, u.second)
        };
        assert_eq!(t(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(t(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(t(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(t(-1), (1969, 12, 31, 23, 59, 59));
        assert_eq!(t(4_107_542_399), (2100, 2, 28, 23, 59, 59));
    }
}
