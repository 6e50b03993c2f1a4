//! The FUSE operations, each a call on the [`Disk`].
//!
//! Attributes and names are given with a zero time-to-live, so the kernel asks again every
//! time instead of remembering a state that a power cut has since taken back.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::disk::{Disk, Kind, Node};

const TTL: Duration = Duration::ZERO;

/// An open folder's entries: inode, kind, name.
type Listing = Vec<(u64, FileType, OsString)>;

pub struct Fs {
    pub disk: Arc<Mutex<Disk>>,
    /// Each open folder's entries as they were when it was opened, so that a listing read
    /// in several calls neither skips nor repeats a name while others change the folder.
    listings: Mutex<HashMap<u64, Listing>>,
    next_handle: AtomicU64,
}

impl Fs {
    pub fn new(disk: Arc<Mutex<Disk>>) -> Self {
        Fs {
            disk,
            listings: Mutex::default(),
            next_handle: AtomicU64::new(1),
        }
    }
}

impl Fs {
    fn disk(&self) -> MutexGuard<'_, Disk> {
        // A panic in one operation must not take the file system down with it.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn listings(&self) -> MutexGuard<'_, HashMap<u64, Listing>> {
        self.listings.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn attr(ino: u64, node: &Node) -> FileAttr {
    let (kind, size, nlink) = match &node.kind {
        Kind::File(f) => (FileType::RegularFile, f.live.len() as u64, 1),
        Kind::Dir(_) => (FileType::Directory, 4096, 2),
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: node.mtime,
        mtime: node.mtime,
        ctime: node.mtime,
        crtime: UNIX_EPOCH,
        kind,
        perm: node.perm,
        nlink,
        // SAFETY: getuid and getgid take no arguments and cannot fail.
        uid: unsafe { libc::getuid() },
        gid: unsafe { libc::getgid() },
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

impl Fs {
    /// Replies with the entry `ino`, or the error that made it.
    fn entry(&self, found: Result<u64, i32>, reply: ReplyEntry) {
        let disk = self.disk();
        match found.and_then(|ino| Ok((ino, disk.node(ino)?))) {
            Ok((ino, node)) => reply.entry(&TTL, &attr(ino, node), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn attr(&self, ino: u64, reply: ReplyAttr) {
        match self.disk().node(ino) {
            Ok(node) => reply.attr(&TTL, &attr(ino, node)),
            Err(e) => reply.error(errno(e)),
        }
    }
}

fn done(result: Result<(), i32>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.disk().lookup(parent.0, name);
        self.entry(found, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.attr(ino.0, reply);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let changed = (|| {
            let mut disk = self.disk();
            if let Some(size) = size {
                disk.file_mut(ino.0)?.set_len(size as usize);
            }
            if let Some(mode) = mode {
                disk.node_mut(ino.0)?.perm = (mode & 0o7777) as u16;
            }
            Ok(())
        })();
        match changed {
            Ok(()) => self.attr(ino.0, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        let made = self.disk().create(parent.0, name, true, perm);
        self.entry(made, reply);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let perm = (mode & !umask & 0o7777) as u16;
        let mut disk = self.disk();
        let made = match disk.create(parent.0, name, false, perm) {
            // The name appeared since the kernel looked: without O_EXCL, open(2) opens it.
            Err(libc::EEXIST) if flags & libc::O_EXCL == 0 => {
                disk.lookup(parent.0, name).and_then(|ino| {
                    if flags & libc::O_TRUNC != 0 {
                        disk.file_mut(ino)?.set_len(0);
                    }
                    Ok(ino)
                })
            }
            made => made,
        };
        match made.and_then(|ino| Ok((ino, disk.node(ino)?))) {
            Ok((ino, node)) => reply.created(
                &TTL,
                &attr(ino, node),
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        done(self.disk().remove(parent.0, name, false), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        done(self.disk().remove(parent.0, name, true), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.bits() != 0 {
            // RENAME_NOREPLACE and RENAME_EXCHANGE are not modelled.
            return reply.error(Errno::EINVAL);
        }
        done(
            self.disk().rename(parent.0, name, newparent.0, newname),
            reply,
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.disk().node(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.disk().file(ino.0) {
            Ok(f) => {
                let start = (offset as usize).min(f.live.len());
                let end = (start + size as usize).min(f.live.len());
                reply.data(&f.live[start..end]);
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self
            .disk()
            .file_written_to(ino.0, offset as usize + data.len())
        {
            Ok(f) => {
                f.write(offset as usize, data);
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Closing a file syncs nothing, as on a real disk.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        done(self.disk().sync(ino.0), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let disk = self.disk();
        let dir = match disk.dir(ino.0) {
            Ok(d) => d,
            Err(e) => return reply.error(errno(e)),
        };
        let dots = [
            (ino.0, FileType::Directory, OsString::from(".")),
            (
                disk.parent(ino.0),
                FileType::Directory,
                OsString::from(".."),
            ),
        ];
        let entries = dir.live.iter().map(|(name, &child)| {
            let kind = match disk.node(child).map(|n| &n.kind) {
                Ok(Kind::Dir(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            (child, kind, name.clone())
        });
        let listing = dots.into_iter().chain(entries).collect();
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.listings().insert(handle, listing);
        reply.opened(FileHandle(handle), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listings = self.listings();
        let Some(listing) = listings.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        // An entry's offset is the position of the next one, where a later call resumes.
        for (i, (child, kind, name)) in listing.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*child), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.listings().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        done(self.disk().sync(ino.0), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Room enough for any test: 1 TiB in 4 KiB blocks.
        reply.statfs(1 << 28, 1 << 28, 1 << 28, 1 << 20, 1 << 20, 4096, 255, 4096);
    }
}
