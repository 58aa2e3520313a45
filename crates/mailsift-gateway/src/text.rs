//! Small text helpers every front end and the core share: the domain of an address, text made safe for a
//! reply or a header, and dates for headers.

use mail_parser::DateTime;

/// The domain of an address, lower-cased and IDNA-mapped (empty for the null sender and for a text that is
/// not an address): the one reading every crate shares, [`mailsift_engine::address::domain_of`].
pub use mailsift_engine::address::domain_of;

/// Replaces anything that could break a reply line or a header (CR, LF, other controls) with a space and
/// bounds the length: texts built from client input or a next hop's answer go into our replies.
pub fn sanitize(text: &str, max: usize) -> String {
    let mut s: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The first and last day (counted from 1970-01-01) whose dates have four-digit years, 0000-01-01 and
/// 9999-12-31: the calendar functions clamp to them (no clock or stored time is that far off).
const FIRST_DAY: i64 = -719_528;
const LAST_DAY: i64 = 2_932_896;

/// The civil date (year, month 1-12, day 1-31) of a day counted from 1970-01-01, in the proleptic Gregorian
/// calendar (mail-parser's `DateTime`); days before year 0 or after 9999 are clamped to those years.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let date = DateTime::from_timestamp(days.clamp(FIRST_DAY, LAST_DAY) * 86_400);
    (i64::from(date.year), u32::from(date.month), u32::from(date.day))
}

/// The day, counted from 1970-01-01, of a civil date (year, month 1-12, day 1-31) in the proleptic Gregorian
/// calendar: the inverse of [`civil_from_days`]. Years are clamped to 0-9999, months and days to their
/// ranges; a day past its month's end runs into the next month (2027-02-31 is 2027-03-03).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let date = DateTime {
        year: year.clamp(0, 9999) as u16,
        month: month.clamp(1, 12) as u8,
        day: day.clamp(1, 31) as u8,
        hour: 0,
        minute: 0,
        second: 0,
        tz_before_gmt: false,
        tz_hour: 0,
        tz_minute: 0,
    };
    date.to_timestamp().div_euclid(86_400)
}

/// RFC 5322 date-time for headers (`Thu, 1 Jan 1970 00:00:00 +0000`), in UTC; times before year 0 or after
/// 9999 are clamped to those years.
pub fn rfc5322_date(unix: i64) -> String {
    let unix = unix.clamp(FIRST_DAY * 86_400, LAST_DAY * 86_400 + 86_399);
    DateTime::from_timestamp(unix).to_rfc822()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_text() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(sanitize("bad\r\nline", 100), "bad  line");
        assert_eq!(domain_of("Bob@Example.COM."), "example.com");
        assert_eq!(domain_of(""), "");
    }

    /// The calendar this module had before mail-parser's (Howard Hinnant's `civil_from_days`), kept as
    /// the reference the new one must agree with.
    fn reference_civil_from_days(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (yoe + era * 400 + i64::from(month <= 2), month, day)
    }

    #[test]
    fn known_dates_including_leap_days() {
        for (unix, date) in [
            (0, "Thu, 1 Jan 1970 00:00:00 +0000"),
            (-1, "Wed, 31 Dec 1969 23:59:59 +0000"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (951_868_799, "Tue, 29 Feb 2000 23:59:59 +0000"),
            (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 +0000"),
            (1_709_251_200, "Fri, 1 Mar 2024 00:00:00 +0000"),
            (4_107_456_000, "Sun, 28 Feb 2100 00:00:00 +0000"),
            (4_107_542_400, "Mon, 1 Mar 2100 00:00:00 +0000"),
            (-2_203_891_200, "Thu, 1 Mar 1900 00:00:00 +0000"),
            (1_795_450_000, "Mon, 23 Nov 2026 16:06:40 +0000"),
            (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 +0000"),
        ] {
            assert_eq!(rfc5322_date(unix), date, "{unix}");
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1000), (1967, 4, 7));
    }

    #[test]
    fn the_calendar_agrees_with_the_reference_for_every_day_from_1900_to_2200() {
        for days in (-25_567..84_000).chain([FIRST_DAY, FIRST_DAY + 59, FIRST_DAY + 60, LAST_DAY]) {
            assert_eq!(civil_from_days(days), reference_civil_from_days(days), "day {days}");
        }
        assert_eq!(civil_from_days(i64::MIN / 2), (0, 1, 1), "clamped");
        assert_eq!(civil_from_days(i64::MAX / 2), (9999, 12, 31), "clamped");
        assert_eq!(rfc5322_date(i64::MAX), "Fri, 31 Dec 9999 23:59:59 +0000");
    }

    #[test]
    fn days_from_dates_are_the_inverse_of_dates_from_days() {
        for days in (-25_567..84_000).chain([FIRST_DAY, LAST_DAY]) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2027, 1, 31) * 86_400, 1_801_353_600);
        assert_eq!(days_from_civil(2027, 2, 31), days_from_civil(2027, 3, 3), "a day past the month runs on");
    }
}
