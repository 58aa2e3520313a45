//! The time range every console view takes: `?range=24h|7d|30d|90d` (the last hours or days up to now), or
//! `?from=YYYY-MM-DD&to=YYYY-MM-DD` (whole UTC days, both included). Pages show the picker
//! (`templates/range.html`, included where a page wants it) and read what was asked from [`TimeRange`].

use serde::{Deserialize, Serialize};

/// What a page was asked for, as it came in the query string.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct RangeParams {
    pub range: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A resolved time range: `since` included, `until` excluded, both Unix seconds.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct TimeRange {
    pub since: i64,
    pub until: i64,
    /// What the picker shows as chosen: "24h", "7d", "30d", "90d" or "custom".
    pub key: String,
    /// In words, for headings: "last 24 hours", "2026-11-01 to 2026-11-30".
    pub label: String,
    /// The query string that asks for this range again (for links that keep it).
    pub query: String,
    pub from: String,
    pub to: String,
}

/// The preset ranges the picker offers: key, seconds, words.
pub const PRESETS: &[(&str, i64, &str)] = &[
    ("24h", 86_400, "last 24 hours"),
    ("7d", 7 * 86_400, "last 7 days"),
    ("30d", 30 * 86_400, "last 30 days"),
    ("90d", 90 * 86_400, "last 90 days"),
];

/// The longest custom range a page may be asked for (a year), so no query is unbounded.
pub const MAX_DAYS: i64 = 366;

impl RangeParams {
    /// The range asked for at `now`, or `default` (a preset key) when none was; a bad date or range is an
    /// error in words for the page.
    pub fn resolve(&self, now: i64, default: &str) -> Result<TimeRange, String> {
        let from = self.from.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let to = self.to.as_deref().map(str::trim).filter(|s| !s.is_empty());
        if from.is_some() || to.is_some() {
            let day = |s: &str| parse_day(s).ok_or_else(|| format!("{s:?} is not a date (YYYY-MM-DD)"));
            let today = now.div_euclid(86_400);
            let first = match from {
                Some(f) => day(f)?,
                None => today - 29,
            };
            let last = match to {
                Some(t) => day(t)?,
                None => today,
            };
            if last < first {
                return Err("the range ends before it starts".into());
            }
            if last - first + 1 > MAX_DAYS {
                return Err(format!("a range of at most {MAX_DAYS} days"));
            }
            let (from, to) = (format_day(first), format_day(last));
            return Ok(TimeRange {
                since: first * 86_400,
                until: (last + 1) * 86_400,
                key: "custom".into(),
                label: if first == last { from.clone() } else { format!("{from} to {to}") },
                query: format!("from={from}&to={to}"),
                from,
                to,
            });
        }
        let key = self.range.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or(default);
        let Some((key, secs, words)) = PRESETS.iter().find(|(k, _, _)| *k == key) else {
            let known: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            return Err(format!("range {key:?}: one of {}", known.join(", ")));
        };
        Ok(TimeRange {
            since: now - secs,
            until: now + 1,
            key: key.to_string(),
            label: words.to_string(),
            query: format!("range={key}"),
            from: format_day((now - secs).div_euclid(86_400)),
            to: format_day(now.div_euclid(86_400)),
        })
    }
}

impl TimeRange {
    /// How long the range is, in seconds.
    pub fn seconds(&self) -> i64 {
        self.until - self.since
    }
}

fn parse_day(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 || !s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let days = mailsift_gateway::text::days_from_civil(y, m, d);
    // 31 February and the like do not come back as themselves.
    (mailsift_gateway::text::civil_from_days(days) == (y, m, d)).then_some(days)
}

fn format_day(days: i64) -> String {
    let (y, m, d) = mailsift_gateway::text::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_900_000;

    fn p(range: Option<&str>, from: Option<&str>, to: Option<&str>) -> RangeParams {
        RangeParams { range: range.map(String::from), from: from.map(String::from), to: to.map(String::from) }
    }

    #[test]
    fn presets_and_default() {
        let r = p(None, None, None).resolve(NOW, "24h").unwrap();
        assert_eq!((r.since, r.until, r.key.as_str()), (NOW - 86_400, NOW + 1, "24h"));
        let r = p(Some("7d"), None, None).resolve(NOW, "24h").unwrap();
        assert_eq!(r.seconds(), 7 * 86_400 + 1);
        assert_eq!(r.query, "range=7d");
        assert!(p(Some("1y"), None, None).resolve(NOW, "24h").unwrap_err().contains("24h, 7d"));
    }

    #[test]
    fn custom_days_are_whole_utc_days() {
        let r = p(Some("7d"), Some("2026-11-01"), Some("2026-11-30")).resolve(NOW, "24h").unwrap();
        let first = mailsift_gateway::text::days_from_civil(2026, 11, 1);
        assert_eq!((r.since, r.until), (first * 86_400, (first + 30) * 86_400));
        assert_eq!((r.key.as_str(), r.label.as_str()), ("custom", "2026-11-01 to 2026-11-30"));
        assert_eq!(r.query, "from=2026-11-01&to=2026-11-30");
    }

    #[test]
    fn bad_custom_ranges_are_refused_in_words() {
        for (f, t) in [("2026-02-31", "2026-03-01"), ("2026-1-01", "2026-01-02"), ("x", "2026-01-01")] {
            assert!(p(None, Some(f), Some(t)).resolve(NOW, "24h").unwrap_err().contains("not a date"), "{f}");
        }
        assert!(p(None, Some("2026-03-02"), Some("2026-03-01")).resolve(NOW, "24h").unwrap_err().contains("before"));
        assert!(p(None, Some("2020-01-01"), Some("2026-01-01")).resolve(NOW, "24h").unwrap_err().contains("366"));
    }
}
