//! The files and folders in memory, each twice: as programs see them, and as a disk holds
//! them after a power loss.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::ops::Range;
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
    /// The bytes changed since the last sync, as a range of `live` (growing the file with
    /// `set_len` counts as writing zeros).
    dirty: Option<Range<usize>>,
    /// Whether the file was cut shorter than its synced content since the last sync.
    shrunk: bool,
    /// Where the bytes ever written end: the blocks the file holds. Growing a file with
    /// `set_len` leaves a hole, as on a real file system, and writing into the hole takes
    /// new blocks (fjall's journal is grown so). Holes below it count as held.
    written_to: usize,
}

impl FileData {
    fn mark(&mut self, changed: Range<usize>) {
        self.dirty = Some(match self.dirty.take() {
            Some(d) => d.start.min(changed.start)..d.end.max(changed.end),
            None => changed,
        });
    }

    pub fn write(&mut self, offset: usize, data: &[u8]) {
        let end = offset + data.len();
        if self.live.len() < end {
            self.live.resize(end, 0);
        }
        self.live[offset..end].copy_from_slice(data);
        self.mark(offset..end);
        self.written_to = self.written_to.max(end);
    }

    /// Whether writing up to `end` takes blocks the file does not hold yet.
    pub fn needs_blocks(&self, end: usize) -> bool {
        end > self.written_to
    }

    pub fn set_len(&mut self, len: usize) {
        let old = self.live.len();
        self.written_to = self.written_to.min(len);
        self.live.resize(len, 0);
        if len > old {
            self.mark(old..len);
        } else {
            self.shrunk |= len < self.synced.len();
            self.dirty = self.dirty.take().map(|d| d.start.min(len)..d.end.min(len));
        }
    }

    fn clean(&self) -> bool {
        self.dirty.is_none() && !self.shrunk && self.live.len() == self.synced.len()
    }

    /// `fsync`: the disk now holds what programs see. Only the changed bytes are copied, so
    /// syncing an appended log or a preallocated journal costs what was written.
    fn sync(&mut self) {
        self.synced.resize(self.live.len(), 0);
        if let Some(d) = self.dirty.take() {
            self.synced[d.clone()].copy_from_slice(&self.live[d]);
        }
        self.shrunk = false;
    }

    /// What the disk holds after the power went, chosen with `rng`: the synced content, plus
    /// a prefix (in file order) of the bytes changed since, as a disk writing back pages
    /// may have written some of them; sometimes one whole 4 KiB page inside that prefix was
    /// not written and keeps its old content (zeros past the old end). A file cut shorter
    /// and not synced since goes back whole. Returns the bytes changed and the bytes of them
    /// that survived.
    fn cut(&mut self, rng: &mut Rng) -> (u64, u64) {
        const PAGE: usize = 4096;
        let changed = self.dirty.take().unwrap_or(0..0);
        let mut after = self.synced.clone();
        let mut kept = 0;
        if !self.shrunk && !changed.is_empty() {
            kept = rng.upto(changed.len());
            let written = changed.start..changed.start + kept;
            if after.len() < written.end {
                after.resize(written.end, 0);
            }
            after[written.clone()].copy_from_slice(&self.live[written.clone()]);
            let pages = written.start.div_ceil(PAGE)..written.end / PAGE;
            if !pages.is_empty() && rng.upto(1) == 1 {
                let page = (pages.start + rng.upto(pages.len() - 1)) * PAGE;
                for (i, byte) in after[page..page + PAGE].iter_mut().enumerate() {
                    *byte = self.synced.get(page + i).copied().unwrap_or(0);
                }
                kept -= PAGE;
            }
        }
        self.live.clone_from(&after);
        self.synced = after;
        self.shrunk = false;
        self.written_to = self.live.len();
        (changed.len() as u64, kept as u64)
    }
}

/// A folder's entries: name → inode.
#[derive(Default)]
pub struct DirData {
    pub live: BTreeMap<OsString, u64>,
    /// The entries as of the folder's last `fsync`.
    synced: BTreeMap<OsString, u64>,
    /// How many of the disk's name changes that `fsync` covered.
    synced_changes: usize,
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
    /// Bytes of files that still have a name, changed (written, or grown) and not yet synced
    /// when the power went.
    pub unsynced_bytes: u64,
    /// Of those, the bytes the "disk" had written anyway: a torn write.
    pub torn_bytes_kept: u64,
    /// Names created (or renamed to) whose folder was not synced since: gone, with what
    /// they named. Paths under the mount point.
    pub names_lost: Vec<String>,
    /// Names removed (or renamed away) whose folder was not synced since: back again.
    pub names_back: Vec<String>,
}

impl std::fmt::Display for CutReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes changed and not synced ({} of them written anyway, torn), {} names lost, {} removed names back",
            self.unsynced_bytes,
            self.torn_bytes_kept,
            self.names_lost.len(),
            self.names_back.len()
        )
    }
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

/// One call's changes to names: (folder, name, the inode it now names or `None` if
/// removed). A rename changes two names at once.
type NameChange = Vec<(u64, OsString, Option<u64>)>;

/// Every inode, and the changes to names since the last power cut. Inodes whose names are
/// gone are dropped at a cut (a removed name may come back with it until then).
pub struct Disk {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Every change to a name, in order. A journaling file system commits them in that
    /// order, so after a power loss each folder holds its synced entries plus the changes
    /// up to some point, the same point for every folder.
    changes: Vec<NameChange>,
    /// No room left: a write that takes new blocks fails (see [`Disk::file_written_to`]),
    /// and so does making a file or folder.
    pub full: bool,
}

impl Default for Disk {
    fn default() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::new(Kind::Dir(DirData::default()), 0o755));
        Disk {
            nodes,
            next_ino: ROOT + 1,
            changes: Vec::new(),
            full: false,
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

    /// A file about to be written up to byte `end` (its modification time is set): refused
    /// with `ENOSPC` while the disk is full and that takes new blocks (see
    /// [`FileData::needs_blocks`]). Blocks the file holds are overwritten as usual.
    pub fn file_written_to(&mut self, ino: u64, end: usize) -> Result<&mut FileData, Errno> {
        let full = self.full;
        let file = self.file_mut(ino)?;
        if full && file.needs_blocks(end) {
            return Err(libc::ENOSPC);
        }
        Ok(file)
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
        if self.full {
            return Err(libc::ENOSPC);
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
        self.changes
            .push(vec![(parent, name.to_owned(), Some(ino))]);
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
        self.changes.push(vec![(parent, name.to_owned(), None)]);
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
        if let Ok(target) = self.lookup(new_parent, new_name) {
            // What rename(2) refuses when the name is taken.
            match (&self.node(ino)?.kind, &self.node(target)?.kind) {
                (Kind::File(_), Kind::Dir(_)) => return Err(libc::EISDIR),
                (Kind::Dir(_), Kind::File(_)) => return Err(libc::ENOTDIR),
                (Kind::Dir(_), Kind::Dir(d)) if !d.live.is_empty() => {
                    return Err(libc::ENOTEMPTY);
                }
                _ => {}
            }
        }
        self.dir(new_parent)?;
        self.dir_mut(parent)?.live.remove(name);
        self.dir_mut(new_parent)?
            .live
            .insert(new_name.to_owned(), ino);
        self.changes.push(vec![
            (parent, name.to_owned(), None),
            (new_parent, new_name.to_owned(), Some(ino)),
        ]);
        Ok(())
    }

    /// The folder that names folder `ino` (the root names itself).
    pub fn parent(&self, ino: u64) -> u64 {
        self.nodes
            .iter()
            .find(|(_, n)| matches!(&n.kind, Kind::Dir(d) if d.live.values().any(|&c| c == ino)))
            .map_or(ROOT, |(&p, _)| p)
    }

    /// `fsync` or `fdatasync` on a file, or `fsync` on a folder (which makes its entries
    /// durable, not the files they name).
    pub fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        let changes = self.changes.len();
        match &mut self.node_mut(ino)?.kind {
            Kind::File(f) => f.sync(),
            Kind::Dir(d) => {
                d.synced.clone_from(&d.live);
                d.synced_changes = changes;
            }
        }
        Ok(())
    }

    /// The path under the mount point of everything reachable from the root through the
    /// folders' current entries (and, with `synced_too`, their synced ones): a folder's with
    /// a trailing `/`, the root's empty.
    fn paths(&self, synced_too: bool) -> HashMap<u64, String> {
        let mut paths = HashMap::from([(ROOT, String::new())]);
        let mut todo = vec![ROOT];
        while let Some(dir) = todo.pop() {
            let Ok(d) = self.dir(dir) else { continue };
            let synced = d.synced.iter().filter(|_| synced_too);
            for (name, &child) in d.live.iter().chain(synced) {
                if !paths.contains_key(&child) {
                    let is_dir = matches!(self.node(child).map(|n| &n.kind), Ok(Kind::Dir(_)));
                    let slash = if is_dir { "/" } else { "" };
                    let path = format!("{}{}{slash}", paths[&dir], name.to_string_lossy());
                    paths.insert(child, path);
                    if is_dir {
                        todo.push(child);
                    }
                }
            }
        }
        paths
    }

    /// The power fails. Every folder keeps the entries it last synced, plus the name
    /// changes made since up to a point chosen by `seed` (the same point for all folders:
    /// the file system's journal commits them in order, and may have committed any number
    /// of them). Every file still named keeps its synced content plus, as a disk writing
    /// back pages may leave it, part of what was written since (see [`FileData::cut`]).
    /// Files left without a name are dropped: every program that used them died with the
    /// power.
    pub fn cut(&mut self, seed: u64) -> CutReport {
        let mut rng = Rng::new(seed);
        let mut report = CutReport::default();
        let paths = self.paths(true);
        let committed = rng.upto(self.changes.len());
        let changes = std::mem::take(&mut self.changes);
        for (&ino, node) in self.nodes.iter_mut() {
            if let Kind::Dir(d) = &mut node.kind {
                let since_sync = changes.get(d.synced_changes..committed).unwrap_or(&[]);
                for (_, name, to) in since_sync.iter().flatten().filter(|(dir, ..)| *dir == ino) {
                    match to {
                        Some(child) => d.synced.insert(name.clone(), *child),
                        None => d.synced.remove(name),
                    };
                }
                d.synced_changes = 0;
                let at = paths
                    .get(&ino)
                    .cloned()
                    .unwrap_or_else(|| format!("#{ino}/"));
                let path = |name: &OsString| format!("{at}{}", name.to_string_lossy());
                let created = d
                    .live
                    .iter()
                    .filter(|(name, child)| d.synced.get(*name) != Some(*child));
                report
                    .names_lost
                    .extend(created.map(|(name, _)| path(name)));
                let removed = d.synced.keys().filter(|n| !d.live.contains_key(*n));
                report.names_back.extend(removed.map(path));
                d.live.clone_from(&d.synced);
            }
        }
        report.names_lost.sort();
        report.names_back.sort();
        let named = self.paths(false);
        self.nodes.retain(|ino, _| named.contains_key(ino));
        let mut files: Vec<u64> = named.into_keys().collect();
        files.sort_unstable(); // the same seed tears the same way
        for ino in files {
            if let Kind::File(f) = &mut self.nodes.get_mut(&ino).expect("named").kind
                && !f.clean()
            {
                let (changed, kept) = f.cut(&mut rng);
                report.unsynced_bytes += changed;
                report.torn_bytes_kept += kept;
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn file(disk: &Disk, parent: u64, name: &str) -> Option<Vec<u8>> {
        let ino = disk.lookup(parent, OsStr::new(name)).ok()?;
        match &disk.node(ino).ok()?.kind {
            Kind::File(f) => Some(f.live.clone()),
            Kind::Dir(_) => None,
        }
    }

    #[test]
    fn a_cut_keeps_what_was_synced_and_at_most_a_prefix_of_the_rest() {
        let mut kept = HashSet::new();
        for seed in 0..20 {
            let mut disk = Disk::default();
            let a = disk.create(ROOT, OsStr::new("a"), false, 0o644).unwrap();
            disk.sync(ROOT).unwrap();
            disk.file_mut(a).unwrap().write(0, b"synced ");
            disk.sync(a).unwrap();
            // Overwritten in place after the sync: a prefix of the overwrite may survive.
            disk.file_mut(a).unwrap().write(0, b"changed");
            let report = disk.cut(seed);
            let k = report.torn_bytes_kept as usize;
            let after = file(&disk, ROOT, "a").unwrap();
            assert_eq!(
                after,
                [&b"changed"[..k], &b"synced "[k..]].concat(),
                "seed {seed}"
            );
            assert_eq!(report.unsynced_bytes, 7);
            kept.insert(k);
        }
        assert!(kept.len() > 3, "{kept:?}");
    }

    #[test]
    fn a_write_into_a_preallocated_file_is_torn_in_file_order() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8 + 1).collect();
        for seed in 0..20 {
            let mut disk = Disk::default();
            let j = disk
                .create(ROOT, OsStr::new("0.jnl"), false, 0o644)
                .unwrap();
            disk.sync(ROOT).unwrap();
            disk.file_mut(j).unwrap().set_len(65_536);
            disk.sync(j).unwrap();
            disk.file_mut(j).unwrap().write(100, &data);
            let report = disk.cut(seed);
            let after = file(&disk, ROOT, "0.jnl").unwrap();
            assert_eq!(after.len(), 65_536, "the size was synced");
            let differing = after[100..10_100]
                .iter()
                .zip(&data)
                .filter(|(a, b)| a != b)
                .count();
            // What survived is a prefix, but for one page that kept its zeros.
            let survived = report.torn_bytes_kept as usize;
            assert!(differing == 10_000 - survived || differing == 10_000 - survived - 4096);
            assert!(after[10_100..].iter().all(|&b| b == 0));
        }
    }

    /// The outcomes of `run` over 40 seeds.
    fn outcomes<T: Ord>(run: impl Fn(u64) -> T) -> std::collections::BTreeSet<T> {
        (0..40).map(run).collect()
    }

    #[test]
    fn a_new_name_survives_if_its_folder_was_synced_or_the_journal_got_that_far() {
        let unsynced_folder = outcomes(|seed| {
            let mut disk = Disk::default();
            let a = disk.create(ROOT, OsStr::new("a"), false, 0o644).unwrap();
            disk.file_mut(a).unwrap().write(0, b"data");
            disk.sync(a).unwrap(); // the file, not its folder
            let report = disk.cut(seed);
            let after = file(&disk, ROOT, "a");
            assert_eq!(report.names_lost.is_empty(), after.is_some());
            after
        });
        assert_eq!(unsynced_folder, [None, Some(b"data".to_vec())].into());

        let synced_folder = outcomes(|seed| {
            let mut disk = Disk::default();
            let b = disk.create(ROOT, OsStr::new("b"), false, 0o644).unwrap();
            disk.file_mut(b).unwrap().write(0, b"data");
            disk.sync(b).unwrap();
            disk.sync(ROOT).unwrap();
            disk.cut(seed);
            file(&disk, ROOT, "b")
        });
        assert_eq!(synced_folder, [Some(b"data".to_vec())].into());
    }

    /// A consumer's offset replaced the usual way, with `sync_new` saying whether the new
    /// file is synced before the rename, then a power cut: the two names after it.
    fn offset_replaced(seed: u64, sync_new: bool) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
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
        if sync_new {
            disk.sync(new).unwrap();
        }
        disk.rename(ROOT, OsStr::new("offset.tmp"), ROOT, OsStr::new("offset"))
            .unwrap();
        disk.cut(seed);
        (file(&disk, ROOT, "offset"), file(&disk, ROOT, "offset.tmp"))
    }

    /// The old offset, the new one, or the new one not yet renamed: whole in every case,
    /// because the new file was synced before the rename.
    #[test]
    fn a_rename_of_a_synced_file_survives_in_order_or_not_at_all() {
        let seen = outcomes(|seed| offset_replaced(seed, true));
        let (one, two) = (Some(b"1".to_vec()), Some(b"2".to_vec()));
        assert_eq!(
            seen,
            [(one.clone(), None), (one, two.clone()), (two, None)].into()
        );
    }

    /// The bug the ordering exists to catch: renaming a file over another before its
    /// content is synced can leave the name with an empty file.
    #[test]
    fn a_rename_of_an_unsynced_file_may_leave_it_empty() {
        let seen = outcomes(|seed| offset_replaced(seed, false).0);
        assert!(seen.contains(&Some(Vec::new())), "{seen:?}");
    }

    #[test]
    fn a_removed_name_comes_back_unless_its_removal_reached_the_disk() {
        let seen = outcomes(|seed| {
            let mut disk = Disk::default();
            let a = disk.create(ROOT, OsStr::new("a"), false, 0o644).unwrap();
            disk.file_mut(a).unwrap().write(0, b"1");
            disk.sync(a).unwrap();
            disk.sync(ROOT).unwrap();
            disk.remove(ROOT, OsStr::new("a"), false).unwrap();
            let report = disk.cut(seed);
            assert_eq!(
                report.names_back.is_empty(),
                file(&disk, ROOT, "a").is_none()
            );
            file(&disk, ROOT, "a")
        });
        assert_eq!(seen, [None, Some(b"1".to_vec())].into());
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
            assert_eq!(report.unsynced_bytes, tail.len() as u64);
            // Whatever survived is the tail's prefix, but for at most one page of zeros.
            let differing = after[4..].iter().zip(&tail).filter(|(a, b)| a != b).count();
            assert!(
                differing == 0 || differing == 4096,
                "seed {seed}: {differing} bytes differ"
            );
            assert_eq!(after.len() - 4 - differing, report.torn_bytes_kept as usize);
            kept.push((after.len(), differing > 0));
        }
        // Fifty seeds tear at many lengths, some with a hole.
        let lengths: HashSet<_> = kept.iter().map(|k| k.0).collect();
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
