//! The limits one plugin call runs under, as configured (the tenants
//! file) and as reported. The host enforces them.

/// The limits one stage attempt runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageLimits {
    /// Bytes of linear memory across all memories of the Store. Prevents a
    /// plugin from exhausting the host's memory.
    pub memory_bytes: usize,
    /// Elements across all tables. Prevents table growth from doing the same.
    pub table_elements: usize,
    /// Core and component instances a Store may create.
    pub instances: usize,
    /// Tables a Store may create.
    pub tables: usize,
    /// Linear memories a Store may create.
    pub memories: usize,
    /// Bytes a guest may pass to the host in one host call (strings, lists).
    pub hostcall_bytes: usize,
    /// Live resource handles in the Store's WASI table.
    pub resource_handles: usize,
    /// Bytes of random data a guest may ask for in one call.
    pub random_bytes: u64,
    /// Bytes of log text a stage may write before lines are dropped.
    pub log_bytes: usize,
    /// Bytes of a program's stdout (and, separately, stderr) returned to
    /// the plugin; the rest is cut and reported.
    pub output_bytes: usize,
    /// Wasm instructions (fuel) one plugin call may execute: a CPU budget.
    /// `None` leaves CPU bounded by wall time only.
    pub fuel: Option<u64>,
    /// Bytes of data (heap) each program process may allocate
    /// (RLIMIT_DATA); `None` for no limit beyond the machine's.
    pub program_memory: Option<u64>,
    /// Processes (and threads) each program may have at once, counted in
    /// its own pids cgroup. `None`: [`DEFAULT_PROCESSES`], enforced where
    /// the host has a pids cgroup; `Some`: required, and a program is
    /// refused where it cannot be enforced.
    pub processes: Option<u64>,
    /// Bytes a run's workspace may take on disk while its stages run;
    /// `None` for no limit beyond the filesystem's.
    pub disk_bytes: Option<u64>,
}

/// Processes (and threads) a program may have at once when its tenant
/// sets no `limits.processes`.
pub const DEFAULT_PROCESSES: u64 = 1024;

impl Default for StageLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 256 << 20,
            table_elements: 100_000,
            instances: 64,
            tables: 64,
            memories: 16,
            hostcall_bytes: 16 << 20,
            resource_handles: 10_000,
            random_bytes: 1 << 20,
            log_bytes: 4 << 20,
            output_bytes: 1 << 20,
            fuel: None,
            program_memory: None,
            processes: None,
            disk_bytes: None,
        }
    }
}

/// `1.5 MiB`, `256 MiB`, `12 KiB`: sizes for people.
pub fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
