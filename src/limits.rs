//! Process limits. Every waiting long-poll holds descriptors (kansas: one to the client, one to
//! the shard), so the binaries raise the soft open-file limit to the hard one at start, and a
//! worker accepts no more client connections than its descriptors can carry: at the limit it
//! stops accepting (as nginx's `worker_connections`), instead of running out of descriptors
//! and failing its connects to healthy shards.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// Descriptors kept for everything but the client connections and their shard connections:
/// listeners, the control socket, the database, logs, connections that are closing.
pub const FD_RESERVE: u64 = 256;

/// How many client connections `fd_limit` descriptors carry: two each (client and shard).
pub fn connections_within(fd_limit: u64) -> usize {
    (fd_limit.saturating_sub(FD_RESERVE) / 2).max(1) as usize
}

/// `max_connections`, lowered to what this process's open-file limit carries.
pub fn effective_max_connections(max_connections: usize) -> usize {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) => max_connections.min(connections_within(soft)),
        Err(_) => max_connections,
    }
}

/// Warns when the open-file limit carries fewer client connections than configured.
pub fn warn_if_short(fd_limit: Option<u64>, max_connections: usize) {
    let Some(limit) = fd_limit else { return };
    let carried = connections_within(limit);
    if carried < max_connections {
        tracing::warn!(
            fd_limit = limit,
            max_connections,
            carried,
            "the open-file limit carries {carried} client connections (2 descriptors each, \
             {FD_RESERVE} spare), fewer than proxy.max_connections: accepting pauses there; \
             raise the limit (LimitNOFILE= for systemd, minfds for supervisord, ulimit -n)"
        );
    }
}

/// Whether an I/O error means this process (`EMFILE`) or the system (`ENFILE`) is out of file
/// descriptors: kansas's own condition, never the peer's.
pub fn out_of_fds(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    matches!(e.raw_os_error(), Some(code) if code == Errno::EMFILE as i32 || code == Errno::ENFILE as i32)
}

#[cfg(test)]
mod tests {
    use super::out_of_fds;

    #[test]
    fn two_descriptors_per_connection_after_the_reserve() {
        assert_eq!(super::connections_within(20_000), 9_872);
        assert_eq!(super::connections_within(400), 72);
        assert_eq!(super::connections_within(100), 1);
    }

    #[test]
    fn emfile_and_enfile_are_out_of_fds_other_errors_are_not() {
        let e = |code| std::io::Error::from_raw_os_error(code);
        assert!(out_of_fds(&e(nix::errno::Errno::EMFILE as i32)));
        assert!(out_of_fds(&e(nix::errno::Errno::ENFILE as i32)));
        assert!(!out_of_fds(&e(nix::errno::Errno::ECONNREFUSED as i32)));
        assert!(!out_of_fds(&std::io::Error::other("x")));
    }
}
