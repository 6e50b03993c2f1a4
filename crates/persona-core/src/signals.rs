//! What the process inherited for a signal's disposition.

/// Whether `signal` was set to be ignored when this process started, as `nohup` does for
/// SIGHUP. Installing a handler replaces that, so a server that handles the signal asks
/// first and leaves an ignored one ignored.
pub fn is_ignored(signal: libc::c_int) -> bool {
    // SAFETY: a null `act` only reads the current disposition into `old`, which is a
    // plain struct the call fills in.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untouched_signal_is_not_ignored() {
        // SIGUSR2 is left alone by the test harness.
        assert!(!is_ignored(libc::SIGUSR2));
    }
}
