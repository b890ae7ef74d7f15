//! Checkpoints as files: one JSON file per account, replaced atomically.
//!
//! A save writes a temp file of its own (unique name, `create_new`), fsyncs it, renames it
//! over the account's file and fsyncs the directory, so a crash at any point leaves the
//! old checkpoint or the new one, never a mix. Saves of one account are serialized twice:
//! in this process by an async mutex whose guard travels into the blocking write (a
//! cancelled `save` finishes before the next one starts, so an older write can't land
//! after a newer one), and across processes by an advisory lock on the account's file
//! (unix).

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{CallbackToken, Checkpoint, CursorStore, SharedCallbacks};
use crate::Secret;
use crate::token::BoxFuture;
use crate::token::StoreError;

/// A temp file older than this, found while holding the account's lock, was left by a
/// writer that died: removed. Younger ones are left alone, in case a writer that doesn't
/// take the lock (the very first write of an account) is still busy with it.
const STALE_TEMP: Duration = Duration::from_secs(60);

/// Checkpoints as JSON files in a directory, one per account, written atomically: a temp
/// file is written and fsynced, then renamed over the old one, then the directory is
/// fsynced. Clones share the per-account write order.
#[derive(Clone)]
pub struct FileCursorStore {
    files: JsonFiles,
}

/// JSON documents in a directory, one file per name, each replaced atomically and written
/// in order (see the module docs): what [`FileCursorStore`] and the bot's file store keep
/// their state in.
#[derive(Clone)]
pub(crate) struct JsonFiles {
    dir: PathBuf,
    accounts: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<AccountFile>>>>>,
}

/// What this store knows about one account's file; its mutex orders the account's writes.
#[derive(Default)]
struct AccountFile {
    /// Whether temp files left by dead writers were looked for (once per store).
    swept: bool,
}

impl fmt::Debug for FileCursorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileCursorStore")
            .field("dir", &self.files.dir)
            .finish_non_exhaustive()
    }
}

/// A file that exists but doesn't parse. It is refused rather than started over: for a
/// checkpoint, an empty cursor would hand 3 days of messages over again.
#[derive(Debug)]
struct CorruptCheckpoint {
    path: PathBuf,
    source: serde_json::Error,
}

impl fmt::Display for CorruptCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the checkpoint file {} does not parse ({}); restore it, or delete it to start \
             again 3 days back",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for CorruptCheckpoint {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl FileCursorStore {
    /// Creates the directory if needed.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        Ok(FileCursorStore {
            files: JsonFiles::new(dir)?,
        })
    }

    /// The file of one account. `open_kfid`s are `[0-9A-Za-z_-]`; anything else is
    /// percent-encoded so a name can never leave the directory.
    pub fn path_of(&self, open_kfid: &str) -> PathBuf {
        self.files.path_of(open_kfid)
    }

    /// The file named by an error of [`load`](CursorStore::load) when the account's
    /// checkpoint file exists but doesn't parse; `None` for any other error.
    pub fn corrupt_file<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Path> {
        error
            .downcast_ref::<CorruptCheckpoint>()
            .map(|corrupt| corrupt.path.as_path())
    }
}

impl JsonFiles {
    /// Creates the directory if needed.
    pub(crate) fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(JsonFiles {
            dir,
            accounts: Arc::default(),
        })
    }

    /// The file of `name`, percent-encoded but for `[0-9A-Za-z_-]` so it never leaves the
    /// directory (and two names never share a file).
    pub(crate) fn path_of(&self, name: &str) -> PathBuf {
        let mut file = String::with_capacity(name.len() + 5);
        crate::encode::percent_encode(&mut file, name, b"_-");
        file.push_str(".json");
        self.dir.join(file)
    }

    /// The names of the documents whose names start with `prefix`.
    pub(crate) async fn names(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let dir = self.dir.clone();
        let prefix = prefix.to_owned();
        let names = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<String>> {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let file = entry?.file_name();
                let Some(stem) = file.to_str().and_then(|f| f.strip_suffix(".json")) else {
                    continue;
                };
                if let Some(name) = unescape(stem).filter(|n| n.starts_with(&prefix)) {
                    names.push(name);
                }
            }
            Ok(names)
        });
        Ok(names.await??)
    }

    /// The document `name`, or its default when there is none yet.
    pub(crate) async fn load<T>(&self, name: &str) -> Result<T, StoreError>
    where
        T: serde::de::DeserializeOwned + Default,
    {
        let (path, bytes) = self.read(name).await?;
        decode_document(&path, bytes.as_deref())
    }

    /// The bytes of the document `name` (for [`load`](Self::load), one piece of code
    /// whatever the document's type).
    async fn read(&self, name: &str) -> Result<(PathBuf, Option<Vec<u8>>), StoreError> {
        let path = self.path_of(name);
        // Waits for a write of this document still going (one whose caller gave up).
        let guard = self.account(name).lock_owned().await;
        let read = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            read_bytes(&path).map(|bytes| (path, bytes))
        });
        read.await?
    }

    /// Replaces the document `name`.
    pub(crate) async fn save<T: serde::Serialize>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        self.write(name, serde_json::to_vec(value)?).await
    }

    /// Replaces the bytes of the document `name` (for [`save`](Self::save)).
    async fn write(&self, name: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let (dir, path) = (self.dir.clone(), self.path_of(name));
        let account = self.account(name);
        let mut guard = account.lock_owned().await;
        // The guard goes into the blocking task: if this future is dropped, the write
        // still runs to its end before the next write of the document may start.
        tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &bytes, &mut guard))
            .await??;
        Ok(())
    }

    /// Reads, changes and writes back the document `name` under its lock; only when the
    /// change changed it. Returns what `change` returned and the document as it now is.
    pub(crate) async fn update<T, R>(
        &self,
        name: &str,
        change: impl FnOnce(&mut T) -> R + Send + 'static,
    ) -> Result<(R, T), StoreError>
    where
        T: serde::de::DeserializeOwned + serde::Serialize + Default + Send + 'static,
        R: Send + 'static,
    {
        let edit: Edit = Box::new(move |path, before| {
            let mut value = decode_document::<T>(path, before)?;
            let out = change(&mut value);
            let after = serde_json::to_vec(&value)?;
            Ok((after, Box::new((out, value))))
        });
        let edited = self.edit(name, edit).await?;
        // `edit` returns what the closure above made, a `(R, T)`, and nothing else.
        let edited = edited
            .downcast::<(R, T)>()
            .expect("an edit returns its closure's output");
        Ok(*edited)
    }

    /// [`update`](Self::update)'s work on the bytes, one piece of code for every document
    /// type (a blocking task is a lot of code to build once per kind of change).
    async fn edit(&self, name: &str, edit: Edit) -> Result<Box<dyn Any + Send>, StoreError> {
        let (dir, path) = (self.dir.clone(), self.path_of(name));
        let account = self.account(name);
        let guard = account.lock_owned().await;
        let edited = tokio::task::spawn_blocking(move || {
            let mut guard = guard;
            let before = read_bytes(&path)?;
            let (after, out) = edit(&path, before.as_deref())?;
            if before.as_deref() != Some(after.as_slice()) {
                write_atomically(&dir, &path, &after, &mut guard)?;
            }
            Ok(out)
        });
        edited.await?
    }

    fn account(&self, name: &str) -> Arc<tokio::sync::Mutex<AccountFile>> {
        let mut accounts = crate::mutex::lock(&self.accounts);
        accounts.entry(name.to_owned()).or_default().clone()
    }
}

/// A document's bytes (`None` when there is no file yet) and its value (the default then).
/// A change of a document, as its file's bytes: the bytes to write, and what the change
/// returns (an `(R, T)` of [`JsonFiles::update`]).
type Edit = Box<
    dyn FnOnce(&Path, Option<&[u8]>) -> Result<(Vec<u8>, Box<dyn Any + Send>), StoreError> + Send,
>;

/// The file's bytes; `None` when there is no file yet.
fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The document in `bytes`, or its default when there is no file.
fn decode_document<T>(path: &Path, bytes: Option<&[u8]>) -> Result<T, StoreError>
where
    T: serde::de::DeserializeOwned + Default,
{
    let Some(bytes) = bytes else {
        return Ok(T::default());
    };
    serde_json::from_slice(bytes).map_err(|source| {
        Box::new(CorruptCheckpoint {
            path: path.to_owned(),
            source,
        }) as StoreError
    })
}

/// The name a file stem encodes ([`JsonFiles::path_of`] backwards); `None` for a file the
/// store didn't write.
fn unescape(stem: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(stem.len());
    let mut rest = stem.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' {
            let hex = tail.get(..2)?;
            let byte = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            bytes.push(byte);
            rest = tail.get(2..)?;
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Writes `bytes` as the new content of `path`, holding the account's lock (unix).
fn write_atomically(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    account: &mut AccountFile,
) -> std::io::Result<()> {
    let locked = lock_current(path)?;
    if locked.is_some() && !account.swept {
        // Under the lock no live writer of this account is between its temp and its rename.
        sweep_stale_temps(path);
        account.swept = true;
    }
    let tmp = write_temp(path, bytes)?;
    if let Err(error) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(error);
    }
    sync_dir(dir)?;
    drop(locked);
    Ok(())
}

/// Writes and fsyncs a temp file of this save's own, next to `path`; on failure removes it.
fn write_temp(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write as _;
    let mut attempt = 0;
    let (tmp, mut file) = loop {
        let tmp = temp_name(path);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    match written {
        Ok(()) => Ok(tmp),
        Err(error) => {
            let _ = std::fs::remove_file(&tmp);
            Err(error)
        }
    }
}

/// `<file>.json.<pid>.<random>.tmp`: no two writers, in this process or another, share one.
fn temp_name(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut random = [0u8; 8];
    let suffix = match getrandom::fill(&mut random) {
        Ok(()) => u64::from_le_bytes(random),
        // `create_new` still refuses a name in use; the counter keeps this process's apart.
        Err(_) => COUNTER.fetch_add(1, Ordering::Relaxed),
    };
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}.{suffix:016x}.tmp", std::process::id()));
    PathBuf::from(name)
}

/// Removes this account's temp files that are older than [`STALE_TEMP`].
fn sweep_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let mut prefix = name.to_string_lossy().into_owned();
    prefix.push('.');
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if !(file_name.starts_with(&prefix) && file_name.ends_with(".tmp")) {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Takes the advisory lock of the account's current file, and makes sure the file locked
/// is still the one at `path` (a writer that held the lock before renames a new file over
/// it). `None` when there is no file yet: the first write renames without a lock, which
/// can't tear anything either, as every writer has its own temp file.
#[cfg(unix)]
fn lock_current(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::MetadataExt as _;
    loop {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        file.lock()?;
        let locked = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(current) if (current.dev(), current.ino()) == (locked.dev(), locked.ino()) => {
                return Ok(Some(file));
            }
            // Replaced (or removed) while we waited: lock whatever is there now.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
}

/// Elsewhere a lock on the file would block readers too (Windows locks are mandatory):
/// writers rely on their own temp files and the in-process order only.
#[cfg(not(unix))]
fn lock_current(_path: &Path) -> std::io::Result<Option<std::fs::File>> {
    Ok(None)
}

/// Makes the rename itself durable. Directories can't be opened as files everywhere
/// (Windows), and elsewhere the rename is durable by itself or can't be made so.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The callbacks of one account as [`FileCursorStore`] keeps them, beside its checkpoint:
/// the newest token survives a restart (for what is left of its 10 minutes).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CallbacksFile {
    generation: u64,
    /// The newest token and when it was issued (unix ms).
    newest: Option<(String, u64)>,
}

/// Names of the callback documents start with this; checkpoints are named by the
/// `open_kfid` alone, which never holds `\u{1}`.
const CALLBACKS: &str = "callbacks\u{1}";

fn unix_ms(time: std::time::SystemTime) -> u64 {
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

impl CursorStore for FileCursorStore {
    fn accounts<'a>(&'a self) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let mut accounts: Vec<String> = self
                .files
                .names("")
                .await?
                .into_iter()
                .filter(|name| !name.contains('\u{1}'))
                .collect();
            accounts.sort();
            Ok(accounts)
        })
    }

    fn load<'a>(&'a self, open_kfid: &'a str) -> BoxFuture<'a, Result<Checkpoint, StoreError>> {
        Box::pin(self.files.load(open_kfid))
    }

    fn save<'a>(
        &'a self,
        open_kfid: &'a str,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.files.save(open_kfid, checkpoint))
    }

    fn publish_callback<'a>(
        &'a self,
        open_kfid: &'a str,
        token: &'a CallbackToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let issued = unix_ms(token.issued_at);
        let text = token.token.expose().to_owned();
        Box::pin(async move {
            self.files
                .update(
                    &format!("{CALLBACKS}{open_kfid}"),
                    move |file: &mut CallbacksFile| {
                        file.generation = file.generation.saturating_add(1);
                        if file.newest.as_ref().is_none_or(|(_, at)| *at <= issued) {
                            file.newest = Some((text, issued));
                        }
                    },
                )
                .await
                .map(|_| ())
        })
    }

    fn shared_callbacks<'a>(
        &'a self,
        open_kfid: &'a str,
    ) -> BoxFuture<'a, Result<SharedCallbacks, StoreError>> {
        Box::pin(async move {
            let file: CallbacksFile = self.files.load(&format!("{CALLBACKS}{open_kfid}")).await?;
            let now = std::time::SystemTime::now();
            let newest = file.newest.and_then(|(token, issued)| {
                let issued_at = std::time::UNIX_EPOCH.checked_add(Duration::from_millis(issued))?;
                let token = CallbackToken {
                    token: Secret::new(token),
                    issued_at,
                };
                token.remaining(now).map(|_| token)
            });
            Ok(SharedCallbacks {
                newest,
                generation: file.generation,
            })
        })
    }

    fn forget_callback_token<'a>(
        &'a self,
        open_kfid: &'a str,
        stale: &'a Secret,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let stale = stale.expose().to_owned();
        Box::pin(async move {
            self.files
                .update(
                    &format!("{CALLBACKS}{open_kfid}"),
                    move |file: &mut CallbacksFile| {
                        if file
                            .newest
                            .as_ref()
                            .is_some_and(|(token, _)| *token == stale)
                        {
                            file.newest = None;
                        }
                    },
                )
                .await
                .map(|_| ())
        })
    }
}
