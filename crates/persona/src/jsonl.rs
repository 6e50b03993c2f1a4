//! Reading a file of JSON lines as `persona import` takes it: a file or standard input
//! (`-`), gzipped or not, its bytes counted on a progress bar, each line read into memory
//! only up to a length no message can exceed.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Context;
use indicatif::ProgressBar;

/// Opens `path` (`-`: standard input) for reading lines, gunzipped when it is gzip, and
/// counts the bytes read from it on `bar`.
///
/// Gzip input is read through once first: gzip checks its data only at the end of each
/// member, so a damaged file would otherwise hand over altered lines, and store them,
/// before its damage showed. Standard input cannot be read twice, so gzip on it is first
/// copied to an unnamed temporary file (removed when closed).
pub fn open(path: &Path, bar: &ProgressBar) -> anyhow::Result<Box<dyn BufRead>> {
    let mut input = reader(path, bar)?;
    let head = input
        .fill_buf()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(input));
    }
    let mut file = if path.as_os_str() == "-" {
        bar.set_message("saving the gzip input");
        let mut spool =
            tempfile::tempfile().context("cannot make a temporary file for the gzip input")?;
        std::io::copy(&mut input, &mut spool)
            .context("cannot save the gzip input to a temporary file")?;
        spool
    } else {
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?
    };
    bar.set_message("checking the gzip input");
    bar.set_length(file.metadata()?.len());
    bar.set_position(0);
    file.seek(SeekFrom::Start(0))?;
    let checked = std::io::copy(
        &mut flate2::read::MultiGzDecoder::new(counted(&file, bar)),
        &mut std::io::sink(),
    );
    if let Err(e) = checked {
        anyhow::bail!(
            "{} is not a whole gzip file ({e}); nothing was imported",
            path.display()
        );
    }
    bar.set_message("reading");
    bar.set_position(0);
    file.seek(SeekFrom::Start(0))?;
    let input = BufReader::with_capacity(256 << 10, counted(file, bar));
    Ok(Box::new(BufReader::new(
        flate2::bufread::MultiGzDecoder::new(input),
    )))
}

fn reader(path: &Path, bar: &ProgressBar) -> anyhow::Result<BufReader<Counted<Box<dyn Read>>>> {
    let raw: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            anyhow::bail!("{} is a folder, not a file of JSON lines", path.display());
        }
        bar.set_length(meta.len());
        Box::new(file)
    };
    Ok(BufReader::with_capacity(256 << 10, counted(raw, bar)))
}

fn counted<R: Read>(inner: R, bar: &ProgressBar) -> Counted<R> {
    Counted {
        inner,
        bar: bar.clone(),
    }
}

/// A reader that counts what it reads on a progress bar.
struct Counted<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// One line of the input.
pub enum Line {
    /// Its bytes, without the line break.
    Text(Vec<u8>),
    /// Longer than the reader keeps: its length in bytes (it was skipped, not kept).
    TooLong(usize),
}

/// The lines of `input`, numbered from 1; a line longer than `max` bytes is skipped
/// without being held (a file holding one huge JSON array must not fill the memory).
pub fn lines(
    input: impl BufRead,
    max: usize,
) -> impl Iterator<Item = std::io::Result<(usize, Line)>> {
    let mut input = input;
    let mut number = 0;
    std::iter::from_fn(move || {
        let mut text = Vec::new();
        let mut len = 0;
        loop {
            let chunk = match input.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(e)),
            };
            if chunk.is_empty() {
                if len == 0 {
                    return None;
                }
                break;
            }
            let (take, ends) = match chunk.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (chunk.len(), false),
            };
            let part = &chunk[..take - usize::from(ends)];
            len += part.len();
            if len <= max {
                text.extend_from_slice(part);
            } else {
                text = Vec::new();
            }
            input.consume(take);
            if ends {
                break;
            }
        }
        number += 1;
        let line = if len > max {
            Line::TooLong(len)
        } else {
            Line::Text(text)
        };
        Some(Ok((number, line)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8], max: usize) -> Vec<(usize, String)> {
        lines(BufReader::with_capacity(4, text), max)
            .map(|l| match l.unwrap() {
                (n, Line::Text(t)) => (n, String::from_utf8(t).unwrap()),
                (n, Line::TooLong(len)) => (n, format!("<{len} bytes>")),
            })
            .collect()
    }

    #[test]
    fn lines_are_numbered_and_long_ones_skipped_without_being_held() {
        assert_eq!(
            read(b"ab\n\ncdefghij\nk", 5),
            [
                (1, "ab".to_string()),
                (2, String::new()),
                (3, "<8 bytes>".to_string()),
                (4, "k".to_string()),
            ]
        );
        assert_eq!(read(b"", 5), []);
        assert_eq!(read(b"abc\n", 5), [(1, "abc".to_string())]);
    }
}
