//! The redb database under the embedded backend (`storage::backends::redb`): opening
//! it, transactions with a chosen durability, per-component schema versions and their
//! migrations, and the record encoding the backend's tables share.

pub mod schema;

use std::path::Path;

use redb::{Database, Durability, ReadTransaction, ReadableDatabase, WriteTransaction};

/// Errors from the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// redb failed (I/O, corruption, …).
    #[error("metadata store: {0}")]
    Db(#[from] redb::Error),
    /// A stored record did not decode.
    #[error("metadata record in table {table} is unreadable: {source}")]
    Decode {
        /// The table.
        table: &'static str,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// The data directory's schema cannot be used by this build.
    #[error("{0}")]
    Schema(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for MetaError {
            fn from(e: $t) -> MetaError { MetaError::Db(e.into()) }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Result alias for metadata operations.
pub type MetaResult<T> = Result<T, MetaError>;

/// The metadata database of one data directory.
#[derive(Debug)]
pub struct Metadata {
    db: Database,
}

/// How much of the database redb keeps in memory. The read working set of a registry's
/// metadata is small (tags and manifests of hot images); most writes append to the audit
/// log, whose pages need not stay cached. A bounded cache keeps RSS predictable.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

impl Metadata {
    /// Opens (creating if needed) the metadata database at `path`; the store over it
    /// (`Store::redb`) brings its tables to this build's schema.
    pub fn open(path: &Path) -> MetaResult<Metadata> {
        Metadata::open_with(path, &[], CACHE_BYTES)
    }

    /// Opens a database at `path` holding the given components' tables, with `cache_bytes`
    /// of page cache. Used for databases kept apart from the registry's, such as the audit
    /// log, whose stream of writes should not contend with registry reads.
    pub fn open_with(
        path: &Path,
        components: &[&schema::Component],
        cache_bytes: usize,
    ) -> MetaResult<Metadata> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?;
        let meta = Metadata { db };
        for component in components {
            schema::prepare(&meta, component)?;
        }
        Ok(meta)
    }

    /// Runs `f` in a write transaction and commits it durably (fsync) if it returns `Ok`.
    /// Blocks: call from `spawn_blocking`.
    pub fn write<T, E>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T, E>) -> Result<T, E>
    where
        E: From<MetaError>,
    {
        self.write_with(Durability::Immediate, f)
    }

    /// Like [`Metadata::write`] but without fsync: for state whose loss in a crash only
    /// costs a client a retry (a just-opened upload session), never acknowledged data.
    pub fn write_lazy<T, E>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<MetaError>,
    {
        self.write_with(Durability::None, f)
    }

    fn write_with<T, E>(
        &self,
        durability: Durability,
        f: impl FnOnce(&WriteTransaction) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<MetaError>,
    {
        let mut tx = self.db.begin_write().map_err(MetaError::from)?;
        tx.set_durability(durability)
            .map_err(|e| MetaError::Schema(e.to_string()))?;
        let out = f(&tx)?;
        tx.commit().map_err(MetaError::from)?;
        Ok(out)
    }

    /// A write transaction committed with `durability`, for the storage interface's
    /// backend, which runs and commits it itself.
    pub(crate) fn begin_write(&self, durability: Durability) -> MetaResult<WriteTransaction> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(durability)
            .map_err(|e| MetaError::Schema(e.to_string()))?;
        Ok(tx)
    }

    /// A consistent read snapshot. Cheap: reads never block writers.
    pub fn read(&self) -> MetaResult<ReadTransaction> {
        Ok(self.db.begin_read()?)
    }
}

pub use super::store::now_millis;

/// Encodes a record for storage.
pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("metadata records always serialize")
}

/// Decodes a stored record.
pub fn decode<T: serde::de::DeserializeOwned>(table: &'static str, bytes: &[u8]) -> MetaResult<T> {
    serde_json::from_slice(bytes).map_err(|source| MetaError::Decode { table, source })
}

/// A table of records stored by name, as most components keep theirs.
pub type NamedRecords = redb::TableDefinition<'static, &'static str, &'static [u8]>;

/// The record named `name` in `table` (`label` names the table in decode errors).
pub fn get_named<T: serde::de::DeserializeOwned>(
    tx: &impl Reader,
    table: NamedRecords,
    label: &'static str,
    name: &str,
) -> MetaResult<Option<T>> {
    use redb::ReadableTable as _;
    match tx.open(table)?.get(name)? {
        Some(v) => Ok(Some(decode(label, v.value())?)),
        None => Ok(None),
    }
}

/// Every record of `table` with its name, in name order.
pub fn list_named<T: serde::de::DeserializeOwned>(
    tx: &impl Reader,
    table: NamedRecords,
    label: &'static str,
) -> MetaResult<Vec<(String, T)>> {
    use redb::ReadableTable as _;
    let mut out = Vec::new();
    for entry in tx.open(table)?.iter()? {
        let (k, v) = entry?;
        out.push((k.value().to_owned(), decode(label, v.value())?));
    }
    Ok(out)
}

/// Read access shared by read and write transactions, so that the checks a write makes
/// (is this blob linked?) use the same code as plain reads.
pub trait Reader {
    /// The table handle this transaction kind opens.
    type Table<'a, K: redb::Key + 'static, V: redb::Value + 'static>: redb::ReadableTable<K, V>
    where
        Self: 'a;

    /// Opens `def` for reading.
    fn open<'a, K: redb::Key + 'static, V: redb::Value + 'static>(
        &'a self,
        def: redb::TableDefinition<K, V>,
    ) -> MetaResult<Self::Table<'a, K, V>>;
}

impl Reader for ReadTransaction {
    type Table<'a, K: redb::Key + 'static, V: redb::Value + 'static> = redb::ReadOnlyTable<K, V>;

    fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        def: redb::TableDefinition<K, V>,
    ) -> MetaResult<redb::ReadOnlyTable<K, V>> {
        Ok(self.open_table(def)?)
    }
}

impl Reader for WriteTransaction {
    type Table<'a, K: redb::Key + 'static, V: redb::Value + 'static> = redb::Table<'a, K, V>;

    fn open<'a, K: redb::Key + 'static, V: redb::Value + 'static>(
        &'a self,
        def: redb::TableDefinition<K, V>,
    ) -> MetaResult<redb::Table<'a, K, V>> {
        Ok(self.open_table(def)?)
    }
}

/// The smallest string greater than every string starting with `prefix` followed by a
/// separator-free suffix: used as the exclusive end of a prefix range scan.
pub const KEY_END: &str = "\u{10FFFF}";
