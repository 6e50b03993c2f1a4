//! Folders whose entries survive a power loss.
//!
//! A file's `fsync` makes its content durable, not its name: the name lives in the folder,
//! which needs its own `fsync` after a file or folder is created, renamed or removed in it.
//! The log and the profile store both rely on these two steps (`persona-powercut`'s test
//! shows what is lost without them).

use std::fs::File;
use std::io;
use std::path::Path;

/// Makes the creation, rename or deletion of a name in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes the name of `path` durable, once `path` was created, renamed or written whole:
/// syncs the folder that holds it.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match parent_of(path) {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Creates `dir` and any missing parents, syncing the parent of each folder it creates, so
/// that after a power loss the folders (and what is later synced into them) are still
/// reachable. The parent of `dir` is synced even when `dir` exists: a process killed
/// between creating it and syncing its parent left its name unsynced.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut missing = vec![dir];
    let mut at = dir;
    while let Some(parent) = parent_of(at).filter(|p| !p.exists()) {
        missing.push(parent);
        at = parent;
    }
    let existed = dir.exists();
    std::fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        match sync_parent(created) {
            // A folder that was there already may sit in one this user cannot open
            // (mode 0711): it worked before, and keeps working.
            Err(e) if existed && e.kind() == io::ErrorKind::PermissionDenied => {}
            other => other?,
        }
    }
    Ok(())
}

/// [`create_dir_all`] for a data folder: when it did not exist, only its owner may enter
/// it (mode 0700, as PostgreSQL wants of its data directory), since the events in it carry
/// customers' data and the write key. A folder that exists keeps its mode: its owner chose.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    let existed = dir.exists();
    create_dir_all(dir)?;
    if !existed {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The folder holding `path`: `.` for a lone relative name, `None` for a root.
fn parent_of(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_created_with_their_missing_parents_and_again_without_harm() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("data").join("log").join("consumers");
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all(&deep).unwrap();
        // A relative path whose parent is the working folder.
        let cwd = std::env::current_dir().unwrap();
        let relative = Path::new("persona-core-test-relative-dir");
        let _ = std::fs::remove_dir(cwd.join(relative));
        create_dir_all(relative).unwrap();
        assert!(cwd.join(relative).is_dir());
        std::fs::remove_dir(cwd.join(relative)).unwrap();
    }
}
