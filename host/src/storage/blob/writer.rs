//! The upload pipeline: request body frames → sha digest + staging file, off the async
//! workers.
//!
//! The async side only moves `Bytes` handles into a bounded channel; a blocking thread
//! hashes and writes them. Memory per upload is therefore bounded by the channel depth
//! times the frame size (a few MiB at most), whatever the blob's size.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::BlobStore;
use crate::digest::Hasher;

/// Frames in flight between the network and the disk for one upload. hyper's frames are
/// at most a few hundred KiB, so this bounds an upload's buffered data to a few MiB.
const PIPELINE_DEPTH: usize = 8;

/// Bytes written between two reports to an upload's follower: each report flushes the
/// write buffer so the follower can read what it was told about.
const REPORT_EVERY: u64 = 256 * 1024;

/// Told the upload's length each time more of it is readable in the staging file.
pub type Reporter = Box<dyn Fn(u64) + Send>;

/// Why an append did not complete. In every case nothing past the previous offset counts.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The client's body ended abnormally (disconnect, malformed chunked encoding).
    #[error("request body was interrupted: {0}")]
    Body(String),
    /// The upload would exceed the configured maximum blob size.
    #[error("upload exceeds the maximum blob size of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// Storage failed.
    #[error("storage error: {0}")]
    Io(#[from] io::Error),
}

/// The state of an upload after a successful append.
#[derive(Debug)]
pub struct Appended {
    /// Total bytes in the staging file, all durable.
    pub len: u64,
    /// Digest state over those bytes.
    pub hasher: Hasher,
}

enum Frame {
    Data(Bytes),
    End,
}

/// Appends `body` to upload `id` at `offset`, continuing `hasher`, and makes the result
/// durable before returning. `max_len` bounds the upload's total size; `report`, when
/// given, hears the readable length as the upload grows.
pub async fn append<S, E>(
    store: Arc<dyn BlobStore>,
    id: String,
    offset: u64,
    mut hasher: Hasher,
    body: S,
    max_len: Option<u64>,
    report: Option<Reporter>,
) -> Result<Appended, AppendError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let (tx, mut rx) = mpsc::channel::<Frame>(PIPELINE_DEPTH);
    let disk = tokio::task::spawn_blocking(move || -> io::Result<Option<Appended>> {
        let mut file = store.open_staging(&id, offset)?;
        let mut len = offset;
        let mut reported = offset;
        while let Some(frame) = rx.blocking_recv() {
            match frame {
                Frame::Data(bytes) => {
                    hasher.update(&bytes);
                    file.write_all(&bytes)?;
                    len += bytes.len() as u64;
                    if let Some(report) = &report
                        && len - reported >= REPORT_EVERY
                    {
                        file.flush()?;
                        report(len);
                        reported = len;
                    }
                }
                Frame::End => {
                    file.sync()?;
                    if let Some(report) = &report {
                        report(len);
                    }
                    return Ok(Some(Appended { len, hasher }));
                }
            }
        }
        // The sender went away without End: the body failed; nothing is acknowledged.
        Ok(None)
    });

    let mut body = std::pin::pin!(body);
    let mut received = offset;
    let mut failure = None;
    while let Some(item) = body.next().await {
        match item {
            Ok(bytes) => {
                received += bytes.len() as u64;
                if let Some(limit) = max_len
                    && received > limit
                {
                    failure = Some(AppendError::TooLarge { limit });
                    break;
                }
                if tx.send(Frame::Data(bytes)).await.is_err() {
                    break; // the disk side failed; its error is reported below
                }
            }
            Err(e) => {
                failure = Some(AppendError::Body(e.to_string()));
                break;
            }
        }
    }
    if failure.is_none() {
        let _ = tx.send(Frame::End).await;
    }
    drop(tx);
    let written = disk
        .await
        .map_err(|e| io::Error::other(format!("upload writer panicked: {e}")))??;
    if let Some(failure) = failure {
        return Err(failure);
    }
    written.ok_or_else(|| AppendError::Io(io::Error::other("upload writer stopped early")))
}
