//! The filesystem [`BlobStore`]: one file per blob under `blobs/`, uploads staged under
//! `uploads/`, with fsync of file and directory around every rename so that a crash never
//! leaves a blob whose content does not match its name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{BlobStore, StagingFile};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::storage::paths::DataPaths;

/// Buffer between the upload pipeline and `write(2)`: large enough that a 1 GiB upload
/// costs a few thousand syscalls, small enough to be irrelevant per session.
const STAGING_WRITE_BUFFER: usize = 256 * 1024;

/// How much an upload writes between background writebacks. Without them the kernel
/// starts writing a large upload only at the final fsync, so a 1 GiB push would first
/// receive everything and then wait for the whole disk write; with them the disk works
/// while the network does, and the final fsync waits only for the tail.
const WRITEBACK_EVERY: u64 = 16 * 1024 * 1024;

/// Blobs in a local directory tree (see [`crate::storage::paths`]).
#[derive(Debug)]
pub struct FsBlobStore {
    paths: DataPaths,
}

impl FsBlobStore {
    /// Opens (creating if needed) the blob area of a data directory.
    pub fn open(paths: DataPaths) -> io::Result<FsBlobStore> {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = paths.blob_algorithm_dir(algorithm);
            for i in 0..=255u8 {
                fs::create_dir_all(dir.join(format!("{i:02x}")))?;
            }
        }
        fs::create_dir_all(paths.uploads_dir())?;
        // A private copy cut short by a crash (see `break_shared_link`): the staging file
        // it was copied from is still whole.
        for entry in fs::read_dir(paths.uploads_dir())? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".unshared"))
            {
                fs::remove_file(entry.path())?;
            }
        }
        fs::create_dir_all(paths.quarantine_dir())?;
        sync_dir(paths.root())?;
        Ok(FsBlobStore { paths })
    }
}

/// fsyncs a directory, making renames and creations inside it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` durably and atomically: a temporary file, fsync'd, renamed into
/// place, and the directory fsync'd. `private` makes the file 0600 (keys).
pub fn write_file_durably(path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().expect("a file path has a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Puts `bytes` at `path` unless a file is there already, durably, and returns what is at
/// `path` afterwards: these bytes, or the file another process put there first. For keys
/// that several nodes sharing a data directory may create at the same moment: each
/// writes its own temporary file and links it into place, which only one link can do, so
/// every node ends up with the same key.
pub fn create_file_once_durably(path: &Path, bytes: &[u8], private: bool) -> io::Result<Vec<u8>> {
    use std::io::Write as _;
    let dir = path.parent().expect("a file path has a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if private {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(bytes.to_vec())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => std::fs::read(path),
        Err(e) => Err(e),
    }
}

struct FsStagingFile {
    writer: BufWriter<File>,
    /// Bytes written since the last background writeback was started.
    unflushed: u64,
    /// Set while a background writeback runs, so at most one is in flight per upload.
    writeback_running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Set when this open created the file: its directory entry must be made durable too.
    new_entry_in: Option<std::path::PathBuf>,
}

impl FsStagingFile {
    /// Starts an fdatasync on another thread unless one is already running. Its result
    /// does not matter: durability is decided by the final [`StagingFile::sync`].
    fn start_writeback(&mut self) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        if self.writeback_running.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.writer.flush()?;
        let file = self.writer.get_ref().try_clone()?;
        let running = self.writeback_running.clone();
        std::thread::spawn(move || {
            let _ = file.sync_data();
            running.store(false, Ordering::Release);
        });
        self.unflushed = 0;
        Ok(())
    }
}

impl Write for FsStagingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.writer.write(buf)?;
        self.unflushed += n as u64;
        if self.unflushed >= WRITEBACK_EVERY {
            self.start_writeback()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl StagingFile for FsStagingFile {
    fn sync(&mut self) -> io::Result<()> {
        self.writer.flush()?;
        self.writer.get_ref().sync_data()?;
        if let Some(dir) = self.new_entry_in.take() {
            sync_dir(&dir)?;
        }
        Ok(())
    }
}

fn staging_id_is_safe(id: &str) -> bool {
    // Ids are server-generated UUIDs; anything else must not become a path.
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn bad_id(id: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("invalid upload id {id:?}"),
    )
}

impl BlobStore for FsBlobStore {
    fn stat(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match fs::metadata(self.paths.blob(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open(&self, digest: &Digest, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let mut file = File::open(self.paths.blob(digest))?;
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))?;
        }
        Ok(Box::new(file))
    }

    fn open_staging(&self, id: &str, offset: u64) -> io::Result<Box<dyn StagingFile>> {
        if !staging_id_is_safe(id) {
            return Err(bad_id(id));
        }
        let path = self.paths.upload(id);
        let existed = path.exists();
        if existed {
            break_shared_link(&path, &self.paths.uploads_dir())?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        let len = file.metadata()?.len();
        if len < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("staging file of upload {id} has {len} bytes, {offset} were acknowledged"),
            ));
        }
        if len > offset {
            file.set_len(offset)?;
        }
        file.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(FsStagingFile {
            writer: BufWriter::with_capacity(STAGING_WRITE_BUFFER, file),
            unflushed: 0,
            writeback_running: Default::default(),
            new_entry_in: (!existed).then(|| self.paths.uploads_dir()),
        }))
    }

    fn hash_staging(&self, id: &str, len: u64, algorithm: Algorithm) -> io::Result<Hasher> {
        if !staging_id_is_safe(id) {
            return Err(bad_id(id));
        }
        let file = File::open(self.paths.upload(id))?;
        hash_reader(file.take(len), algorithm)
    }

    fn publish_staging(&self, id: &str, digest: &Digest) -> io::Result<()> {
        if !staging_id_is_safe(id) {
            return Err(bad_id(id));
        }
        let staged = self.paths.upload(id);
        let target = self.paths.blob(digest);
        // The staging file's data was fsync'd when its last chunk was acknowledged. A hard
        // link, not a rename: the staging file must outlive this step, so that a crash
        // before the metadata commit finds the session's acknowledged bytes still there.
        match fs::hard_link(&staged, &target) {
            Ok(()) => sync_dir(&self.paths.blob_fanout_dir(digest)),
            // Identical content is already durable under this name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn remove_staging(&self, id: &str) -> io::Result<()> {
        if !staging_id_is_safe(id) {
            return Err(bad_id(id));
        }
        match fs::remove_file(self.paths.upload(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn read_staging(&self, id: &str) -> io::Result<Box<dyn Read + Send>> {
        if !staging_id_is_safe(id) {
            return Err(bad_id(id));
        }
        Ok(Box::new(File::open(self.paths.upload(id))?))
    }

    fn list_staging(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(self.paths.uploads_dir())? {
            if let Some(name) = entry?.file_name().to_str()
                && staging_id_is_safe(name)
            {
                ids.push(name.to_owned());
            }
        }
        Ok(ids)
    }

    fn staging_modified(&self, id: &str) -> io::Result<std::time::SystemTime> {
        if !staging_id_is_safe(id) {
            return Err(bad_id(id));
        }
        fs::metadata(self.paths.upload(id))?.modified()
    }

    fn list(&self) -> io::Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            for fanout in fs::read_dir(self.paths.blob_algorithm_dir(algorithm))? {
                for entry in fs::read_dir(fanout?.path())? {
                    let entry = entry?;
                    let name = entry.file_name();
                    let Some(hex) = name.to_str() else { continue };
                    if let Ok(digest) = format!("{}:{hex}", algorithm.name()).parse::<Digest>() {
                        out.push((digest, entry.metadata()?.len()));
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn quarantine(&self, digest: &Digest) -> io::Result<String> {
        let target = self.paths.quarantine_dir().join(format!(
            "{}-{}",
            digest.algorithm().name(),
            digest.hex()
        ));
        fs::rename(self.paths.blob(digest), &target)?;
        sync_dir(&self.paths.blob_fanout_dir(digest))?;
        sync_dir(&self.paths.quarantine_dir())?;
        Ok(target.display().to_string())
    }
}

/// A staging file that was published under its digest (see
/// [`BlobStore::publish_staging`]) shares its inode with the blob until the upload's
/// metadata commit removes it. Should a crash fall between the two and the client then
/// resume the session, writing to that inode would change a blob under its name; so the
/// staging file gets a private copy first.
fn break_shared_link(path: &Path, dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    if fs::metadata(path)?.nlink() <= 1 {
        return Ok(());
    }
    let copy = path.with_extension("unshared");
    fs::copy(path, &copy)?;
    File::open(&copy)?.sync_all()?;
    fs::rename(&copy, path)?;
    sync_dir(dir)
}

/// Hashes everything `reader` yields.
pub fn hash_reader(mut reader: impl Read, algorithm: Algorithm) -> io::Result<Hasher> {
    let mut hasher = algorithm.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buf[..n]);
    }
}
