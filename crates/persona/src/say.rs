//! Lines for a person that never fail the command: a closed standard error (`persona
//! import big.jsonl 2>&1 | head -1`) or output (`persona serve | head -1`) is no reason to
//! stop half way, as `eprintln!` and `println!` would by panicking.

use std::io::Write;

/// Writes one line to standard error, ignoring a failure to write it.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say::line(format_args!($($arg)*))
    };
}
pub(crate) use say;

pub fn line(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{args}");
}

/// Writes one line to standard output, flushed, ignoring a failure to write it (for lines
/// whose content is also in the log or the data folder).
pub fn stdout_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{args}").and_then(|()| out.flush());
}

/// Writes `value` to standard output as pretty JSON, the answer of a command meant to be
/// piped (`persona log stats | jq .records`); see [`print_with`].
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    print_with(|out| {
        serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
        writeln!(out)
    })
}

/// Writes a command's answer to standard output with `write`. A reader that stops early
/// (`| head -3`) ends the output without an error, as it does for the usual Unix tools;
/// any other failure to write is the command's error.
pub fn print_with(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
