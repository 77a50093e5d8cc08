//! Where the state that outlives a process is kept: one interface, [`StateStore`], and its
//! embedded implementation, [`FileStore`] (a redb database file in `--data-dir`).
//!
//! The store knows bytes, not rooms: the cores write themselves down as serde data
//! (`Signalling::snapshot`) and the server's write-behind encodes them, so what is kept, and
//! how a later process takes it back, is tested without any IO. A store only has to keep the
//! last state it was given, atomically: a crash in the middle of a save leaves the one before.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use redb::{Database, Durability, TableDefinition};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the file (redb locks it).
    #[error("{0} is in use by another process (another visavis with the same --data-dir?)")]
    Locked(PathBuf),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// Keeps the last state it was given.
pub trait StateStore: Send + Sync + Debug {
    /// The state last saved, if any.
    fn load(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replaces the saved state with `state`; once it returns, a crash of the process (or, for
    /// a file, of the machine) keeps it.
    fn save(&self, state: &[u8]) -> Result<(), StoreError>;
    /// Where it keeps the state, for logs.
    fn describe(&self) -> String;
}

/// The one table: key → bytes. One key today (the whole state); a store shared by several
/// nodes will want one per room.
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const KEY: &str = "signalling";

/// A redb database file. Each save is one write transaction, committed with fsync: redb's
/// copy-on-write commit means a crash at any moment leaves the previous save intact.
#[derive(Debug)]
pub struct FileStore {
    db: Database,
    path: PathBuf,
}

impl FileStore {
    /// Opens (or makes) the database at `path`, and the directory it is in.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let io = |message: String| StoreError::Io {
            path: path.to_owned(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(format!("cannot make its directory: {e}")))?;
        }
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.to_owned()),
            redb::DatabaseError::Storage(redb::StorageError::Io(err))
                if err.kind() == std::io::ErrorKind::WouldBlock =>
            {
                StoreError::Locked(path.to_owned())
            }
            other => io(other.to_string()),
        })?;
        // It holds resume tokens, which take a session over: for this user's eyes only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io(format!("cannot make it private: {e}")))?;
        }
        Ok(Self {
            db,
            path: path.to_owned(),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}

impl StateStore for FileStore {
    fn load(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = match txn.open_table(STATE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let value = table.get(KEY).map_err(|e| self.err(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn save(&self, state: &[u8]) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        txn.set_durability(Durability::Immediate);
        {
            let mut table = txn.open_table(STATE).map_err(|e| self.err(e))?;
            table.insert(KEY, state).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("visavis-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("state.redb")
    }

    #[test]
    fn keeps_the_last_state_across_opens() {
        let path = temp("keeps");
        {
            let store = FileStore::open(&path).unwrap();
            assert_eq!(store.load().unwrap(), None);
            store.save(b"one").unwrap();
            store.save(b"two").unwrap();
            assert_eq!(store.load().unwrap().as_deref(), Some(&b"two"[..]));
        }
        let store = FileStore::open(&path).unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some(&b"two"[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "resume tokens are secrets");
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_second_opener_is_told_the_file_is_in_use() {
        let path = temp("locked");
        let _first = FileStore::open(&path).unwrap();
        match FileStore::open(&path) {
            Err(StoreError::Locked(p)) => assert_eq!(p, path),
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
