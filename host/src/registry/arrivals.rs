//! Content arriving in this registry: wakes whoever waits for a blob or manifest to land,
//! and lets them read a blob while its upload is still being written, so a tree hop
//! forwards each byte as it arrives rather than after the whole blob (cut-through).
//!
//! Bytes read before an upload ends are not verified yet. A follower therefore gets the
//! last byte only once the upload has committed (its digest checked here) and an error if
//! it failed: no receiver further down ever completes a blob this registry refused.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::{Notify, futures::Notified, watch};

use crate::storage::blob::BlobStore;

/// Bytes read from a staging file per chunk handed to a follower.
const FOLLOW_CHUNK: u64 = 256 * 1024;

/// How far an upload has come, as its followers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// This many bytes are in the staging file and readable.
    Writing(u64),
    /// The upload was verified and committed with this many bytes.
    Committed(u64),
    /// The upload failed or was abandoned; its bytes will never be a blob.
    Failed,
}

struct InFlight {
    staging: String,
    progress: watch::Sender<Progress>,
}

/// The arrivals board of one registry.
#[derive(Default)]
pub struct Arrivals {
    landed: Notify,
    /// By repository and digest: a follower reads only what arrives in the repository it
    /// forwards from.
    uploads: Mutex<HashMap<(String, String), Arc<InFlight>>>,
}

/// An upload that announced the digest it will be committed as, registered on the board
/// until it commits or is dropped (dropping it marks it failed).
pub struct Upload {
    arrivals: Arc<Arrivals>,
    key: (String, String),
    entry: Arc<InFlight>,
    ended: bool,
}

/// What a follower needs to read an upload in progress.
pub struct Following {
    /// The upload's staging file.
    pub staging: String,
    progress: watch::Receiver<Progress>,
}

impl Arrivals {
    /// Wakes everyone waiting in [`Arrivals::notified`]: a blob was linked, a manifest
    /// stored, or an upload announced itself.
    pub fn landed(&self) {
        self.landed.notify_waiters();
    }

    /// Resolves at the next [`Arrivals::landed`]; `enable` it before looking, so nothing
    /// that lands in between is missed.
    pub fn notified(&self) -> Notified<'_> {
        self.landed.notified()
    }

    /// Registers an upload of `digest` into `repository` writing to staging file
    /// `staging`, which already holds `written` bytes. When that blob is already arriving
    /// there through another upload, followers keep following that one.
    pub fn begin(
        self: &Arc<Self>,
        repository: &str,
        digest: &str,
        staging: &str,
        written: u64,
    ) -> Upload {
        let key = (repository.to_owned(), digest.to_owned());
        let entry = Arc::new(InFlight {
            staging: staging.to_owned(),
            progress: watch::Sender::new(Progress::Writing(written)),
        });
        let fresh = {
            let mut uploads = self.uploads.lock().expect("arrivals lock");
            let fresh = !uploads.contains_key(&key);
            if fresh {
                uploads.insert(key.clone(), entry.clone());
            }
            fresh
        };
        if fresh {
            self.landed();
        }
        Upload {
            arrivals: self.clone(),
            key,
            entry,
            ended: false,
        }
    }

    /// The upload of `digest` into `repository` in progress, if there is one.
    pub fn follow(&self, repository: &str, digest: &str) -> Option<Following> {
        let uploads = self.uploads.lock().expect("arrivals lock");
        let key = (repository.to_owned(), digest.to_owned());
        uploads.get(&key).map(|entry| Following {
            staging: entry.staging.clone(),
            progress: entry.progress.subscribe(),
        })
    }

    fn end(&self, key: &(String, String), entry: &Arc<InFlight>, outcome: Progress) {
        entry.progress.send_replace(outcome);
        let mut uploads = self.uploads.lock().expect("arrivals lock");
        if uploads.get(key).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            uploads.remove(key);
        }
    }
}

impl Upload {
    /// A callback for the upload writer: `len` bytes are now readable in the staging file.
    pub fn reporter(&self) -> Box<dyn Fn(u64) + Send> {
        let entry = self.entry.clone();
        Box::new(move |len| {
            entry.progress.send_replace(Progress::Writing(len));
        })
    }

    /// The upload was verified and committed with `len` bytes.
    pub fn committed(mut self, len: u64) {
        self.ended = true;
        self.arrivals
            .end(&self.key, &self.entry, Progress::Committed(len));
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.ended {
            self.arrivals.end(&self.key, &self.entry, Progress::Failed);
        }
    }
}

/// Streams the `size` bytes of an upload being followed, from `file` (its staging file,
/// opened at offset 0), as they are written. Everything but the last byte flows while the
/// upload is being written; the last byte only once it has committed with exactly `size`
/// bytes. Memory stays at one chunk whatever the blob's size.
pub fn stream(
    following: Following,
    file: Box<dyn Read + Send>,
    size: u64,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let follower = Follower {
        progress: following.progress,
        file: Some(file),
        position: 0,
        size,
    };
    futures::stream::unfold(follower, |mut follower| async move {
        if follower.position >= follower.size {
            return None;
        }
        let chunk = follower.next_chunk().await;
        if chunk.is_err() {
            follower.position = follower.size; // an error ends the stream
        }
        Some((chunk, follower))
    })
}

/// The reading side of [`stream`].
struct Follower {
    progress: watch::Receiver<Progress>,
    /// Lent to the blocking thread during each read.
    file: Option<Box<dyn Read + Send>>,
    position: u64,
    size: u64,
}

impl Follower {
    /// Waits until bytes past `position` may be handed on; returns how far.
    async fn readable(&mut self) -> io::Result<u64> {
        loop {
            let now = *self.progress.borrow_and_update();
            let readable = match now {
                Progress::Failed => {
                    return Err(io::Error::other("the upload it is forwarded from failed"));
                }
                Progress::Committed(len) if len != self.size => {
                    return Err(io::Error::other(format!(
                        "the upload it is forwarded from committed {len} bytes, not {}",
                        self.size
                    )));
                }
                Progress::Committed(len) => len,
                Progress::Writing(len) => len.min(self.size - 1),
            };
            if readable > self.position {
                return Ok(readable);
            }
            if self.progress.changed().await.is_err() {
                // Unreachable while `Upload` always reports an outcome before it goes.
                return Err(io::Error::other(
                    "the upload it is forwarded from went away",
                ));
            }
        }
    }

    async fn next_chunk(&mut self) -> io::Result<Bytes> {
        let readable = self.readable().await?;
        let n = (readable - self.position).min(FOLLOW_CHUNK) as usize;
        let mut file = self.file.take().expect("the file is back after each read");
        let (file, chunk) = tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(n);
            let result = file.read_exact(&mut buf).map(|()| buf.freeze());
            (file, result)
        })
        .await
        .map_err(|e| io::Error::other(format!("reading an upload failed: {e}")))?;
        self.file = Some(file);
        self.position += n as u64;
        chunk
    }
}

/// Opens the staging file of an upload being followed, from another thread.
pub async fn open(
    store: Arc<dyn BlobStore>,
    following: &Following,
) -> io::Result<Box<dyn Read + Send>> {
    let staging = following.staging.clone();
    tokio::task::spawn_blocking(move || store.read_staging(&staging))
        .await
        .map_err(|e| io::Error::other(format!("opening an upload failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// A reader over a file another handle appends to, as the staging file is.
    fn pipe_file() -> (std::fs::File, Box<dyn Read + Send>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staging");
        let writer = std::fs::File::create(&path).unwrap();
        let reader = std::fs::File::open(&path).unwrap();
        (writer, Box::new(reader), dir)
    }

    #[tokio::test]
    async fn a_follower_gets_bytes_as_written_and_the_last_only_after_commit() {
        use std::io::Write;
        let arrivals = Arc::new(Arrivals::default());
        let (mut writer, reader, _dir) = pipe_file();
        let upload = arrivals.begin("team/app", "sha256:x", "id", 0);
        let report = upload.reporter();
        let following = arrivals.follow("team/app", "sha256:x").unwrap();
        let mut forwarded = Box::pin(stream(following, reader, 10));

        writer.write_all(b"01234").unwrap();
        report(5);
        assert_eq!(&forwarded.next().await.unwrap().unwrap()[..], b"01234");
        writer.write_all(b"56789").unwrap();
        report(10);
        // Nine bytes may flow before the upload is verified; the tenth may not.
        assert_eq!(&forwarded.next().await.unwrap().unwrap()[..], b"5678");
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), forwarded.next());
        assert!(pending.await.is_err(), "the last byte went out unverified");
        upload.committed(10);
        assert_eq!(&forwarded.next().await.unwrap().unwrap()[..], b"9");
        assert!(forwarded.next().await.is_none());
        assert!(arrivals.follow("team/app", "sha256:x").is_none());
    }

    #[tokio::test]
    async fn a_follower_of_a_failed_upload_gets_an_error_not_the_whole_blob() {
        use std::io::Write;
        let arrivals = Arc::new(Arrivals::default());
        let (mut writer, reader, _dir) = pipe_file();
        let upload = arrivals.begin("team/app", "sha256:y", "id", 0);
        let following = arrivals.follow("team/app", "sha256:y").unwrap();
        let mut forwarded = Box::pin(stream(following, reader, 4));
        writer.write_all(b"abcd").unwrap();
        upload.reporter()(4);
        assert_eq!(&forwarded.next().await.unwrap().unwrap()[..], b"abc");
        drop(upload); // the digest did not match, or the client went away
        assert!(forwarded.next().await.unwrap().is_err());
        assert!(forwarded.next().await.is_none());
    }

    #[tokio::test]
    async fn a_second_upload_of_the_same_blob_does_not_replace_the_first_nor_leak_to_another_repository()
     {
        let arrivals = Arc::new(Arrivals::default());
        let first = arrivals.begin("team/app", "sha256:z", "one", 0);
        let second = arrivals.begin("team/app", "sha256:z", "two", 0);
        assert_eq!(
            arrivals.follow("team/app", "sha256:z").unwrap().staging,
            "one"
        );
        drop(second);
        assert_eq!(
            arrivals.follow("team/app", "sha256:z").unwrap().staging,
            "one"
        );
        assert!(
            arrivals.follow("other/app", "sha256:z").is_none(),
            "an upload into team/app was followed from other/app"
        );
        first.committed(0);
        assert!(arrivals.follow("team/app", "sha256:z").is_none());
    }
}
