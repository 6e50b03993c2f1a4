//! Lines for a person on standard error that never fail the command: a closed standard
//! error (`persona import big.jsonl 2>&1 | head -1`) is no reason to stop an import half
//! way, as `eprintln!` would by panicking.

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
