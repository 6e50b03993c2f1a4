//! Paths as the commands compare them.

use std::path::{Path, PathBuf};

/// Whether two paths name the same file however spelled (`z.jsonl`, `./z.jsonl`, the
/// absolute path, through a link), whether or not it exists yet.
pub fn same_file(a: &Path, b: &Path) -> bool {
    fn resolved(p: &Path) -> Option<PathBuf> {
        if let Ok(full) = std::fs::canonicalize(p) {
            return Some(full);
        }
        let parent = match p.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Some(std::fs::canonicalize(parent).ok()?.join(p.file_name()?))
    }
    a == b || matches!((resolved(a), resolved(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_is_the_same_however_its_path_is_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let abs = dir.path().join("z.jsonl");
        let dotted = dir.path().join(".").join("z.jsonl");
        // Before the file exists, and after.
        assert!(same_file(&abs, &dotted));
        std::fs::write(&abs, "").unwrap();
        assert!(same_file(&abs, &dotted));
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&abs, &link).unwrap();
        assert!(same_file(&link, &abs));
        assert!(!same_file(&abs, &dir.path().join("truth.csv")));
    }
}
