//! Checkpoints as files: one JSON file per account, replaced atomically.

use std::path::{Path, PathBuf};

use super::{Checkpoint, CursorStore};
use crate::BoxFuture;
use crate::token::StoreError;

/// Checkpoints as JSON files in a directory, one per account, written atomically: a temp
/// file is written and fsynced, then renamed over the old one, then the directory is
/// fsynced.
#[derive(Debug, Clone)]
pub struct FileCursorStore {
    dir: PathBuf,
}

impl FileCursorStore {
    /// Creates the directory if needed.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(FileCursorStore { dir })
    }

    /// The file of one account. `open_kfid`s are `[0-9A-Za-z_-]`; anything else is
    /// percent-encoded so a name can never leave the directory.
    pub fn path_of(&self, open_kfid: &str) -> PathBuf {
        let mut name = String::with_capacity(open_kfid.len() + 5);
        for byte in open_kfid.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
                name.push(char::from(byte));
            } else {
                name.push_str(&format!("%{byte:02X}"));
            }
        }
        name.push_str(".json");
        self.dir.join(name)
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    std::fs::File::open(dir)?.sync_all()
}

impl CursorStore for FileCursorStore {
    fn load<'a>(&'a self, open_kfid: &'a str) -> BoxFuture<'a, Result<Checkpoint, StoreError>> {
        let path = self.path_of(open_kfid);
        Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            });
            match read.await?? {
                Some(bytes) => Ok(serde_json::from_slice(&bytes)?),
                None => Ok(Checkpoint::default()),
            }
        })
    }

    fn save<'a>(
        &'a self,
        open_kfid: &'a str,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (dir, path) = (self.dir.clone(), self.path_of(open_kfid));
        Box::pin(async move {
            let bytes = serde_json::to_vec(checkpoint)?;
            tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &bytes)).await??;
            Ok(())
        })
    }
}
