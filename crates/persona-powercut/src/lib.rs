//! A file system that forgets what was not synced: the power cut in persona's durability
//! tests.
//!
//! A SIGKILL leaves the kernel's page cache whole, so a crash test passes even if a program
//! never calls `fsync`. [`PowerCut`] mounts a folder over FUSE whose files live in this
//! process's memory twice: as programs see them, and as a disk would hold them after a power
//! loss. [`PowerCut::cut`] throws away what a power loss may take, as the seed picks:
//! - A file keeps its content as of its last `fsync` or `fdatasync`, plus a prefix (in file
//!   order) of what was written since, torn at any byte, sometimes with one 4 KiB page in it
//!   still holding its old content, as a disk writing back pages would leave it.
//! - A folder keeps its entries as of its last `fsync`, plus the name changes made since up
//!   to some point, the same for every folder, as a journaling file system commits them in
//!   order. With the point at the start, this is the strict reading of POSIX that the ALICE
//!   and CrashMonkey studies hold programs to: a name is durable only once its folder is
//!   synced. Past it, a rename can outlive the content it names, as on ext4.
//!
//! Mounting needs `/dev/fuse` and the right to mount (root, or a user namespace that has
//! it); `scripts/test` checks both before the tests run.

mod disk;
mod fuse;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use disk::CutReport;
use disk::Disk;
use fuser::{BackgroundSession, Config, MountOption};

/// A mounted folder that a power cut can be staged on.
pub struct PowerCut {
    disk: Arc<Mutex<Disk>>,
    at: PathBuf,
    session: Option<BackgroundSession>,
}

impl PowerCut {
    /// Mounts an empty file system on the folder `at`, which must exist.
    pub fn mount(at: &Path) -> io::Result<PowerCut> {
        let mut cut = PowerCut {
            disk: Arc::default(),
            at: at.to_path_buf(),
            session: None,
        };
        cut.session = Some(cut.spawn()?);
        Ok(cut)
    }

    fn spawn(&self) -> io::Result<BackgroundSession> {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("persona-powercut".into()),
            MountOption::RW,
        ];
        let fs = fuse::Fs::new(self.disk.clone());
        fuser::spawn_mount(fs, &self.at, &config).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot mount the power-cut file system on {} (it needs /dev/fuse and the right to mount): {e}",
                    self.at.display()
                ),
            )
        })
    }

    fn unmount(&mut self) -> io::Result<()> {
        match self.session.take().map(|s| s.umount_and_join()) {
            // The kernel aborts the connection, instead of closing it, when requests of a
            // killed program are still in flight as it unmounts (seen once in about ten
            // runs of the power-loss test). For this file system that is the power going,
            // which is what it models: each request is applied whole under the disk's lock
            // or not at all, so the disk holds nothing half done.
            Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionAborted => Ok(()),
            Some(result) => result,
            None => Ok(()),
        }
    }

    /// The power fails. Every program using the folder must have exited first (a power cut
    /// takes them too): the file system is unmounted, everything not synced is lost (`seed`
    /// picks what part of an unsynced append survives), and it is mounted again, so that
    /// no cache of the kernel remembers what was lost.
    pub fn cut(&mut self, seed: u64) -> io::Result<CutReport> {
        self.unmount()?;
        let report = self
            .disk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cut(seed);
        self.session = Some(self.spawn()?);
        Ok(report)
    }
}

impl PowerCut {
    /// Fills the disk, or makes room on it again: while full, a write that takes new blocks
    /// (past what a file has held, or into a hole left by growing it with `set_len`) and
    /// making a file or folder fail with `ENOSPC` ("No space left on device"), as on a real
    /// full disk.
    pub fn set_full(&self, full: bool) {
        self.disk.lock().unwrap_or_else(|e| e.into_inner()).full = full;
    }
}

impl Drop for PowerCut {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("cannot unmount {}: {e}", self.at.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File, OpenOptions};
    use std::io::Write;

    use super::PowerCut;

    /// The FUSE wiring, through the kernel: what is synced survives a cut, what is not is
    /// gone, and renames follow their folder's sync.
    #[test]
    fn through_the_kernel_a_cut_keeps_only_what_was_synced() {
        let tmp = tempfile::tempdir().unwrap();
        let mut disk = PowerCut::mount(tmp.path()).unwrap();
        let dir = tmp.path();

        fs::create_dir(dir.join("log")).unwrap();
        File::open(dir).unwrap().sync_all().unwrap();
        let mut seg = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(dir.join("log/0.seg"))
            .unwrap();
        seg.write_all(b"acknowledged;").unwrap();
        seg.sync_data().unwrap();
        File::open(dir.join("log")).unwrap().sync_all().unwrap();
        seg.set_len(5).unwrap(); // truncated, never synced
        fs::write(dir.join("log/never-synced"), b"lost").unwrap();
        fs::write(dir.join("log/offset.tmp"), b"7").unwrap();
        File::open(dir.join("log/offset.tmp"))
            .unwrap()
            .sync_all()
            .unwrap();
        fs::rename(dir.join("log/offset.tmp"), dir.join("log/offset")).unwrap();
        assert_eq!(fs::read(dir.join("log/offset")).unwrap(), b"7");
        drop(seg);

        let report = disk.cut(3).unwrap();
        // Synced, and named in a synced folder: whole. The unsynced truncation is undone.
        assert_eq!(fs::read(dir.join("log/0.seg")).unwrap(), b"acknowledged;");
        // The rest depends on how far the journal got: each name is either gone or holds
        // what its file held (the offset was synced before its rename; the other file's
        // bytes were never synced, so at most a prefix of them).
        let names: Vec<_> = fs::read_dir(dir.join("log"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        for name in &names {
            let content = fs::read(dir.join("log").join(name)).unwrap();
            match name.as_str() {
                "0.seg" => {}
                "offset" | "offset.tmp" => assert_eq!(content, b"7"),
                "never-synced" => assert!(b"lost".starts_with(&content)),
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(
            report.names_lost.len() + names.len(),
            3,
            "{report:?} {names:?}"
        );

        // A long listing is read in several calls; removing names meanwhile skips none of
        // the others.
        fs::create_dir(dir.join("many")).unwrap();
        for i in 0..300 {
            fs::write(dir.join(format!("many/{i:03}")), b"").unwrap();
        }
        let mut listed = Vec::new();
        for (n, e) in fs::read_dir(dir.join("many")).unwrap().enumerate() {
            if n == 10 {
                fs::remove_file(dir.join("many/000")).unwrap();
            }
            listed.push(e.unwrap().file_name());
        }
        assert_eq!(listed.len(), 300);
        // rename(2)'s refusals.
        fs::create_dir(dir.join("full")).unwrap();
        fs::write(dir.join("full/x"), b"").unwrap();
        fs::create_dir(dir.join("empty")).unwrap();
        let refused = fs::rename(dir.join("empty"), dir.join("full")).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::ENOTEMPTY));

        // After the cut the folder works as before.
        fs::write(dir.join("log/1.seg"), b"next").unwrap();
        File::open(dir.join("log/1.seg"))
            .unwrap()
            .sync_data()
            .unwrap();
        File::open(dir.join("log")).unwrap().sync_all().unwrap();
        disk.cut(4).unwrap();
        assert_eq!(fs::read(dir.join("log/1.seg")).unwrap(), b"next");
    }

    /// A full disk refuses new files and writes that take new blocks, and only those: past
    /// what a file has held, or into the hole that growing it with `set_len` leaves.
    #[test]
    fn a_full_disk_refuses_new_blocks_until_there_is_room() {
        use std::os::unix::fs::FileExt;
        let enospc = |e: std::io::Error| assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        let tmp = tempfile::tempdir().unwrap();
        let disk = PowerCut::mount(tmp.path()).unwrap();
        let path = tmp.path().join("seg");
        fs::write(&path, [0u8; 100]).unwrap();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        disk.set_full(true);
        file.write_all_at(b"over", 96).unwrap();
        enospc(file.write_all_at(b"past", 98).unwrap_err());
        file.set_len(200).unwrap();
        enospc(file.write_all_at(b"hole", 150).unwrap_err());
        file.set_len(50).unwrap();
        enospc(File::create(tmp.path().join("new")).unwrap_err());
        disk.set_full(false);
        file.write_all_at(b"room", 150).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 154);
    }
}
