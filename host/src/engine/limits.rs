//! Per-Store resource limits and the record of which one was hit.
//!
//! wasmtime's own `StoreLimits` caps each memory separately; a plugin with
//! several memories could exceed a budget that way. [`StageLimiter`] counts
//! every memory of the Store together and remembers the first limit hit, so
//! the run can report it by name instead of as a bare trap.

use wasmtime::ResourceLimiter;

pub use weir_pipeline::limits::{DEFAULT_PROCESSES, StageLimits, human_bytes};

/// A limit that stopped a plugin, with what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitHit {
    /// Growing memory past `limits.memory_bytes`.
    Memory {
        /// Bytes the Store's memories would have held in total.
        requested: usize,
        /// The limit.
        limit: usize,
    },
    /// Growing tables past `limits.table_elements`.
    Table {
        /// Elements the Store's tables would have held in total.
        requested: usize,
        /// The limit.
        limit: usize,
    },
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitHit::Memory { requested, limit } => write!(
                f,
                "memory limit hit: the plugin asked for {} in total, the limit is {} (limit `memory`)",
                human_bytes(*requested),
                human_bytes(*limit)
            ),
            LimitHit::Table { requested, limit } => write!(
                f,
                "table limit hit: the plugin asked for {requested} table elements, the limit is {limit} (limit `tables`)"
            ),
        }
    }
}

/// Counts memory and tables across the whole Store.
#[derive(Debug)]
pub struct StageLimiter {
    limits: StageLimits,
    memory_in_use: usize,
    table_in_use: usize,
    /// What the last approved growth added, taken back if wasmtime then
    /// fails the growth (a declared maximum, the pool, the OS).
    memory_granted: usize,
    table_granted: usize,
    /// The most memory in use at once.
    memory_peak: usize,
    hit: Option<LimitHit>,
}

impl StageLimiter {
    /// A limiter with nothing allocated yet.
    pub fn new(limits: StageLimits) -> Self {
        Self {
            limits,
            memory_in_use: 0,
            table_in_use: 0,
            memory_granted: 0,
            table_granted: 0,
            memory_peak: 0,
            hit: None,
        }
    }

    /// The most linear memory the Store's guests held at once, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.memory_peak
    }

    /// The first limit the plugin hit, if any.
    pub fn hit(&self) -> Option<&LimitHit> {
        self.hit.as_ref()
    }
}

impl ResourceLimiter for StageLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let limit = self.limits.memory_bytes;
        let (in_use, granted) = (&mut self.memory_in_use, &mut self.memory_granted);
        let grown = grow(in_use, granted, current, desired, limit)
            .map_err(|requested| record(&mut self.hit, LimitHit::Memory { requested, limit }));
        self.memory_peak = self.memory_peak.max(self.memory_in_use);
        grown
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_in_use -= self.memory_granted.min(self.memory_in_use);
        self.memory_granted = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let limit = self.limits.table_elements;
        let (in_use, granted) = (&mut self.table_in_use, &mut self.table_granted);
        grow(in_use, granted, current, desired, limit)
            .map_err(|requested| record(&mut self.hit, LimitHit::Table { requested, limit }))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.table_in_use -= self.table_granted.min(self.table_in_use);
        self.table_granted = 0;
        Ok(())
    }

    fn instances(&self) -> usize {
        self.limits.instances
    }

    fn tables(&self) -> usize {
        self.limits.tables
    }

    fn memories(&self) -> usize {
        self.limits.memories
    }
}

/// Account for one memory or table growing from `current` to `desired`
/// against a Store-wide `limit`: `Ok(true)` and the new total recorded, or
/// `Err(total it would have reached)`.
fn grow(
    in_use: &mut usize,
    granted: &mut usize,
    current: usize,
    desired: usize,
    limit: usize,
) -> Result<bool, usize> {
    let total = *in_use - current.min(*in_use) + desired;
    if total > limit {
        return Err(total);
    }
    *granted = total - (*in_use).min(total);
    *in_use = total;
    Ok(true)
}

/// Remember the first limit hit and turn it into the trap that stops the
/// guest. Trapping (rather than letting `memory.grow` return -1) makes the
/// limit visible: Rust guests abort on allocation failure anyway, with a
/// message that does not say which limit was hit.
fn record(first: &mut Option<LimitHit>, hit: LimitHit) -> wasmtime::Error {
    let message = hit.to_string();
    first.get_or_insert(hit);
    wasmtime::Error::msg(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_memories_together() {
        let mut l = StageLimiter::new(StageLimits {
            memory_bytes: 100,
            ..StageLimits::default()
        });
        assert!(l.memory_growing(0, 60, None).is_ok());
        // A second memory of 60 would fit on its own but not beside the first.
        let err = l.memory_growing(0, 60, None).unwrap_err();
        assert!(err.to_string().contains("limit `memory`"), "{err}");
        assert_eq!(
            l.hit(),
            Some(&LimitHit::Memory {
                requested: 120,
                limit: 100
            })
        );
    }

    #[test]
    fn growth_counts_only_the_difference() {
        let mut l = StageLimiter::new(StageLimits {
            memory_bytes: 100,
            ..StageLimits::default()
        });
        assert!(l.memory_growing(0, 50, None).is_ok());
        assert!(l.memory_growing(50, 100, None).is_ok());
        assert!(l.memory_growing(100, 101, None).is_err());
    }

    #[test]
    fn a_failed_growth_is_not_counted() {
        let mut l = StageLimiter::new(StageLimits {
            memory_bytes: 100,
            ..StageLimits::default()
        });
        assert!(l.memory_growing(0, 60, None).is_ok());
        // Approved, then refused by wasmtime (say, the memory's maximum).
        assert!(l.memory_growing(60, 90, None).is_ok());
        l.memory_grow_failed(wasmtime::Error::msg("maximum")).unwrap();
        // Only 60 is in use, so 40 more still fit.
        assert!(l.memory_growing(60, 100, None).is_ok());
        assert_eq!(l.hit(), None);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(256 << 20), "256 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 B");
    }
}
