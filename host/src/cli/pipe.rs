//! When the reader of weir's output goes away (`weir runs list | head -1`),
//! a command that only prints ends there, quietly, as `ls` or `cat` do:
//! SIGPIPE is left to do what it does by default. Rust ignores SIGPIPE at
//! start, so `println!` would panic on the closed pipe instead.
//!
//! Only for commands that print and then end: a run, a server, a worker or
//! the target talk over sockets, where a peer that closes must be an error
//! to handle, never a signal that kills the process. Their own output
//! ignores a closed stdout and they go on (`report::live`).

/// Let a closed stdout end this process, silently.
pub fn end_with_the_reader() {
    // SAFETY: setting a signal's disposition to the default has no
    // preconditions; it is done before any thread of ours exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
