//! Write keys and admin tokens that are generated when not configured.

use std::path::Path;

use anyhow::Context;
use rand::RngCore;

/// Returns the secret stored in `data_dir/name`, creating it on first use.
///
/// The boolean is true when it was just generated, so the caller prints it once; the file
/// is readable by its owner only.
pub fn load_or_generate(data_dir: &Path, name: &str) -> anyhow::Result<(String, bool)> {
    let path = data_dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok((s.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &secret).with_context(|| format!("cannot save {}", path.display()))?;
    Ok((secret, true))
}

/// Writes the secret whole or not at all, and durably: a power cut may leave neither a
/// torn key (which the next start would take as the key, without printing it) nor a key
/// file whose name its folder never recorded (the next start would mint a new key).
fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    persona_core::durable::sync_parent(path)
}
