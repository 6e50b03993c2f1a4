//! The files and folders in memory, each twice: as programs see them, and as a disk holds
//! them after a power loss.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

/// The root folder's inode number, as FUSE expects it.
pub const ROOT: u64 = 1;

/// Why an operation failed, as an errno.
pub type Errno = i32;

/// A regular file's bytes.
#[derive(Default)]
pub struct FileData {
    /// What reads return now.
    pub live: Vec<u8>,
    /// What the disk holds: the content as of the last `fsync` or `fdatasync`.
    synced: Vec<u8>,
    /// The lowest byte changed (written or truncated away) since the last sync.
    dirty_from: Option<usize>,
}

impl FileData {
    fn touch(&mut self, from: usize) {
        self.dirty_from = Some(self.dirty_from.map_or(from, |d| d.min(from)));
    }

    pub fn write(&mut self, offset: usize, data: &[u8]) {
        let end = offset + data.len();
        if self.live.len() < end {
            self.live.resize(end, 0);
        }
        self.live[offset..end].copy_from_slice(data);
        self.touch(offset);
    }

    pub fn set_len(&mut self, len: usize) {
        self.touch(len.min(self.live.len()));
        self.live.resize(len, 0);
    }

    /// `fsync`: the disk now holds what programs see. Only the changed part is copied, so
    /// syncing an appended log costs what was appended.
    fn sync(&mut self) {
        if let Some(from) = self.dirty_from.take() {
            self.synced.truncate(from.min(self.live.len()));
            let kept = self.synced.len();
            self.synced.extend_from_slice(&self.live[kept..]);
        }
    }

    /// The bytes written after the last sync, when they only extend the synced content
    /// (what a torn append may leave).
    fn unsynced_tail(&self) -> Option<&[u8]> {
        let from = self.dirty_from?;
        (from >= self.synced.len() && self.live.len() > self.synced.len())
            .then(|| &self.live[self.synced.len()..])
    }
}

/// A folder's entries: name → inode.
#[derive(Default)]
pub struct DirData {
    pub live: BTreeMap<OsString, u64>,
    /// The entries as of the folder's last `fsync`.
    synced: BTreeMap<OsString, u64>,
}

pub enum Kind {
    File(FileData),
    Dir(DirData),
}

pub struct Node {
    pub kind: Kind,
    pub perm: u16,
    pub mtime: SystemTime,
}

/// What a power cut threw away.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CutReport {
    /// Bytes written but not yet synced when the power went.
    pub unsynced_bytes: u64,
    /// Of those, bytes at the end of an appended file that the "disk" had written anyway:
    /// a torn tail, possibly with a hole of zeros in it.
    pub torn_bytes_kept: u64,
    /// Names created (or renamed to) whose folder was not synced since: gone, with what
    /// they named. Paths under the mount point.
    pub names_lost: Vec<String>,
    /// Names removed (or renamed away) whose folder was not synced since: back again.
    pub names_back: Vec<String>,
}

/// A tiny deterministic generator (xorshift64*), so a failing cut can be replayed from its
/// seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..=max`.
    fn upto(&mut self, max: usize) -> usize {
        (self.next() % (max as u64 + 1)) as usize
    }
}

/// Every inode. Inodes are never freed: a name removed from a folder may come back with a
/// power cut, and the tests that use this write little.
pub struct Disk {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
}

impl Default for Disk {
    fn default() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::new(Kind::Dir(DirData::default()), 0o755));
        Disk {
            nodes,
            next_ino: ROOT + 1,
        }
    }
}

impl Node {
    fn new(kind: Kind, perm: u16) -> Self {
        Node {
            kind,
            perm,
            mtime: SystemTime::now(),
        }
    }
}

impl Disk {
    pub fn node(&self, ino: u64) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    pub fn node_mut(&mut self, ino: u64) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    pub fn file(&self, ino: u64) -> Result<&FileData, Errno> {
        match &self.node(ino)?.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir(_) => Err(libc::EISDIR),
        }
    }

    /// A file about to change (its modification time is set).
    pub fn file_mut(&mut self, ino: u64) -> Result<&mut FileData, Errno> {
        let node = self.node_mut(ino)?;
        node.mtime = SystemTime::now();
        match &mut node.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir(_) => Err(libc::EISDIR),
        }
    }

    pub fn dir(&self, ino: u64) -> Result<&DirData, Errno> {
        match &self.node(ino)?.kind {
            Kind::Dir(d) => Ok(d),
            Kind::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: u64) -> Result<&mut DirData, Errno> {
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir(d) => Ok(d),
            Kind::File(_) => Err(libc::ENOTDIR),
        }
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.dir(parent)?
            .live
            .get(name)
            .copied()
            .ok_or(libc::ENOENT)
    }

    /// A new file or folder named `name` in `parent`; its name is durable once `parent` is
    /// synced.
    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        dir: bool,
        perm: u16,
    ) -> Result<u64, Errno> {
        if self.dir(parent)?.live.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let kind = if dir {
            Kind::Dir(DirData::default())
        } else {
            Kind::File(FileData::default())
        };
        self.nodes.insert(ino, Node::new(kind, perm));
        self.dir_mut(parent)?.live.insert(name.to_owned(), ino);
        Ok(ino)
    }

    pub fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.node(ino)?.kind, dir) {
            (Kind::Dir(_), false) => return Err(libc::EISDIR),
            (Kind::File(_), true) => return Err(libc::ENOTDIR),
            (Kind::Dir(d), true) if !d.live.is_empty() => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        self.dir_mut(parent)?.live.remove(name);
        Ok(())
    }

    /// Moves `name` in `parent` to `new_name` in `new_parent`, replacing what was there.
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        self.dir(new_parent)?;
        self.dir_mut(parent)?.live.remove(name);
        self.dir_mut(new_parent)?
            .live
            .insert(new_name.to_owned(), ino);
        Ok(())
    }

    /// `fsync` or `fdatasync` on a file, or `fsync` on a folder (which makes its entries
    /// durable, not the files they name).
    pub fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        match &mut self.node_mut(ino)?.kind {
            Kind::File(f) => f.sync(),
            Kind::Dir(d) => d.synced.clone_from(&d.live),
        }
        Ok(())
    }

    /// Each folder's path under the mount point as programs see it now, with a trailing `/`
    /// (the root's is empty).
    fn paths(&self) -> HashMap<u64, String> {
        let mut paths = HashMap::from([(ROOT, String::new())]);
        let mut todo = vec![ROOT];
        while let Some(dir) = todo.pop() {
            let Ok(d) = self.dir(dir) else { continue };
            for (name, &child) in d.live.iter().chain(&d.synced) {
                if matches!(self.node(child).map(|n| &n.kind), Ok(Kind::Dir(_)))
                    && !paths.contains_key(&child)
                {
                    let path = format!("{}{}/", paths[&dir], name.to_string_lossy());
                    paths.insert(child, path);
                    todo.push(child);
                }
            }
        }
        paths
    }

    /// The power fails: every file and folder goes back to what was last synced. Of an
    /// append not yet synced, a part may survive, as a disk may have written some of its
    /// pages before the power went: a random prefix of the appended bytes, sometimes with one
    /// 4 KiB page of it never written (zeros). `seed` picks what survives.
    pub fn cut(&mut self, seed: u64) -> CutReport {
        let mut rng = Rng::new(seed);
        let mut report = CutReport::default();
        let paths = self.paths();
        let mut inos: Vec<u64> = self.nodes.keys().copied().collect();
        inos.sort_unstable(); // the same seed tears the same way
        for ino in inos {
            match &mut self.nodes.get_mut(&ino).expect("listed").kind {
                Kind::File(f) => {
                    let torn = f.unsynced_tail().map(|tail| torn_prefix(tail, &mut rng));
                    let lost = f
                        .dirty_from
                        .map_or(0, |from| f.live.len().saturating_sub(from));
                    f.live.clone_from(&f.synced);
                    if let Some(torn) = torn {
                        report.torn_bytes_kept += torn.len() as u64;
                        f.live.extend_from_slice(&torn);
                        f.synced.clone_from(&f.live);
                    }
                    report.unsynced_bytes += lost as u64;
                    f.dirty_from = None;
                }
                Kind::Dir(d) => {
                    let created = d
                        .live
                        .iter()
                        .filter(|(name, child)| d.synced.get(*name) != Some(*child));
                    let removed = d.synced.keys().filter(|n| !d.live.contains_key(*n));
                    let path =
                        |name: &OsString| format!("{}{}", paths[&ino], name.to_string_lossy());
                    report
                        .names_lost
                        .extend(created.map(|(name, _)| path(name)));
                    report.names_back.extend(removed.map(path));
                    d.live.clone_from(&d.synced);
                }
            }
        }
        report
    }
}

/// What a disk may have written of `tail` before the power went.
fn torn_prefix(tail: &[u8], rng: &mut Rng) -> Vec<u8> {
    const PAGE: usize = 4096;
    let mut kept = tail[..rng.upto(tail.len())].to_vec();
    if kept.len() > PAGE && rng.upto(1) == 1 {
        let page = rng.upto(kept.len() / PAGE - 1) * PAGE;
        kept[page..page + PAGE].fill(0);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(disk: &Disk, parent: u64, name: &str) -> Option<Vec<u8>> {
        let ino = disk.lookup(parent, OsStr::new(name)).ok()?;
        match &disk.node(ino).ok()?.kind {
            Kind::File(f) => Some(f.live.clone()),
            Kind::Dir(_) => None,
        }
    }

    #[test]
    fn a_cut_keeps_what_was_synced_and_loses_the_rest() {
        let mut disk = Disk::default();
        let a = disk.create(ROOT, OsStr::new("a"), false, 0o644).unwrap();
        disk.sync(ROOT).unwrap();
        disk.file_mut(a).unwrap().write(0, b"synced ");
        disk.sync(a).unwrap();
        // Overwritten in place after the sync: the overwrite is lost, the synced bytes stay.
        disk.file_mut(a).unwrap().write(0, b"changed");
        let report = disk.cut(1);
        assert_eq!(file(&disk, ROOT, "a").unwrap(), b"synced ");
        assert_eq!(report.unsynced_bytes, 7);
        assert_eq!(report.torn_bytes_kept, 0);
    }

    #[test]
    fn a_new_name_needs_its_folder_synced() {
        let mut disk = Disk::default();
        let a = disk.create(ROOT, OsStr::new("a"), false, 0o644).unwrap();
        disk.file_mut(a).unwrap().write(0, b"data");
        disk.sync(a).unwrap(); // the file, not its folder
        let report = disk.cut(1);
        assert_eq!(file(&disk, ROOT, "a"), None);
        assert_eq!(report.names_lost, ["a"]);

        let b = disk.create(ROOT, OsStr::new("b"), false, 0o644).unwrap();
        disk.file_mut(b).unwrap().write(0, b"data");
        disk.sync(b).unwrap();
        disk.sync(ROOT).unwrap();
        disk.cut(1);
        assert_eq!(file(&disk, ROOT, "b").unwrap(), b"data");
    }

    #[test]
    fn renames_and_removals_are_undone_until_the_folder_is_synced() {
        let mut disk = Disk::default();
        let old = disk
            .create(ROOT, OsStr::new("offset"), false, 0o644)
            .unwrap();
        disk.file_mut(old).unwrap().write(0, b"1");
        disk.sync(old).unwrap();
        disk.sync(ROOT).unwrap();
        let new = disk
            .create(ROOT, OsStr::new("offset.tmp"), false, 0o644)
            .unwrap();
        disk.file_mut(new).unwrap().write(0, b"2");
        disk.sync(new).unwrap();
        disk.rename(ROOT, OsStr::new("offset.tmp"), ROOT, OsStr::new("offset"))
            .unwrap();
        assert_eq!(file(&disk, ROOT, "offset").unwrap(), b"2");
        let report = disk.cut(1);
        // The name now stands for the new file, which is lost; the old one is back.
        assert_eq!(report.names_lost, ["offset"]);
        assert!(report.names_back.is_empty());
        assert_eq!(file(&disk, ROOT, "offset").unwrap(), b"1");
        assert_eq!(file(&disk, ROOT, "offset.tmp"), None);

        disk.remove(ROOT, OsStr::new("offset"), false).unwrap();
        assert_eq!(disk.cut(1).names_back, ["offset"]);
        assert_eq!(file(&disk, ROOT, "offset").unwrap(), b"1");
    }

    #[test]
    fn an_unsynced_append_may_survive_torn_and_the_seed_says_how() {
        let tail: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8 + 1).collect();
        let mut kept = Vec::new();
        for seed in 0..50 {
            let mut disk = Disk::default();
            let a = disk.create(ROOT, OsStr::new("seg"), false, 0o644).unwrap();
            disk.sync(ROOT).unwrap();
            disk.file_mut(a).unwrap().write(0, b"head");
            disk.sync(a).unwrap();
            disk.file_mut(a).unwrap().write(4, &tail);
            let report = disk.cut(seed);
            let after = file(&disk, ROOT, "seg").unwrap();
            assert_eq!(&after[..4], b"head");
            assert_eq!(after.len() as u64 - 4, report.torn_bytes_kept);
            assert_eq!(report.unsynced_bytes, tail.len() as u64);
            // Whatever survived is the tail's prefix, but for at most one page of zeros.
            let differing = after[4..].iter().zip(&tail).filter(|(a, b)| a != b).count();
            assert!(differing <= 4096, "seed {seed}: {differing} bytes differ");
            kept.push((after.len(), differing > 0));
        }
        // Fifty seeds tear at many lengths, some with a hole.
        let lengths: std::collections::HashSet<_> = kept.iter().map(|k| k.0).collect();
        assert!(lengths.len() > 40, "{lengths:?}");
        assert!(kept.iter().any(|k| k.1));
        // The same seed tears the same way.
        let again = |seed| {
            let mut disk = Disk::default();
            let a = disk.create(ROOT, OsStr::new("seg"), false, 0o644).unwrap();
            disk.sync(ROOT).unwrap();
            disk.file_mut(a).unwrap().write(0, &tail);
            disk.cut(seed);
            file(&disk, ROOT, "seg").unwrap()
        };
        assert_eq!(again(7), again(7));
    }

    #[test]
    fn a_synced_truncation_stays_and_an_unsynced_one_is_undone() {
        let mut disk = Disk::default();
        let a = disk.create(ROOT, OsStr::new("seg"), false, 0o644).unwrap();
        disk.sync(ROOT).unwrap();
        disk.file_mut(a).unwrap().write(0, b"0123456789");
        disk.sync(a).unwrap();
        disk.file_mut(a).unwrap().set_len(4);
        disk.cut(1);
        assert_eq!(file(&disk, ROOT, "seg").unwrap(), b"0123456789");
        disk.file_mut(a).unwrap().set_len(4);
        disk.sync(a).unwrap();
        disk.file_mut(a).unwrap().write(4, b"xy");
        disk.sync(a).unwrap();
        disk.cut(1);
        assert_eq!(file(&disk, ROOT, "seg").unwrap(), b"0123xy");
    }
}
