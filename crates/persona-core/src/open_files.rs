//! This process's limit on open files, raised as far as the system allows.
//!
//! Many systems start a process with a soft limit of 1,024 open files and a much higher
//! hard limit. Every connection is a file, so with that soft limit a server refuses
//! connections long before its own connection cap; Go's runtime and nginx
//! (`worker_rlimit_nofile`) raise the soft limit at start for the same reason. Raising it up
//! to the hard limit needs no privilege.

/// Raises the soft limit on open files to `wanted`, or to the hard limit when that is lower,
/// and returns the soft limit now in force.
pub fn raise_limit(wanted: u64) -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // `rlim_t` is `u64` on Linux, the only system persona runs on.
    let target = wanted.min(limit.rlim_max);
    if limit.rlim_cur >= target {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(target)
}
