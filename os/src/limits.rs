//! Resource limits a server raises for itself.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raise the soft limit of open files to the hard limit (systemd's advice for services
/// that hold many sockets: the soft default of 1024 is for `select(2)` users). Returns
/// `(from, to)` when it changed, `None` when the soft limit already was the hard one.
///
/// # Errors
/// The OS error of `getrlimit`/`setrlimit`.
pub fn raise_nofile() -> nix::Result<Option<(u64, u64)>> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= hard {
        return Ok(None);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(Some((soft, hard)))
}

/// `max-fd`: set the open files limit, soft and hard, to `n` (as uWSGI's `max-fd`).
/// Raising the hard limit needs root (`CAP_SYS_RESOURCE`).
///
/// # Errors
/// What `setrlimit(2)` gives (`EPERM` above the hard limit without privilege).
pub fn set_nofile(n: u64) -> nix::Result<()> {
    setrlimit(Resource::RLIMIT_NOFILE, n, n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        raise_nofile().unwrap();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft, hard);
        assert_eq!(raise_nofile().unwrap(), None);
    }
}
