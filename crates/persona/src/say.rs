//! Lines for a person that never fail the command: a closed standard error (`persona
//! import big.jsonl 2>&1 | head -1`) or output (`persona serve | head -1`) is no reason to
//! stop half way, as `eprintln!` and `println!` would by panicking.

/// Writes one line to standard error, ignoring a failure to write it.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say::line(format_args!($($arg)*))
    };
}
pub(crate) use say;

pub fn line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{args}");
}

/// Writes one line to standard output, flushed, ignoring a failure to write it (for lines
/// whose content is also in the log or the data folder).
pub fn stdout_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{args}").and_then(|()| out.flush());
}
