//! Checks generated from the TOML's limits. They run before a request is built, so an
//! invalid value never reaches WeCom (and never burns one of the 5 messages a customer
//! message allows).

use crate::media::MediaType;

/// A value that breaks one of the API file's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The JSON path of the field, like `msgmenu.list[2].click.id`.
    pub field: String,
    /// What is wrong with it, as a sentence part: `is 40 bytes; at most 32 allowed`.
    pub reason: String,
    /// For a file over its media type's size limit: what the error says in types.
    pub(crate) upload: Option<TooLargeUpload>,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Invalid { field, reason, .. } = self;
        write!(f, "invalid `{field}`: {reason} (refused before sending)")
    }
}

impl std::error::Error for Invalid {}

/// A file over the size limit of the media type it uploads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLargeUpload {
    pub(crate) kind: MediaType,
    pub(crate) len: u64,
    pub(crate) limit: u64,
}

impl Invalid {
    /// `field` breaks a limit, as `reason` says.
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        Invalid {
            field: field.to_owned(),
            reason: reason.into(),
            upload: None,
        }
    }

    /// The file over its media type's limit, if that is what this is.
    pub(crate) fn too_large_upload(&self) -> Option<TooLargeUpload> {
        self.upload
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
    /// `Err` with the first field that breaks a limit, if one does.
    fn validate(&self) -> Result<(), Invalid>;
}
