//! Blob content: the [`BlobStore`] interface, its filesystem backend, the streaming upload
//! writer, and the repository-scoped view that enforces links.

pub mod fs;
pub mod writer;

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::digest::{Algorithm, Digest, Hasher};

/// Bytes per read when streaming a blob out.
const READ_CHUNK: usize = 256 * 1024;

/// Streams `len` bytes of `reader` from a blocking thread, a few chunks ahead of the
/// consumer, so memory per reader stays constant whatever the blob's size. A read error
/// ends the stream with that error.
pub fn stream_reader(
    mut reader: Box<dyn Read + Send>,
    len: u64,
) -> ReceiverStream<io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut remaining = len;
        while remaining > 0 {
            let n = READ_CHUNK.min(remaining as usize);
            let mut buf = BytesMut::zeroed(n);
            let result = reader.read_exact(&mut buf).map(|()| buf.freeze());
            let failed = result.is_err();
            if let Err(e) = &result {
                tracing::error!(error = %e, "reading a blob failed mid-stream");
            }
            if tx.blocking_send(result).is_err() || failed {
                return; // the consumer went away, or the error was passed on
            }
            remaining -= n as u64;
        }
    });
    ReceiverStream::new(rx)
}

/// A staging file an upload appends to. Data is durable only after [`StagingFile::sync`].
pub trait StagingFile: Write + Send {
    /// Makes everything written so far durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// Content-addressed blob storage.
///
/// Methods block (filesystem or network I/O): call them from `spawn_blocking` or a
/// dedicated thread, never directly on an async worker.
pub trait BlobStore: Send + Sync + 'static {
    /// The size of the blob, or `None` if it is not stored.
    fn stat(&self, digest: &Digest) -> io::Result<Option<u64>>;

    /// A reader positioned at `offset` of the blob.
    fn open(&self, digest: &Digest, offset: u64) -> io::Result<Box<dyn Read + Send>>;

    /// Opens upload `id`'s staging file for appending at `offset`, creating it if needed
    /// and discarding anything past `offset` (bytes that were never acknowledged).
    fn open_staging(&self, id: &str, offset: u64) -> io::Result<Box<dyn StagingFile>>;

    /// Hashes the first `len` bytes of upload `id` (resuming after a restart).
    fn hash_staging(&self, id: &str, len: u64, algorithm: Algorithm) -> io::Result<Hasher>;

    /// Makes upload `id`'s content durable under `digest`, leaving the staging file in
    /// place: the caller removes it with [`BlobStore::remove_staging`] once the metadata
    /// that ends the upload has committed. Until then a crash leaves the session whole and
    /// resumable (and at worst an identical, unreferenced blob). If the blob exists
    /// already nothing is written: content addressing makes both copies identical.
    fn publish_staging(&self, id: &str, digest: &Digest) -> io::Result<()>;

    /// Discards upload `id`'s staging file (missing is not an error).
    fn remove_staging(&self, id: &str) -> io::Result<()>;

    /// A reader at the start of a staging file, for following an upload while it is
    /// written (see `registry::arrivals`). It sees what the writer has flushed.
    fn read_staging(&self, id: &str) -> io::Result<Box<dyn Read + Send>>;

    /// Ids of every staging file present.
    fn list_staging(&self) -> io::Result<Vec<String>>;

    /// When staging file `id` was last written.
    fn staging_modified(&self, id: &str) -> io::Result<std::time::SystemTime>;

    /// Every stored blob with its size.
    fn list(&self) -> io::Result<Vec<(Digest, u64)>>;

    /// Moves a blob aside (fsck repair), returning where it went.
    fn quarantine(&self, digest: &Digest) -> io::Result<String>;
}
