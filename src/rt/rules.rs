//! The rule structs generated `Validate` impls check values with: one per kind of limit in
//! the API file (string, number, list, file size, day, interval).

use std::fmt::Write as _;

use crate::media::MediaType;
use crate::validate::{Invalid, TooLargeUpload};

/// What WeCom does with a value past a `max_*` limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// The server refuses it, so the client refuses it first.
    Refused,
    /// The server cuts it short; the client sends it and logs a warning.
    Truncated,
}

/// The limits of a text field.
#[derive(Debug, Clone, Copy)]
pub struct StringRule {
    /// The fewest UTF-8 bytes allowed (1: not empty).
    pub min_bytes: usize,
    /// The most UTF-8 bytes allowed.
    pub max_bytes: Option<usize>,
    /// The most characters allowed.
    pub max_chars: Option<usize>,
    /// Allowed characters as inclusive ranges; empty means any.
    pub charset: &'static [(char, char)],
    /// The value must start with one of these; empty means any.
    pub prefixes: &'static [&'static str],
    /// What WeCom does past `max_bytes` or `max_chars`.
    pub over_limit: OverLimit,
}

impl StringRule {
    /// No limits at all; generated rules override what they need.
    pub const ANY: StringRule = StringRule {
        min_bytes: 0,
        max_bytes: None,
        max_chars: None,
        charset: &[],
        prefixes: &[],
        over_limit: OverLimit::Refused,
    };

    /// Any string but the empty one: what a field without other limits requires.
    pub const NON_EMPTY: StringRule = StringRule::ANY.min_bytes(1);

    /// At least `bytes` bytes.
    pub const fn min_bytes(self, bytes: usize) -> Self {
        StringRule {
            min_bytes: bytes,
            ..self
        }
    }

    /// At most `bytes` bytes.
    pub const fn max_bytes(self, bytes: usize) -> Self {
        StringRule {
            max_bytes: Some(bytes),
            ..self
        }
    }

    /// At most `chars` characters.
    pub const fn max_chars(self, chars: usize) -> Self {
        StringRule {
            max_chars: Some(chars),
            ..self
        }
    }

    /// Only characters in these inclusive ranges.
    pub const fn charset(self, ranges: &'static [(char, char)]) -> Self {
        StringRule {
            charset: ranges,
            ..self
        }
    }

    /// Starting with one of these.
    pub const fn prefixes(self, prefixes: &'static [&'static str]) -> Self {
        StringRule { prefixes, ..self }
    }

    /// WeCom cuts a longer value short instead of refusing it: sent, with a warning.
    pub const fn truncated(self) -> Self {
        StringRule {
            over_limit: OverLimit::Truncated,
            ..self
        }
    }

    /// `Err` naming `field` when `value` breaks the rule.
    pub fn check(&self, field: &str, value: &str) -> Result<(), Invalid> {
        self.reason(value)
            .map_or(Ok(()), |r| Err(Invalid::new(field, r)))
    }

    /// [`check`](Self::check) for item `index` of the list `field`.
    pub fn check_item(&self, field: &str, index: usize, value: &str) -> Result<(), Invalid> {
        self.reason(value).map_or(Ok(()), |r| {
            Err(Invalid::new("", r).within_item(field, index))
        })
    }

    fn reason(&self, value: &str) -> Option<String> {
        let len = value.len();
        if len < self.min_bytes {
            return Some(if len == 0 {
                "must not be empty".to_owned()
            } else {
                format!("is {len} bytes; at least {} required", self.min_bytes)
            });
        }
        if !self.charset.is_empty()
            && let Some(c) = value
                .chars()
                .find(|c| !self.charset.iter().any(|(lo, hi)| (lo..=hi).contains(&c)))
        {
            return Some(format!(
                "contains {c:?}; only `{}` are allowed",
                describe_charset(self.charset)
            ));
        }
        if !self.prefixes.is_empty() && !self.prefixes.iter().any(|p| value.starts_with(p)) {
            return Some(format!("must start with {}", self.prefixes.join(" or ")));
        }
        let over = match (self.max_bytes, self.max_chars) {
            (Some(max), _) if len > max => Some(format!("is {len} bytes; at most {max} allowed")),
            (_, Some(max)) if value.chars().count() > max => Some(format!(
                "is {} characters; at most {max} allowed",
                value.chars().count()
            )),
            _ => None,
        };
        over.and_then(|reason| self.over_limit.refuse(reason))
    }
}

impl OverLimit {
    fn refuse(self, reason: String) -> Option<String> {
        match self {
            OverLimit::Refused => Some(reason),
            OverLimit::Truncated => {
                tracing::warn!(%reason, "value is over WeCom's limit; the server will truncate it");
                None
            }
        }
    }
}

fn describe_charset(ranges: &[(char, char)]) -> String {
    let mut out = String::new();
    for (lo, hi) in ranges {
        if lo == hi {
            out.push(*lo);
        } else {
            let _ = write!(out, "{lo}-{hi}");
        }
    }
    out
}

/// The bounds of a number field, inclusive.
#[derive(Debug, Clone, Copy)]
pub struct NumberRule {
    /// The smallest value allowed.
    pub min: Option<f64>,
    /// The largest value allowed.
    pub max: Option<f64>,
}

impl NumberRule {
    /// `Err` naming `field` when `value` is out of bounds (or not finite).
    pub fn check(&self, field: &str, value: f64) -> Result<(), Invalid> {
        self.reason(value)
            .map_or(Ok(()), |r| Err(Invalid::new(field, r)))
    }

    /// [`check`](Self::check) for item `index` of the list `field`.
    pub fn check_item(&self, field: &str, index: usize, value: f64) -> Result<(), Invalid> {
        self.reason(value).map_or(Ok(()), |r| {
            Err(Invalid::new("", r).within_item(field, index))
        })
    }

    fn reason(&self, value: f64) -> Option<String> {
        if !value.is_finite() {
            return Some(format!("is {value}; a finite number is required"));
        }
        match (self.min, self.max) {
            (Some(min), _) if value < min => Some(format!("is {value}; at least {min} required")),
            (_, Some(max)) if value > max => Some(format!("is {value}; at most {max} allowed")),
            _ => None,
        }
    }
}

/// How many items a list field may have.
#[derive(Debug, Clone, Copy)]
pub struct ItemsRule {
    /// The fewest items.
    pub min: usize,
    /// The most items.
    pub max: Option<usize>,
    /// What WeCom does past `max`.
    pub over_limit: OverLimit,
}

impl ItemsRule {
    /// `Err` naming `field` when a list of `count` items breaks the rule.
    pub fn check(&self, field: &str, count: usize) -> Result<(), Invalid> {
        if count < self.min {
            return Err(Invalid::new(
                field,
                format!("has {count} items; at least {} required", self.min),
            ));
        }
        match self.max {
            Some(max) if count > max => self
                .over_limit
                .refuse(format!("has {count} items; at most {max} allowed"))
                .map_or(Ok(()), |r| Err(Invalid::new(field, r))),
            _ => Ok(()),
        }
    }
}

/// The size limits of a file to upload.
#[derive(Debug, Clone, Copy)]
pub struct SizeRule {
    /// The fewest bytes (1: not empty).
    pub min_bytes: u64,
    /// The most bytes.
    pub max_bytes: Option<u64>,
    /// What WeCom does past `max_bytes`.
    pub over_limit: OverLimit,
    /// The media type the file uploads as: a file over `max_bytes` is then
    /// [`Error::UploadTooLarge`](crate::Error::UploadTooLarge).
    pub media_type: Option<MediaType>,
}

impl SizeRule {
    /// `Err` naming `field` when a file of `len` bytes breaks the rule.
    pub fn check(&self, field: &str, len: u64) -> Result<(), Invalid> {
        if len < self.min_bytes {
            let reason = if len == 0 {
                "is empty".to_owned()
            } else {
                format!("is {len} bytes; at least {} required", self.min_bytes)
            };
            return Err(Invalid::new(field, reason));
        }
        match self.max_bytes {
            Some(max) if len > max => self
                .over_limit
                .refuse(format!("is {len} bytes; at most {max} allowed"))
                .map_or(Ok(()), |r| {
                    let mut invalid = Invalid::new(field, r);
                    invalid.upload = self.media_type.map(|kind| TooLargeUpload {
                        kind,
                        len,
                        limit: max,
                    });
                    Err(invalid)
                }),
            _ => Ok(()),
        }
    }
}

/// A Unix time that must be 00:00 of a day at a UTC offset, and (optionally) a day within a
/// window before today there: WeCom's statistics count days in China time and keep 180.
#[derive(Debug, Clone, Copy)]
pub struct DayRule {
    /// Seconds east of UTC (28800 for UTC+08:00).
    pub utc_offset: i32,
    /// The day lies from `low` to `high` days before today, inclusive.
    pub days_ago: Option<(u32, u32)>,
}

const DAY: i128 = 86_400;

impl DayRule {
    /// `Err` naming `field` when `value` isn't a day's 00:00 in the window, as of now.
    pub fn check(&self, field: &str, value: i128) -> Result<(), Invalid> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| i128::from(since.as_secs()));
        self.check_at(field, value, now)
    }

    /// The check as of `now` (Unix seconds).
    pub fn check_at(&self, field: &str, value: i128, now: i128) -> Result<(), Invalid> {
        self.reason(value, now)
            .map_or(Ok(()), |r| Err(Invalid::new(field, r)))
    }

    fn reason(&self, value: i128, now: i128) -> Option<String> {
        let offset = i128::from(self.utc_offset);
        let zone = self.zone();
        // i128 holds any i64 or u64 value plus an offset without overflow.
        let local = value + offset;
        let into_day = local.rem_euclid(DAY);
        if into_day != 0 {
            let (h, m, s) = (into_day / 3600, into_day / 60 % 60, into_day % 60);
            return Some(format!(
                "is {value}, {h:02}:{m:02}:{s:02} in {zone}; the Unix time of a day's 00:00 there is required"
            ));
        }
        let (low, high) = self.days_ago?;
        let ago = (now + offset).div_euclid(DAY) - local.div_euclid(DAY);
        let allowed = i128::from(low)..=i128::from(high);
        if allowed.contains(&ago) {
            return None;
        }
        let when = match ago {
            0 => "today".to_owned(),
            1 => "yesterday".to_owned(),
            n if n < 0 => format!("{} days ahead", -n),
            n => format!("{n} days ago"),
        };
        Some(format!(
            "is {when} in {zone}; a day from {low} to {high} days back is required"
        ))
    }

    /// `UTC+08:00`.
    fn zone(&self) -> String {
        let sign = if self.utc_offset < 0 { '-' } else { '+' };
        let minutes = self.utc_offset.unsigned_abs() / 60;
        format!("UTC{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

/// Two number fields that bound an interval: the end is not before the start, and at most
/// `max_span` after it.
#[derive(Debug, Clone, Copy)]
pub struct RangeRule {
    /// The longest interval allowed, in the fields' unit.
    pub max_span: Option<u64>,
}

impl RangeRule {
    /// `Err` naming the end field when `end` is before `start` or too far after it.
    pub fn check(
        &self,
        start_field: &str,
        start: i128,
        end_field: &str,
        end: i128,
    ) -> Result<(), Invalid> {
        // Both come from 64-bit integers, so the difference fits.
        let span = end - start;
        if span < 0 {
            return Err(Invalid::new(
                end_field,
                format!("is {end}, before `{start_field}` ({start})"),
            ));
        }
        match self.max_span {
            Some(max) if span > i128::from(max) => Err(Invalid::new(
                end_field,
                format!("is {span} after `{start_field}`; at most {max} allowed"),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSGID: StringRule = StringRule {
        max_bytes: Some(32),
        charset: &[('0', '9'), ('a', 'z'), ('A', 'Z'), ('_', '_'), ('-', '-')],
        min_bytes: 1,
        ..StringRule::ANY
    };

    #[test]
    fn string_rules_name_the_problem() {
        assert_eq!(MSGID.check("msgid", "order-42"), Ok(()));
        let bad = MSGID.check("msgid", "hi!").unwrap_err();
        assert_eq!(bad.field, "msgid");
        assert!(bad.reason.contains("'!'"), "{}", bad.reason);
        let long = MSGID.check("msgid", &"a".repeat(33)).unwrap_err();
        assert_eq!(long.reason, "is 33 bytes; at most 32 allowed");
        assert_eq!(
            MSGID.check("msgid", "").unwrap_err().reason,
            "must not be empty"
        );
    }

    #[test]
    fn truncated_limits_pass() {
        let rule = StringRule {
            max_bytes: Some(4),
            over_limit: OverLimit::Truncated,
            ..StringRule::ANY
        };
        assert_eq!(rule.check("title", "longer than four"), Ok(()));
    }

    #[test]
    fn paths_nest_like_the_json() {
        let e = Invalid::new("id", "x")
            .within("click")
            .within_item("list", 2)
            .within("msgmenu");
        assert_eq!(e.field, "msgmenu.list[2].click.id");
    }

    #[test]
    fn file_sizes() {
        let image = SizeRule {
            min_bytes: 6,
            max_bytes: Some(10 << 20),
            over_limit: OverLimit::Refused,
            media_type: Some(MediaType::Image),
        };
        assert!(image.check("media", 6).is_ok());
        assert_eq!(image.check("media", 0).unwrap_err().reason, "is empty");
        assert_eq!(
            image.check("media", 5).unwrap_err().reason,
            "is 5 bytes; at least 6 required"
        );
        let over = image.check("media", (10 << 20) + 1).unwrap_err();
        assert_eq!(
            over.too_large_upload(),
            Some(TooLargeUpload {
                kind: MediaType::Image,
                len: (10 << 20) + 1,
                limit: 10 << 20
            })
        );
        assert_eq!(
            image.check("media", 5).unwrap_err().too_large_upload(),
            None
        );
    }

    #[test]
    fn numbers_and_items() {
        let lat = NumberRule {
            min: Some(-90.0),
            max: Some(90.0),
        };
        assert!(lat.check("latitude", 90.0).is_ok());
        assert!(lat.check("latitude", 90.5).is_err());
        assert!(lat.check("latitude", f64::NAN).is_err());
        let items = ItemsRule {
            min: 0,
            max: Some(10),
            over_limit: OverLimit::Refused,
        };
        assert!(items.check("list", 11).is_err());
    }

    /// 2024-03-01 12:00 in UTC+08:00.
    const NOON: i128 = 1_709_265_600;
    /// 2024-03-01 00:00 in UTC+08:00.
    const TODAY: i128 = NOON - 12 * 3600;

    const STATISTICS: DayRule = DayRule {
        utc_offset: 8 * 3600,
        days_ago: Some((1, 180)),
    };

    #[test]
    fn days_start_at_midnight_in_their_zone() {
        let yesterday = TODAY - DAY;
        assert_eq!(STATISTICS.check_at("start_time", yesterday, NOON), Ok(()));
        let utc_midnight = yesterday + 8 * 3600;
        let err = STATISTICS
            .check_at("start_time", utc_midnight, NOON)
            .unwrap_err();
        assert_eq!(err.field, "start_time");
        assert!(
            err.reason.contains("08:00:00 in UTC+08:00"),
            "{}",
            err.reason
        );
        let west = DayRule {
            utc_offset: -(5 * 3600 + 30 * 60),
            days_ago: None,
        };
        assert_eq!(west.check_at("t", 5 * 3600 + 30 * 60, NOON), Ok(()));
        assert!(
            west.check_at("t", 0, NOON)
                .unwrap_err()
                .reason
                .contains("UTC-05:30")
        );
    }

    #[test]
    fn the_window_runs_from_yesterday_to_180_days_back() {
        let day = |ago: i128| TODAY - ago * DAY;
        for ago in [1, 2, 31, 180] {
            assert_eq!(STATISTICS.check_at("d", day(ago), NOON), Ok(()), "{ago}");
        }
        let reason = |ago| STATISTICS.check_at("d", day(ago), NOON).unwrap_err().reason;
        assert!(
            reason(0).starts_with("is today in UTC+08:00"),
            "{}",
            reason(0)
        );
        assert!(
            reason(181).starts_with("is 181 days ago"),
            "{}",
            reason(181)
        );
        assert!(reason(-3).starts_with("is 3 days ahead"), "{}", reason(-3));
        // Just before midnight, today is still the day that began at TODAY.
        assert_eq!(STATISTICS.check_at("d", day(1), TODAY + DAY - 1), Ok(()));
        assert!(STATISTICS.check_at("d", day(1), TODAY + DAY).is_ok());
        assert!(
            STATISTICS.check_at("d", day(0), TODAY + DAY).is_ok(),
            "now yesterday"
        );
    }

    #[test]
    fn huge_values_are_refused_without_overflow() {
        let max = i128::from(u64::MAX);
        assert!(STATISTICS.check_at("d", max, NOON).is_err());
        assert!(
            STATISTICS
                .check_at("d", i128::from(i64::MIN), NOON)
                .is_err()
        );
    }

    #[test]
    fn ranges_are_ordered_and_bounded() {
        let month = RangeRule {
            max_span: Some(31 * 86_400),
        };
        assert_eq!(month.check("start_time", 0, "end_time", 0), Ok(()));
        assert_eq!(
            month.check("start_time", 0, "end_time", 31 * 86_400),
            Ok(())
        );
        let late = month
            .check("start_time", 0, "end_time", 31 * 86_400 + 1)
            .unwrap_err();
        assert_eq!(late.field, "end_time");
        assert_eq!(
            late.reason,
            "is 2678401 after `start_time`; at most 2678400 allowed"
        );
        let before = month.check("start_time", 10, "end_time", 9).unwrap_err();
        assert_eq!(before.reason, "is 9, before `start_time` (10)");
        let open = RangeRule { max_span: None };
        assert!(
            open.check("a", i128::from(i64::MIN), "b", i128::from(u64::MAX))
                .is_ok()
        );
    }
}
