//! Checks generated from the TOML's limits. They run before a request is built, so an
//! invalid value never reaches WeCom (and never burns one of the 5 messages a customer
//! message allows).

use std::fmt::Write as _;

/// A value that breaks one of the API file's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The JSON path of the field, like `msgmenu.list[2].click.id`.
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        Invalid {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// Puts the field under `parent`: `id` → `click.id`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }

    /// Puts the field under item `index` of the list `list`: `click.id` → `list[2].click.id`.
    pub fn within_item(mut self, list: &str, index: usize) -> Self {
        self.field = if self.field.is_empty() {
            format!("[{index}]")
        } else if self.field.starts_with('[') {
            format!("[{index}]{}", self.field)
        } else {
            format!("[{index}].{}", self.field)
        };
        self.within(list)
    }
}

/// Implemented by every generated request and payload type.
pub trait Validate {
    fn validate(&self) -> Result<(), Invalid>;
}

/// What WeCom does with a value past a `max_*` limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// The server refuses it, so the client refuses it first.
    Refused,
    /// The server cuts it short; the client sends it and logs a warning.
    Truncated,
}

#[derive(Debug, Clone, Copy)]
pub struct StringRule {
    pub min_bytes: usize,
    pub max_bytes: Option<usize>,
    pub max_chars: Option<usize>,
    /// Allowed characters as inclusive ranges; empty means any.
    pub charset: &'static [(char, char)],
    /// The value must start with one of these; empty means any.
    pub prefixes: &'static [&'static str],
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

    pub fn check(&self, field: &str, value: &str) -> Result<(), Invalid> {
        self.reason(value)
            .map_or(Ok(()), |r| Err(Invalid::new(field, r)))
    }

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

#[derive(Debug, Clone, Copy)]
pub struct NumberRule {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl NumberRule {
    pub fn check(&self, field: &str, value: f64) -> Result<(), Invalid> {
        self.reason(value)
            .map_or(Ok(()), |r| Err(Invalid::new(field, r)))
    }

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

#[derive(Debug, Clone, Copy)]
pub struct ItemsRule {
    pub min: usize,
    pub max: Option<usize>,
    pub over_limit: OverLimit,
}

impl ItemsRule {
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
    pub min_bytes: u64,
    pub max_bytes: Option<u64>,
    pub over_limit: OverLimit,
}

impl SizeRule {
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
                .map_or(Ok(()), |r| Err(Invalid::new(field, r))),
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
        };
        assert!(image.check("media", 6).is_ok());
        assert_eq!(image.check("media", 0).unwrap_err().reason, "is empty");
        assert_eq!(
            image.check("media", 5).unwrap_err().reason,
            "is 5 bytes; at least 6 required"
        );
        assert!(image.check("media", (10 << 20) + 1).is_err());
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
}
