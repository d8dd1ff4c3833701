//! File-descriptor passing between the master and its workers: the control `socketpair`, the
//! listening sockets sent over it with SCM_RIGHTS, and turning received descriptor numbers back
//! into owned sockets. The only module allowed `unsafe` code: each block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use sendfd::{RecvWithFd, SendWithFd};

/// Marks the payload that carries the listeners.
const LISTENERS: &[u8] = b"kansas-listeners-v1";

fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flags))
        .map(|_| ())
        .map_err(io::Error::from)
}

/// A control channel: the master's end (close-on-exec) and the worker's end (inherited by the
/// worker process, then closed in the master).
pub fn control_pair() -> io::Result<(UnixStream, UnixStream)> {
    let (master, worker) = UnixStream::pair()?;
    set_cloexec(master.as_raw_fd(), true)?;
    set_cloexec(worker.as_raw_fd(), false)?;
    Ok((master, worker))
}

/// Sends the proxy and admin listeners to a worker.
pub fn send_listeners(
    control: &UnixStream,
    proxy: &TcpListener,
    admin: &TcpListener,
) -> io::Result<()> {
    let fds = [proxy.as_raw_fd(), admin.as_raw_fd()];
    let sent = control.send_with_fd(LISTENERS, &fds)?;
    if sent != LISTENERS.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short listener message",
        ));
    }
    Ok(())
}

/// Takes ownership of the control descriptor a worker was started with, and marks it
/// close-on-exec.
pub fn control_from_fd(fd: RawFd) -> io::Result<UnixStream> {
    // The descriptor must be open and a socket before we claim it.
    let stat = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
    if stat.st_mode & libc_s_ifmt() != libc_s_ifsock() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a socket"),
        ));
    }
    // SAFETY: `fd` was inherited from the master for this purpose, is open (fstat succeeded) and
    // is a socket; nothing else in this process owns it, so taking ownership once is sound.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(owned.as_raw_fd(), true)?;
    Ok(UnixStream::from(owned))
}

const fn libc_s_ifmt() -> u32 {
    0o170000
}

const fn libc_s_ifsock() -> u32 {
    0o140000
}

/// Receives the proxy and admin listeners (close-on-exec, owned).
pub fn recv_listeners(control: &UnixStream) -> io::Result<(TcpListener, TcpListener)> {
    let mut buf = [0u8; 64];
    let mut fds = [-1 as RawFd; 2];
    let (n, nfds) = control.recv_with_fd(&mut buf, &mut fds)?;
    // SAFETY: recvmsg installed these descriptors in this process just now (SCM_RIGHTS); each
    // is owned by nobody else, and is claimed exactly once here.
    let owned: Vec<OwnedFd> = fds[..nfds]
        .iter()
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    for fd in &owned {
        set_cloexec(fd.as_raw_fd(), true)?;
    }
    if &buf[..n] != LISTENERS || owned.len() != 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "expected the two listening sockets",
        ));
    }
    let mut it = owned.into_iter();
    let proxy = TcpListener::from(it.next().expect("two fds"));
    let admin = TcpListener::from(it.next().expect("two fds"));
    Ok((proxy, admin))
}
