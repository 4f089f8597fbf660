//! Sockets made inside another process's network namespace.
//!
//! A sandboxed program (or deployed instance) has a network namespace of
//! its own, with only loopback in it. weir reaches into it with sockets
//! that were *created* there, and then used from weir's own side: a
//! socket keeps the namespace it was made in for its whole life. So
//! weir's egress proxy listens inside the program's namespace while it
//! connects out from the host's, and the ingress relay of a deployed
//! instance accepts on the host while it connects to the instance's
//! loopback.
//!
//! Entering a namespace is per process (a user namespace can only be
//! entered by a single-threaded process), so a [`Factory`] is a child
//! forked once: it enters the namespace (the user namespace that owns it
//! first, where weir is not root) and then, for each request on a Unix
//! socket, makes one socket and hands it back with `SCM_RIGHTS`. It dies
//! with weir (`PR_SET_PDEATHSIG`) or when its [`Factory`] is dropped.
//! Between `fork` and `_exit` it makes system calls only: no allocation,
//! no locks.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

/// One request: `L` + port (a listener on 0.0.0.0:port) or `S` (an
/// unconnected TCP socket).
const REQUEST: usize = 3;

/// A forked child inside a network namespace that makes sockets there.
#[derive(Debug)]
pub struct Factory {
    ctl: Mutex<UnixStream>,
    pid: libc::pid_t,
}

impl Factory {
    /// A factory in the network namespace of process `pid`.
    pub fn enter(pid: u32) -> io::Result<Self> {
        let open = |kind: &str| -> io::Result<OwnedFd> {
            let f = std::fs::File::open(format!("/proc/{pid}/ns/{kind}"))?;
            Ok(OwnedFd::from(f))
        };
        let net = open("net")?;
        let user = open("user")?;
        let (ours, theirs) = UnixStream::pair()?;
        let (net_fd, user_fd, ctl_fd) = (net.as_raw_fd(), user.as_raw_fd(), theirs.as_raw_fd());
        let parent = unsafe { libc::getpid() };
        // SAFETY: the child makes only async-signal-safe system calls on
        // descriptors opened before the fork, and leaves with `_exit`.
        let child = unsafe { libc::fork() };
        match child {
            -1 => return Err(io::Error::last_os_error()),
            0 => unsafe { serve(parent, net_fd, user_fd, ctl_fd, ours.as_raw_fd()) },
            _ => {}
        }
        drop(theirs);
        let factory = Factory {
            ctl: Mutex::new(ours),
            pid: child,
        };
        // The first answer says whether the namespace was entered.
        receive(&factory.ctl.lock().unwrap_or_else(|p| p.into_inner())).map(drop)?;
        Ok(factory)
    }

    /// A listener on 0.0.0.0:`port` in the namespace (only loopback is
    /// there, so it is the namespace's 127.0.0.1:`port`).
    pub fn listener(&self, port: u16) -> io::Result<TcpListener> {
        let [hi, lo] = port.to_be_bytes();
        let fd = self.request([b'L', hi, lo])?;
        Ok(TcpListener::from(fd))
    }

    /// A connection to 127.0.0.1:`port` in the namespace, made from here.
    pub fn connect(&self, port: u16) -> io::Result<TcpStream> {
        let fd = self.request([b'S', 0, 0])?;
        let address = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: a valid socket and a sockaddr_in of the size given.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&address as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TcpStream::from(fd))
    }

    fn request(&self, request: [u8; REQUEST]) -> io::Result<OwnedFd> {
        use std::io::Write;
        // One request and its answer at a time: answers come in order, but
        // a listener must not go to whoever asked for a plain socket.
        let ctl = self.ctl.lock().unwrap_or_else(|p| p.into_inner());
        (&*ctl).write_all(&request)?;
        receive(&ctl)?.ok_or_else(|| io::Error::other("the namespace's socket factory sent no socket"))
    }
}

/// One answer on `ctl`: an errno (0 for success) and maybe a descriptor.
fn receive(ctl: &UnixStream) -> io::Result<Option<OwnedFd>> {
    let mut errno = [0u8; 4];
    let mut space = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: errno.as_mut_ptr().cast(),
        iov_len: errno.len(),
    };
    // SAFETY: msghdr points at live buffers of the sizes given.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&space) as _;
    let n = unsafe { libc::recvmsg(ctl.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != errno.len() {
        return Err(io::Error::other(
            "the namespace's socket factory ended (the sandbox is gone?)",
        ));
    }
    let mut fd = None;
    // SAFETY: walking the control messages the kernel wrote.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let raw: RawFd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    match i32::from_ne_bytes(errno) {
        0 => Ok(fd),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

impl Drop for Factory {
    fn drop(&mut self) {
        // SAFETY: our own child; reaped so it leaves no zombie.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// The forked child: enter the namespace, then answer requests until the
/// other end closes. Never returns.
///
/// # Safety
/// Only to be called in a freshly forked child.
unsafe fn serve(parent: libc::pid_t, net: RawFd, user: RawFd, ctl: RawFd, other_end: RawFd) -> ! {
    unsafe {
        libc::close(other_end);
        // Keep nothing of weir's but the three descriptors needed here: a
        // copy of another program's pipe would hold it open.
        let mut keep = [net, user, ctl];
        keep.sort_unstable();
        let mut from = 3;
        for k in keep {
            if k > from {
                libc::syscall(
                    libc::SYS_close_range,
                    from as libc::c_uint,
                    (k - 1) as libc::c_uint,
                    0,
                );
            }
            from = k + 1;
        }
        libc::syscall(libc::SYS_close_range, from as libc::c_uint, libc::c_uint::MAX, 0);
        if libc::getppid() != parent {
            libc::_exit(0);
        }
        // Root enters the network namespace directly; anyone else enters
        // the user namespace that owns it first, where it then holds the
        // capabilities that takes.
        if libc::setns(net, libc::CLONE_NEWNET) != 0
            && (libc::setns(user, libc::CLONE_NEWUSER) != 0 || libc::setns(net, libc::CLONE_NEWNET) != 0)
        {
            answer(ctl, errno(), -1);
            libc::_exit(1);
        }
        libc::close(net);
        libc::close(user);
        answer(ctl, 0, -1);
        loop {
            let mut request = [0u8; REQUEST];
            let n = libc::recv(ctl, request.as_mut_ptr().cast(), REQUEST, libc::MSG_WAITALL);
            if n != REQUEST as isize {
                libc::_exit(0);
            }
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                answer(ctl, errno(), -1);
                continue;
            }
            if request[0] == b'L' {
                let one: libc::c_int = 1;
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_REUSEADDR,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
                let address = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: u16::from_be_bytes([request[1], request[2]]).to_be(),
                    sin_addr: libc::in_addr { s_addr: 0 },
                    sin_zero: [0; 8],
                };
                if libc::bind(
                    fd,
                    (&address as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                ) != 0
                    || libc::listen(fd, 128) != 0
                {
                    answer(ctl, errno(), -1);
                    libc::close(fd);
                    continue;
                }
            }
            answer(ctl, 0, fd);
            libc::close(fd);
        }
    }
}

unsafe fn errno() -> i32 {
    unsafe { *libc::__errno_location() }
}

/// Send `errno` and, if `fd >= 0`, the descriptor. No allocation.
unsafe fn answer(ctl: RawFd, errno: i32, fd: RawFd) {
    unsafe {
        let mut bytes = errno.to_ne_bytes();
        let mut iov = libc::iovec {
            iov_base: bytes.as_mut_ptr().cast(),
            iov_len: bytes.len(),
        };
        let mut space = [0u64; 8];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if fd >= 0 {
            msg.msg_control = space.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), fd);
        }
        libc::sendmsg(ctl, &msg, libc::MSG_NOSIGNAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_factory_in_our_own_namespace_listens_and_connects() {
        let me = std::process::id();
        let factory = match Factory::enter(me) {
            Ok(f) => f,
            // Entering even one's own namespace takes CAP_SYS_ADMIN.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) || e.raw_os_error() == Some(libc::EINVAL) => {
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let listener = factory.listener(0).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut stream = factory.connect(port).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        use std::io::{Read, Write};
        stream.write_all(b"hi").unwrap();
        let mut got = [0u8; 2];
        accepted.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
    }
}
