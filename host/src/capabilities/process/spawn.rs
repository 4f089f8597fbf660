//! Running one program: bubblewrap or not, its cgroup, its egress
//! proxy, its output streamed into the log and cut at the limit, and its
//! whole process group killed when the call ends or is dropped.

use super::*;

/// Why a program is stopped before it ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Its timeout passed.
    Timeout,
    /// Its run was cancelled.
    Cancelled,
}

/// The two pipes between weir and a bubblewrap whose namespace gets the
/// egress proxy: bubblewrap writes its child's pid to `info`, and waits
/// to read a byte from `block`. Both are close-on-exec here; the child's
/// ends are made inheritable only in the forked bubblewrap.
pub(super) struct NamespacePipes {
    /// Read: bubblewrap's JSON with `child-pid`.
    info: std::os::fd::OwnedFd,
    /// bubblewrap's end of `info`.
    info_child: std::os::fd::OwnedFd,
    /// Write: one byte lets bubblewrap go on.
    block: std::os::fd::OwnedFd,
    /// bubblewrap's end of `block`.
    block_child: std::os::fd::OwnedFd,
}

impl NamespacePipes {
    pub(super) fn new() -> std::io::Result<Self> {
        let (info, info_child) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let (block_child, block) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        Ok(Self {
            info,
            info_child,
            block,
            block_child,
        })
    }

    pub(super) fn child_ends(&self) -> [std::os::fd::RawFd; 2] {
        use std::os::fd::AsRawFd;
        [self.info_child.as_raw_fd(), self.block_child.as_raw_fd()]
    }
}

/// Times a program is started again when bubblewrap could not make its
/// sandbox because something it was to hide vanished meanwhile.
const VANISHED_RETRIES: usize = 3;

/// Said once per run, by the first program that runs unconfined.
pub const NO_BUBBLEWRAP: &str = "bubblewrap is not installed, so this run's programs run without a sandbox: allow.read and allow.network are not enforced. Install it (Debian, Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap), or set sandbox = \"none\" on the stage to accept this";

/// bubblewrap failed to mount over a path that was there when the view was
/// walked and is gone now (a build's temporary directory, under a granted
/// directory a build writes to): it never started the program.
fn vanished_mount(exit: &Exit) -> bool {
    let stderr = String::from_utf8_lossy(&exit.stderr);
    exit.code == Some(1)
        && stderr.starts_with("bwrap: Can't ")
        && (stderr.contains("No such file or directory") || stderr.contains("Read-only file system"))
}

impl ProcessCtx {
    /// Run the program; in bubblewrap, again (with a fresh walk of what to
    /// hide) when what it was to hide vanished while its sandbox was made.
    pub(super) async fn execute(&self, cmd: Command, p: Prepared) -> Result<Exit, HostError> {
        if !matches!(self.sandbox, Sandbox::Bubblewrap(_)) {
            return self.execute_once(cmd, p).await;
        }
        for _ in 0..VANISHED_RETRIES {
            let exit = self.execute_once(cmd.clone(), p.clone()).await?;
            if !vanished_mount(&exit) {
                return Ok(exit);
            }
            self.notice(format!(
                "`{}` was started again: something its sandbox hides vanished while the sandbox was made ({})",
                cmd.program.trim(),
                String::from_utf8_lossy(&exit.stderr).trim()
            ));
        }
        self.execute_once(cmd, p).await
    }

    async fn execute_once(&self, cmd: Command, p: Prepared) -> Result<Exit, HostError> {
        let name = cmd.program.trim().to_string();
        if self.sandbox == Sandbox::Unavailable && self.sink.first_time("no-bubblewrap") {
            self.notice(NO_BUBBLEWRAP.to_string());
        }
        let group = self.program_group(&name)?;
        // A program granted network reaches it only through weir's proxy,
        // from a namespace of its own: bubblewrap tells where that is
        // (`--info-fd`) and waits (`--block-fd`) until the proxy listens.
        let egress = match (&self.sandbox, self.grants.network.is_empty()) {
            (Sandbox::Bubblewrap(_), false) => Some(
                NamespacePipes::new()
                    .map_err(|e| HostError::Failed(format!("cannot prepare `{name}`'s network: {e}")))?,
            ),
            _ => None,
        };
        let mut command = match &self.sandbox {
            Sandbox::Bubblewrap(bwrap) => {
                let view = self.read_only_view();
                let shown = view.clone();
                let workspace = self.workspace.clone();
                let masked = tokio::task::spawn_blocking(move || unreadable_in(&shown, &workspace))
                    .await
                    .map_err(|e| HostError::Failed(format!("cannot prepare the sandbox: {e}")))?;
                self.bubblewrap(bwrap, &p, &cmd.args, &view, &masked, egress.as_ref())
            }
            Sandbox::Unavailable | Sandbox::OptedOut => {
                let mut c = tokio::process::Command::new(&p.program);
                c.args(&cmd.args).current_dir(&p.cwd);
                c
            }
        };
        command
            .env_clear()
            .envs(&p.env)
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if egress.is_some() {
            command.env_remove("NO_PROXY").env_remove("no_proxy");
            command.envs(crate::capabilities::egress::proxy_env());
        }
        let limits = self.limits;
        let procs = group.as_ref().map(ProgramGroup::procs);
        let inherited = egress.as_ref().map(NamespacePipes::child_ends);
        // SAFETY: only async-signal-safe calls (open, write, close,
        // setrlimit, fcntl) between fork and exec, touching no memory
        // shared with the parent.
        unsafe {
            command.pre_exec(move || {
                if let Some(procs) = &procs {
                    crate::confine::cgroup::join(procs)?;
                }
                if let Some(fds) = inherited {
                    for fd in fds {
                        if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                }
                apply_rlimits(&limits)
            });
        }
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| HostError::Failed(format!("cannot start `{}`: {e}", p.program.display())))?;
        let process_group = child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32));
        // From here on, however this call ends (even dropped mid-way), the
        // whole process group is killed, and then (dropping `group`) all
        // that is left in the program's cgroup.
        let _guard = GroupGuard(process_group);
        // The proxy lives as long as this call.
        let _proxy = match egress {
            Some(pipes) => Some(self.start_proxy(&name, pipes).await.map_err(|e| {
                HostError::Failed(format!(
                    "`{name}` was not started: cannot give it its network (the proxy to the hosts {} grants): {e}",
                    self.who()
                ))
            })?),
            None => None,
        };

        if let (Some(input), Some(mut stdin)) = (cmd.stdin, child.stdin.take()) {
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            });
        }
        let out = child
            .stdout
            .take()
            .map(|s| self.collect(s, Level::Info, "stdout", cmd.quiet));
        let err = child
            .stderr
            .take()
            .map(|s| self.collect(s, Level::Warn, "stderr", cmd.quiet));
        let streams = async {
            let (o, e) = tokio::join!(
                async {
                    match out {
                        Some(f) => f.await,
                        None => (Vec::new(), false),
                    }
                },
                async {
                    match err {
                        Some(f) => f.await,
                        None => (Vec::new(), false),
                    }
                }
            );
            let status = child.wait().await;
            (o, e, status)
        };
        tokio::pin!(streams);

        // The program ends by itself, at its timeout, or when the run is
        // cancelled; the last two get SIGTERM, then SIGKILL after a grace.
        let stopping = self.stopping.clone();
        let first = tokio::select! {
            done = tokio::time::timeout(p.timeout, &mut streams) => done.map_err(|_| Stop::Timeout),
            () = stopping.stopped() => Err(Stop::Cancelled),
        };
        let (timed_out, ((stdout, stdout_cut), (stderr, stderr_cut), status)) = match first {
            Ok(done) => (false, done),
            Err(stop) => {
                // Inside bubblewrap the programs are in a session of their
                // own: they are reached through their cgroup (bubblewrap
                // itself would take them down with SIGKILL).
                let in_bwrap = matches!(self.sandbox, Sandbox::Bubblewrap(_));
                let reached = group
                    .as_ref()
                    .map_or(0, |g| g.signal_programs(rustix::process::Signal::TERM));
                if !in_bwrap || reached == 0 {
                    signal_group(process_group, rustix::process::Signal::TERM);
                }
                let grace = match stop {
                    Stop::Timeout => KILL_GRACE,
                    Stop::Cancelled => CANCEL_GRACE,
                };
                let done = match tokio::time::timeout(grace, &mut streams).await {
                    Ok(done) => done,
                    Err(_) => {
                        signal_group(process_group, rustix::process::Signal::KILL);
                        // What left the process group is still in the
                        // cgroup.
                        if let Some(g) = &group {
                            g.kill_all().await;
                        }
                        match tokio::time::timeout(DRAIN_AFTER_KILL, &mut streams).await {
                            Ok(done) => done,
                            Err(_) => {
                                self.report_refused_forks(&name, group.as_ref());
                                if let Some(g) = group {
                                    g.close().await;
                                }
                                self.notice(format!(
                                        "`{name}` was killed at its timeout or with its cancelled run, but a process it started left its process group and still holds its output open (run it inside bubblewrap to contain such processes)"
                                    ));
                                return Ok(Exit {
                                    code: None,
                                    signal: Some(9),
                                    stdout: Vec::new(),
                                    stderr: Vec::new(),
                                    stdout_truncated: true,
                                    stderr_truncated: true,
                                    timed_out: true,
                                    duration_ms: started.elapsed().as_millis() as u64,
                                });
                            }
                        }
                    }
                };
                match stop {
                    Stop::Timeout => self.notice(format!(
                        "`{name}` ran past its timeout of {} ms and was killed with its process group",
                        p.timeout.as_millis()
                    )),
                    Stop::Cancelled => self.notice(format!(
                        "`{name}` was stopped with its process group: the run was cancelled (SIGTERM, then SIGKILL after {} s)",
                        CANCEL_GRACE.as_secs()
                    )),
                }
                (stop == Stop::Timeout, done)
            }
        };
        self.report_refused_forks(&name, group.as_ref());
        if let Some(g) = group {
            g.close().await;
        }
        let status = status.map_err(|e| HostError::Failed(format!("waiting for `{name}` failed: {e}")))?;
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            Some(24) => self.notice(format!(
                "`{name}` was killed for using more than {} s of CPU time (limit `process-cpu`)",
                self.limits.cpu_seconds
            )),
            Some(25) => self.notice(format!(
                "`{name}` was killed for writing a file larger than {} (limit `process-file-size`)",
                crate::engine::limits::human_bytes(self.limits.file_bytes as usize)
            )),
            _ => {}
        }
        Ok(Exit {
            code: status.code(),
            signal: status.signal(),
            stdout,
            stderr,
            stdout_truncated: stdout_cut,
            stderr_truncated: stderr_cut,
            timed_out,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// The pids cgroup `name` runs in. Where the host has none: a refusal
    /// if the tenant sets `limits.processes`, else a notice when weir runs
    /// as root (RLIMIT_NPROC then holds nothing) and no cgroup.
    pub(super) fn program_group(&self, name: &str) -> Result<Option<ProgramGroup>, HostError> {
        let max = self.limits.pids.unwrap_or(DEFAULT_PROCESSES);
        let mut group = match ProgramGroup::create(max) {
            Ok(group) => Some(group),
            Err(why) if self.limits.pids.is_some() || self.limits.memory_bytes.is_some() => {
                let limit = match self.limits.pids {
                    Some(_) => format!("{max} processes (limit `processes`)"),
                    None => "their memory (limit `program-memory`), for which each needs a cgroup of its own"
                        .into(),
                };
                return Err(HostError::Failed(format!(
                    "`{name}` was not started: tenant `{}` limits programs to {limit}, which cannot be enforced here: {why}",
                    self.tenant
                )));
            }
            Err(why) => {
                if rustix::process::geteuid().is_root()
                    && !self
                        .warned_no_pids
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    self.notice(format!(
                        "`{name}` runs without a process limit: weir runs as root, where RLIMIT_NPROC holds nothing, and {why}"
                    ));
                }
                None
            }
        };
        if let (Some(bytes), Some(g)) = (self.limits.memory_bytes, group.as_mut()) {
            g.limit_memory(bytes).map_err(|crate::confine::cgroup::NoMemoryCgroup(why)| {
                HostError::Failed(format!(
                    "`{name}` was not started: tenant `{}` limits programs to {} of memory (limit `program-memory`), which cannot be enforced here: {why}",
                    self.tenant,
                    crate::engine::limits::human_bytes(bytes as usize)
                ))
            })?;
        }
        Ok(group)
    }

    /// The egress proxy inside the namespace of the bubblewrap that
    /// `pipes` were given to; then bubblewrap may go on.
    pub(super) async fn start_proxy(
        &self,
        name: &str,
        pipes: NamespacePipes,
    ) -> std::io::Result<crate::capabilities::egress::Serving> {
        let NamespacePipes {
            info,
            info_child,
            block,
            block_child,
        } = pipes;
        // bubblewrap holds its own copies now: a bubblewrap that fails
        // early then ends `info` for us.
        drop((info_child, block_child));
        let listener = tokio::task::spawn_blocking(move || -> std::io::Result<std::net::TcpListener> {
            let pid = sandbox_pid(std::fs::File::from(info))?;
            crate::netns::Factory::enter(pid)?.listener(crate::capabilities::egress::PROXY_PORT)
        })
        .await
        .map_err(std::io::Error::other)??;
        let (sink, budget, stage) = (self.sink.clone(), self.budget.clone(), self.stage.clone());
        let serving = crate::capabilities::egress::serve(
            listener,
            crate::capabilities::egress::Egress {
                granted: self.grants.network.clone(),
                who: self.who(),
                program: name.to_string(),
                refused: Box::new(move |message| {
                    emit_line(&sink, &budget, &stage, Level::Warn, &message, Default::default());
                }),
            },
        )?;
        use std::io::Write;
        std::fs::File::from(block).write_all(b"1")?;
        Ok(serving)
    }

    /// A notice when the program's cgroup refused forks.
    pub(super) fn report_refused_forks(&self, name: &str, group: Option<&ProgramGroup>) {
        let killed = group.map_or(0, ProgramGroup::oom_kills);
        if let (true, Some(bytes)) = (killed > 0, self.limits.memory_bytes) {
            self.notice(format!(
                "`{name}` used more than {} of memory with what it started (shared memory and in-memory files included): {killed} process(es) killed (limit `program-memory`)",
                crate::engine::limits::human_bytes(bytes as usize)
            ));
        }
        let refused = group.map_or(0, ProgramGroup::refused);
        if refused > 0 {
            self.notice(format!(
                "`{name}` hit its limit of {} processes at once: {refused} fork(s) refused (limit `processes`)",
                self.limits.pids.unwrap_or(DEFAULT_PROCESSES)
            ));
        }
    }

    /// What the sandbox shows of the host, read-only: the system
    /// directories, the allowed parts of `/etc`, and the toolchains and
    /// `allow.read` directories the stage's own environment names.
    pub(super) fn read_only_view(&self) -> Vec<PathBuf> {
        let mut view: Vec<PathBuf> = SYSTEM_DIRS.iter().map(PathBuf::from).collect();
        view.extend(ETC_ALLOWED.iter().map(|e| Path::new("/etc").join(e)));
        view.extend(self.extra_read_only());
        view.retain(|p| p.exists());
        view
    }

    /// The bubblewrap command line for `p`, showing `view` read-only with
    /// `masked` (what in it others may not read) hidden.
    pub(super) fn bubblewrap(
        &self,
        bwrap: &Path,
        p: &Prepared,
        args: &[String],
        view: &[PathBuf],
        masked: &[Masked],
        egress: Option<&NamespacePipes>,
    ) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(bwrap);
        // Fresh /proc, /dev and a bounded /tmp and /dev/shm first: later
        // mounts (the workspace may well live under /tmp) go on top of
        // them, not under. Every other in-memory filesystem bubblewrap
        // makes (the root, /dev) is made read-only last, so nothing the
        // program writes in memory escapes these sizes.
        let (tmp, shm) = self.limits.tmpfs_sizes();
        private_mounts(&mut c, tmp, shm);
        mount_view(&mut c, view, masked);
        let ws = self.workspace.display().to_string();
        c.args(["--bind", &ws, &ws])
            .args(["--remount-ro", "/dev", "--remount-ro", "/"])
            .args(["--unshare-all", "--new-session", "--die-with-parent"])
            .args(UNPRIVILEGED);
        // Its own network namespace always (only loopback in it); the
        // proxy is its way out when the stage grants network.
        if let Some(pipes) = egress {
            let [info, block] = pipes.child_ends();
            c.arg("--info-fd").arg(info.to_string());
            c.arg("--block-fd").arg(block.to_string());
        }
        c.arg("--chdir").arg(&p.cwd).arg("--").arg(&p.program).args(args);
        c
    }

    /// Read-only mounts beyond the system directories: the entries of the
    /// stage's `PATH` (a toolchain in `~/.cargo/bin`; the program was found
    /// on it) and what the stage grants with `allow.read`. Nothing the
    /// plugin chooses can add to these.
    pub(super) fn extra_read_only(&self) -> Vec<PathBuf> {
        let path = self
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
        let mut dirs: Vec<PathBuf> = path.split(':').map(PathBuf::from).collect();
        dirs.extend(self.grants.read.iter().cloned());
        dirs.retain(|d| {
            d.is_absolute()
                && d.exists()
                && d != Path::new("/")
                && !d.starts_with("/etc")
                && !SYSTEM_DIRS.iter().any(|s| d.starts_with(s))
                && !d.starts_with(&self.workspace)
        });
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Stream `stream` into the log line by line and keep the first
    /// `output_bytes` of it; returns (kept, cut). Reads in chunks, so a
    /// program that never prints a newline cannot grow a line without
    /// bound: lines are cut at [`MAX_LINE_BYTES`] for the log.
    pub(super) fn collect<R: AsyncRead + Unpin + Send + 'static>(
        &self,
        stream: R,
        level: Level,
        name: &'static str,
        quiet: bool,
    ) -> impl std::future::Future<Output = (Vec<u8>, bool)> + Send + 'static {
        let sink = self.sink.clone();
        let budget = self.budget.clone();
        let stage = self.stage.clone();
        let limit = self.limits.output_bytes;
        let over_limit_notice = self.notices.load(std::sync::atomic::Ordering::Relaxed) < MAX_NOTICES;
        let secrets = self.secrets.clone();
        async move {
            let mut reader = BufReader::new(stream);
            let mut kept = Vec::new();
            let mut cut = false;
            let mut line: Vec<u8> = Vec::new();
            // A line longer than MAX_LINE_BYTES is cut: a value the cut
            // splits must not reach the log in part.
            let flush = |line: &mut Vec<u8>| {
                if !quiet && !line.is_empty() {
                    let shown = match line.len() >= MAX_LINE_BYTES {
                        true => secrets.mask_cut(std::mem::take(line)),
                        false => std::mem::take(line),
                    };
                    emit_line(
                        &sink,
                        &budget,
                        &stage,
                        level,
                        &String::from_utf8_lossy(&shown),
                        BTreeMap::new(),
                    );
                }
                line.clear();
            };
            loop {
                let chunk = match reader.fill_buf().await {
                    Ok([]) | Err(_) => break,
                    Ok(chunk) => chunk,
                };
                let (piece, newline) = match chunk.iter().position(|b| *b == b'\n') {
                    Some(i) => (&chunk[..=i], true),
                    None => (chunk, false),
                };
                let n = piece.len();
                let room = limit - kept.len();
                if n <= room {
                    kept.extend_from_slice(piece);
                } else {
                    kept.extend_from_slice(&piece[..room]);
                    if !cut && over_limit_notice {
                        emit_notice(
                            &sink,
                            &stage,
                            Level::Warn,
                            format!(
                                "{name} cut at {} for the plugin (limit `process-output`); the program kept running",
                                crate::engine::limits::human_bytes(limit)
                            ),
                        );
                    }
                    cut = true;
                }
                let line_room = MAX_LINE_BYTES.saturating_sub(line.len());
                line.extend_from_slice(&piece[..n.min(line_room)]);
                reader.consume(n);
                if newline {
                    flush(&mut line);
                }
            }
            flush(&mut line);
            (kept, cut)
        }
    }
}
/// Kills a process group when dropped.
pub(super) struct GroupGuard(Option<rustix::process::Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        signal_group(self.0, rustix::process::Signal::KILL);
    }
}

pub(super) fn signal_group(group: Option<rustix::process::Pid>, signal: rustix::process::Signal) {
    if let Some(pid) = group {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

pub(super) fn apply_rlimits(l: &ProcessLimits) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let set = |r: Resource, v: u64| {
        // Never above the current hard limit: raising it would fail.
        let v = getrlimit(r).maximum.map_or(v, |hard| hard.min(v));
        setrlimit(
            r,
            Rlimit {
                current: Some(v),
                maximum: Some(v),
            },
        )
    };
    set(Resource::Cpu, l.cpu_seconds)?;
    set(Resource::Nofile, l.open_files)?;
    set(Resource::Nproc, l.processes)?;
    set(Resource::Fsize, l.file_bytes)?;
    if let Some(data) = l.data_bytes {
        set(Resource::Data, data)?;
    }
    Ok(())
}

#[cfg(test)]
mod vanished {
    use super::*;

    fn exit(code: i32, stderr: &str) -> Exit {
        Exit {
            code: Some(code),
            signal: None,
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
            stdout_truncated: false,
            stderr_truncated: false,
            timed_out: false,
            duration_ms: 1,
        }
    }

    #[test]
    fn only_a_mount_over_something_gone_is_tried_again() {
        assert!(vanished_mount(&exit(
            1,
            "bwrap: Can't mkdir /repo/target/debug/deps/rmetaLQUCZL: Read-only file system\n"
        )));
        assert!(vanished_mount(&exit(
            1,
            "bwrap: Can't mount tmpfs on /x/y: No such file or directory\n"
        )));
        // The program's own failures, and other sandbox failures, are not.
        assert!(!vanished_mount(&exit(
            1,
            "mkdir: cannot create directory: Read-only file system\n"
        )));
        assert!(!vanished_mount(&exit(
            1,
            "bwrap: setting up uid map: Permission denied\n"
        )));
        assert!(!vanished_mount(&exit(
            2,
            "bwrap: Can't mkdir /x: Read-only file system\n"
        )));
    }
}
