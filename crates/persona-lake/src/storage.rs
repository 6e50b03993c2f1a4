//! Where the lake's files live: a folder of this machine (the default, `<data dir>/lake`),
//! or a bucket of an object store (S3, Google Cloud Storage, Azure Blob Storage, or any
//! S3-compatible server) through `object_store`, in the same layout.
//!
//! Files are named by their path inside the lake, with `/` between parts
//! (`events/date=2024-05-01/hour=10/part-….parquet`). A file is written locally first
//! ([`StagedFile`]): in its folder under a hidden name for a local lake, in
//! `<data dir>/lake-staging` for a remote one. Publishing renames it into place (and
//! syncs the folder), or uploads it: an object store's PUT is atomic, so a file appears
//! whole or not at all either way, which is all the lake's crash safety needs.
//! Whoever publishes while queries wait (compaction, snapshots) uploads first, to
//! `_uploads/` outside every table, and publishes by a copy inside the store.
//!
//! The lake's callers are threads that may block (the lake writer, jobs), sometimes
//! called from the server's async start; object store calls are run to completion on the
//! runtime the lake was opened on, from a thread of their own when the caller is itself a
//! runtime's worker.

use std::fmt;
use std::fs::{self, File};
use std::future::Future;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::runtime::Handle;
use url::Url;

use crate::config::RemoteLake;

/// Files up to this size are uploaded in one PUT; larger ones in parts of this size.
const UPLOAD_PART: usize = 16 << 20;

/// The folder of a remote lake, outside every table, where files uploaded early wait to
/// be put in place.
const UPLOADS: &str = "_uploads";

/// The lake's files, on local disk or in an object store. Clones share the same lake.
#[derive(Clone)]
pub struct LakeStorage(Arc<Root>);

enum Root {
    Local(PathBuf),
    Remote(Remote),
}

struct Remote {
    store: Arc<dyn ObjectStore>,
    /// Where the lake is in the store, and how the store was built.
    lake: RemoteLake,
    /// Where files are written before they are uploaded.
    staging: PathBuf,
    runtime: Handle,
}

/// An object store, with the URL of its bucket (`s3://bucket/`), as a query engine
/// registers it.
pub type BucketStore = (Url, Arc<dyn ObjectStore>);

/// A file of the lake opened for reading.
pub(crate) enum Fetched {
    Local(File),
    Remote(Bytes),
}

/// A file of the lake as listed: the folder it is in and its name, both inside the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub folder: String,
    pub name: String,
    pub bytes: u64,
}

impl fmt::Debug for LakeStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LakeStorage({})", self.location())
    }
}

impl LakeStorage {
    /// A lake in a local folder.
    pub fn local(dir: PathBuf) -> LakeStorage {
        LakeStorage(Arc::new(Root::Local(dir)))
    }

    /// The lake `remote` describes (from `[lake] url`), or the local folder `default_dir`
    /// when there is none. A remote lake stages its files in `staging_dir` (emptied here)
    /// and needs a tokio runtime: it runs its calls on the current one.
    pub fn open(
        remote: Option<&RemoteLake>,
        default_dir: PathBuf,
        staging_dir: PathBuf,
    ) -> io::Result<LakeStorage> {
        let Some(remote) = remote else {
            return Ok(LakeStorage::local(default_dir));
        };
        let runtime = Handle::try_current()
            .ok()
            // A current-thread runtime runs nothing while its thread waits on a lake call.
            .filter(|r| r.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            .ok_or_else(|| {
                io::Error::other(
                    "a lake in an object store is opened on a multi-thread tokio runtime",
                )
            })?;
        let lake = Self::remote(remote.clone(), staging_dir, runtime)?;
        lake.remove_unpublished();
        Ok(lake)
    }

    pub(crate) fn remote(
        remote: RemoteLake,
        staging: PathBuf,
        runtime: Handle,
    ) -> io::Result<LakeStorage> {
        // What an earlier run left unsent: its files are written again from the log.
        match fs::remove_dir_all(&staging) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        persona_core::durable::create_dir_all(&staging)?;
        Ok(LakeStorage(Arc::new(Root::Remote(Remote {
            store: remote.store.clone(),
            lake: remote,
            staging,
            runtime,
        }))))
    }

    /// Removes the uploads a stopped run left unpublished under [`UPLOADS`]. Best effort:
    /// a bucket out of reach now is tried again at the next start, and the leftovers are
    /// outside every table meanwhile.
    fn remove_unpublished(&self) {
        let removed = self.list(UPLOADS).and_then(|left| {
            for file in &left {
                self.remove(&format!("{}/{}", file.folder, file.name))?;
            }
            Ok(left.len())
        });
        match removed {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                removed = n,
                "removed uploads an earlier run left unpublished"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot remove the uploads an earlier run left unpublished")
            }
        }
    }

    /// Whether the lake is a local folder.
    pub(crate) fn is_local(&self) -> bool {
        matches!(&*self.0, Root::Local(_))
    }

    /// Where the lake is, for people: a folder or a URL.
    pub fn location(&self) -> String {
        match &*self.0 {
            Root::Local(dir) => dir.display().to_string(),
            Root::Remote(remote) => remote.lake.url.to_string(),
        }
    }

    /// Where a file or folder of the lake is, for people.
    pub fn describe(&self, inside: &str) -> String {
        match &*self.0 {
            Root::Local(dir) => dir.join(inside).display().to_string(),
            Root::Remote(remote) => format!("{}{inside}", remote.lake.url),
        }
    }

    /// The URL a query engine lists a table's files under (ending in `/`), with the
    /// object store it must be given for it when the lake is remote. A local table's
    /// folder is made if missing, so an empty table can be queried.
    pub fn table_url(&self, table: &str) -> io::Result<(String, Option<BucketStore>)> {
        match &*self.0 {
            Root::Local(dir) => {
                let folder = std::path::absolute(dir.join(table))?;
                persona_core::durable::create_dir_all(&folder)?;
                Ok((format!("file://{}/", folder.display()), None))
            }
            Root::Remote(remote) => {
                let mut bucket = remote.lake.url.clone();
                bucket.set_path("/");
                // A client of its own: the query runtime's connections then never serve
                // the writer's calls, which go on after that runtime has stopped.
                let store = remote
                    .lake
                    .rebuild()
                    .map_err(io::Error::other)?
                    .unwrap_or_else(|| remote.store.clone());
                Ok((
                    format!("{}{table}/", remote.lake.url),
                    Some((bucket, store)),
                ))
            }
        }
    }

    /// Every file under the lake folder `folder`, however deep, in no order. A folder
    /// not there yet has none.
    pub(crate) fn list(&self, folder: &str) -> io::Result<Vec<Listed>> {
        match &*self.0 {
            Root::Local(dir) => {
                let mut found = Vec::new();
                walk(&dir.join(folder), folder, &mut found)?;
                Ok(found)
            }
            Root::Remote(remote) => {
                let prefix = remote.path(folder);
                let listed: Vec<_> = remote.run(remote.store.list(Some(&prefix)).try_collect())?;
                let skip = remote.lake.prefix.parts().count();
                Ok(listed
                    .into_iter()
                    .filter_map(|meta| {
                        let parts: Vec<_> = meta.location.parts().skip(skip).collect();
                        let (name, folder) = parts.split_last()?;
                        Some(Listed {
                            folder: folder
                                .iter()
                                .map(|p| p.as_ref())
                                .collect::<Vec<_>>()
                                .join("/"),
                            name: name.as_ref().to_owned(),
                            bytes: meta.size,
                        })
                    })
                    .collect())
            }
        }
    }

    /// Whether the lake has a file at `inside`.
    pub fn exists(&self, inside: &str) -> io::Result<bool> {
        match &*self.0 {
            Root::Local(dir) => dir.join(inside).try_exists(),
            Root::Remote(remote) => match remote.run(remote.store.head(&remote.path(inside))) {
                Ok(_) => Ok(true),
                Err(e) if is_not_found(&e) => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// Removes the file at `inside` (and, locally, syncs its folder). Already gone is as
    /// good.
    pub(crate) fn remove(&self, inside: &str) -> io::Result<()> {
        match &*self.0 {
            Root::Local(dir) => {
                let path = dir.join(inside);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                match path.parent() {
                    Some(folder) => persona_core::durable::sync_dir(folder),
                    None => Ok(()),
                }
            }
            Root::Remote(remote) => match remote.run(remote.store.delete(&remote.path(inside))) {
                Err(e) if !is_not_found(&e) => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// Opens a file of the lake for reading: the local file, or the remote one's bytes
    /// (fetched whole).
    pub(crate) fn fetch(&self, inside: &str) -> io::Result<Fetched> {
        match &*self.0 {
            Root::Local(dir) => Ok(Fetched::Local(File::open(dir.join(inside))?)),
            Root::Remote(r) => {
                let path = r.path(inside);
                let bytes = r.run(async { r.store.get(&path).await?.bytes().await })?;
                Ok(Fetched::Remote(bytes))
            }
        }
    }

    /// Where a file to be published at `folder/name` is written first.
    pub(crate) fn staging_path(&self, folder: &str, name: &str) -> io::Result<PathBuf> {
        match &*self.0 {
            Root::Local(dir) => {
                let dir = dir.join(folder);
                persona_core::durable::create_dir_all(&dir)?;
                Ok(dir.join(format!(".{name}.tmp")))
            }
            // Flat, with the folder in the name: several staged files can share a name
            // (a flush writes the same name in every partition).
            Root::Remote(remote) => Ok(remote
                .staging
                .join(format!(".{}-{name}.tmp", folder.replace('/', "_")))),
        }
    }

    /// For a remote lake, uploads the written and synced file `staged` (then removes it)
    /// to a place outside every table, from which [`publish`](Self::publish) puts it in
    /// place by a copy inside the store: the slow part done before, so that a swap which
    /// queries wait for lasts no longer than the copy. Returns whether it did.
    pub(crate) fn upload_early(&self, staged: &Path, folder: &str, name: &str) -> io::Result<bool> {
        match &*self.0 {
            Root::Local(_) => Ok(false),
            Root::Remote(remote) => {
                remote.upload(staged, &remote.path(&format!("{UPLOADS}/{folder}/{name}")))?;
                fs::remove_file(staged)?;
                Ok(true)
            }
        }
    }

    /// Puts the written and synced file `staged` (or, once uploaded early, its upload) in
    /// place at `folder/name`, replacing a file of that name, and removes what it was put
    /// in place from.
    pub(crate) fn publish(
        &self,
        staged: &Path,
        uploaded: bool,
        folder: &str,
        name: &str,
    ) -> io::Result<()> {
        match &*self.0 {
            Root::Local(dir) => {
                let dir = dir.join(folder);
                fs::rename(staged, dir.join(name))?;
                persona_core::durable::sync_dir(&dir)
            }
            Root::Remote(remote) => {
                let target = remote.path(&format!("{folder}/{name}"));
                if uploaded {
                    let upload = remote.path(&format!("{UPLOADS}/{folder}/{name}"));
                    remote.run(remote.store.copy(&upload, &target))?;
                    // Left behind, it is outside every table; the next start removes it.
                    if let Err(e) = remote.run(remote.store.delete(&upload)) {
                        tracing::warn!(error = %e, "cannot remove an upload once published");
                    }
                    Ok(())
                } else {
                    remote.upload(staged, &target)?;
                    fs::remove_file(staged)
                }
            }
        }
    }
}

impl Remote {
    fn path(&self, inside: &str) -> ObjectPath {
        inside
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(self.lake.prefix.clone(), |path, part| path.join(part))
    }

    /// Runs an object store call to its end, naming the lake in its error.
    fn run<T: Send>(
        &self,
        call: impl Future<Output = object_store::Result<T>> + Send,
    ) -> io::Result<T> {
        let answer = if Handle::try_current().is_ok() {
            // On a runtime's worker, which must not block on its own runtime: a thread of
            // its own waits instead.
            std::thread::scope(|s| {
                s.spawn(|| self.runtime.block_on(call))
                    .join()
                    .unwrap_or_else(|_| panic!("an object store call panicked"))
            })
        } else {
            self.runtime.block_on(call)
        };
        answer.map_err(|e| io::Error::other(StoreError(self.lake.url.to_string(), e)))
    }

    /// Sends a local file to `to`: in one PUT when small, in parts when large.
    fn upload(&self, file: &Path, to: &ObjectPath) -> io::Result<()> {
        let size = fs::metadata(file)?.len();
        if size <= UPLOAD_PART as u64 {
            let bytes = fs::read(file)?;
            return self
                .run(self.store.put(to, PutPayload::from(bytes)))
                .map(drop);
        }
        let mut source = File::open(file)?;
        // One call for the whole upload: the parts are sent by tasks of the runtime. The
        // file is read in between, on the waiting thread, which may block.
        self.run(async {
            let local = |e: io::Error| object_store::Error::Generic {
                store: "local staging file",
                source: Box::new(e),
            };
            let mut parts = WriteMultipart::new_with_chunk_size(
                self.store.put_multipart(to).await?,
                UPLOAD_PART,
            );
            let mut buffer = vec![0; UPLOAD_PART];
            let sent: object_store::Result<()> = async {
                loop {
                    let read = source.read(&mut buffer).map_err(local)?;
                    if read == 0 {
                        return Ok(());
                    }
                    parts.write(&buffer[..read]);
                    // A few parts in flight at most: the rest of the file waits on disk.
                    parts.wait_for_capacity(4).await?;
                }
            }
            .await;
            match sent {
                Ok(()) => parts.finish().await,
                Err(e) => {
                    // Parts left in the bucket are kept, and billed, until aborted.
                    let _ = parts.abort().await;
                    Err(e)
                }
            }
        })
        .map(drop)
    }
}

/// An object store's error, with the lake it came from.
#[derive(Debug)]
struct StoreError(String, object_store::Error);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lake {}: {}", self.0, self.1)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.1)
    }
}

fn is_not_found(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|e| e.downcast_ref::<StoreError>())
        .is_some_and(|e| matches!(e.1, object_store::Error::NotFound { .. }))
}

/// Adds every file under `dir` (the lake folder `inside`) to `found`.
fn walk(dir: &Path, inside: &str, found: &mut Vec<Listed>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        entries => entries?,
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &format!("{inside}/{name}"), found)?;
        } else if kind.is_file() {
            let bytes = match entry.metadata() {
                Ok(metadata) => metadata.len(),
                // Removed since the folder was read (a compaction's sources): not there.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            found.push(Listed {
                folder: inside.to_owned(),
                name,
                bytes,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::testing::TestLake;
    use super::*;

    #[test]
    fn a_file_larger_than_a_part_goes_up_in_parts_and_comes_back_whole() {
        let test = TestLake::in_memory();
        let staged = test.lake.staging_path("t/p=1", "big.bin").unwrap();
        // Two whole parts and a piece, each part's bytes distinct.
        let bytes: Vec<u8> = (0..2 * UPLOAD_PART + 1000)
            .map(|i| (i / UPLOAD_PART * 7 + i % 251) as u8)
            .collect();
        fs::write(&staged, &bytes).unwrap();
        test.lake
            .publish(&staged, false, "t/p=1", "big.bin")
            .unwrap();
        assert!(!staged.exists(), "the staged file is removed once uploaded");
        match test.lake.fetch("t/p=1/big.bin").unwrap() {
            Fetched::Remote(back) => assert!(back[..] == bytes[..], "the upload differs"),
            Fetched::Local(_) => panic!("a remote lake"),
        }
        assert_eq!(test.names("t/p=1"), vec!["big.bin".to_string()]);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Lakes for tests: a temporary folder, and `object_store`'s in-memory store standing
    //! in for a bucket (the same trait and semantics the S3 client has).

    use super::*;
    use crate::config::RemoteLake;

    pub(crate) struct TestLake {
        pub lake: LakeStorage,
        _dir: tempfile::TempDir,
        _runtime: Option<tokio::runtime::Runtime>,
    }

    impl fmt::Debug for TestLake {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.lake.fmt(f)
        }
    }

    impl TestLake {
        pub fn local() -> TestLake {
            let dir = tempfile::tempdir().unwrap();
            TestLake {
                lake: LakeStorage::local(dir.path().join("lake")),
                _dir: dir,
                _runtime: None,
            }
        }

        pub fn in_memory() -> TestLake {
            let dir = tempfile::tempdir().unwrap();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let store = Arc::new(object_store::memory::InMemory::new());
            let remote = RemoteLake::new(store, "memory:///bucket/lake").unwrap();
            TestLake {
                lake: LakeStorage::remote(
                    remote,
                    dir.path().join("staging"),
                    runtime.handle().clone(),
                )
                .unwrap(),
                _dir: dir,
                _runtime: Some(runtime),
            }
        }

        pub fn both() -> [TestLake; 2] {
            [TestLake::local(), TestLake::in_memory()]
        }

        /// Puts a file straight into the lake, as a crash may have left it.
        pub fn put(&self, inside: &str, bytes: &[u8]) {
            match &*self.lake.0 {
                Root::Local(dir) => {
                    let path = dir.join(inside);
                    fs::create_dir_all(path.parent().unwrap()).unwrap();
                    fs::write(path, bytes).unwrap();
                }
                Root::Remote(remote) => {
                    let payload = PutPayload::from(bytes.to_vec());
                    remote
                        .run(remote.store.put(&remote.path(inside), payload))
                        .unwrap();
                }
            }
        }

        /// The names of the files right in `folder`, sorted.
        pub fn names(&self, folder: &str) -> Vec<String> {
            let mut names: Vec<_> = self
                .lake
                .list(folder)
                .unwrap()
                .into_iter()
                .filter(|f| f.folder == folder)
                .map(|f| f.name)
                .collect();
            names.sort();
            names
        }
    }
}

#[cfg(test)]
pub(crate) mod flaky {
    //! An in-memory bucket that refuses writes and deletions on demand, as a bucket out of
    //! reach or full does, for the lake's failure paths.

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use futures::StreamExt;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
    };

    use super::*;

    #[derive(Debug, Default)]
    pub(crate) struct FlakyBucket {
        inner: InMemory,
        /// PUTs let through before they are refused; `usize::MAX` for all.
        puts_left: AtomicUsize,
        deletes_refused: AtomicBool,
        refused: AtomicUsize,
    }

    impl FlakyBucket {
        pub fn new() -> FlakyBucket {
            let bucket = FlakyBucket::default();
            bucket.puts_left.store(usize::MAX, Ordering::SeqCst);
            bucket
        }

        /// Lets `n` more PUTs through, refusing the rest, and refuses every deletion.
        pub fn fail_after(&self, n: usize) {
            self.puts_left.store(n, Ordering::SeqCst);
            self.deletes_refused.store(true, Ordering::SeqCst);
        }

        pub fn recover(&self) {
            self.puts_left.store(usize::MAX, Ordering::SeqCst);
            self.deletes_refused.store(false, Ordering::SeqCst);
        }

        /// Calls refused so far.
        pub fn refused(&self) -> usize {
            self.refused.load(Ordering::SeqCst)
        }

        fn refusal(&self) -> object_store::Error {
            self.refused.fetch_add(1, Ordering::SeqCst);
            object_store::Error::Generic {
                store: "flaky",
                source: "refused, as a bucket out of reach".into(),
            }
        }
    }

    impl fmt::Display for FlakyBucket {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("FlakyBucket")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for FlakyBucket {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> Result<PutResult> {
            let let_through = self
                .puts_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                    usize::MAX => Some(n),
                    0 => None,
                    n => Some(n - 1),
                })
                .is_ok();
            if !let_through {
                return Err(self.refusal());
            }
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            if self.deletes_refused.load(Ordering::SeqCst) {
                let error = self.refusal();
                return futures::stream::once(async move { Err(error) }).boxed();
            }
            self.inner.delete_stream(locations)
        }

        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }
}
