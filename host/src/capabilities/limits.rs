//! Memory and time. Memory is counted across all of a step's linear
//! memories and tables' growth is bounded; time is a wall-clock deadline
//! enforced by epoch interruption (guest code) and by the runner's timeout
//! (host calls the guest is waiting on).

pub use deployhost_pipeline::grants::{DEFAULT_MEMORY, DEFAULT_TIMEOUT, StepLimits};
use std::time::Duration;

/// How often the engine's epoch advances; the resolution of timeouts.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Core instances one step's store may hold (the pool is sized by it too).
pub const MAX_INSTANCES: usize = 64;
/// What one table element costs the host (a pointer-sized slot).
const TABLE_ELEMENT_BYTES: u64 = 8;

/// Bytes of headers one wasi:http header map (`fields`) may hold; the
/// host keeps them, not the plugin's memory.
pub const FIELD_SIZE_LIMIT: usize = 32 << 10;
/// Fewest and most entries a step's resource table may hold.
const TABLE_ENTRIES: (usize, usize) = (1024, 16 << 10);

/// Entries a step's resource table may hold: everything the plugin makes
/// the host keep for it (header maps, requests, responses, streams,
/// pollables, connections). With each header map capped at
/// [`FIELD_SIZE_LIMIT`], what a step holds in the host this way is at most
/// about its own memory limit, so `limits.memory` bounds it too.
pub fn table_entries(limits: &StepLimits) -> usize {
    (limits.memory as usize / FIELD_SIZE_LIMIT).clamp(TABLE_ENTRIES.0, TABLE_ENTRIES.1)
}

/// Epoch ticks until the step's deadline.
pub fn deadline_ticks(limits: &StepLimits) -> u64 {
    (limits.timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

/// The store's limiter: refuses growth past the step's memory limit and
/// remembers that it did, so the failure is reported as what it was.
pub struct MemoryLimiter {
    limit: u64,
    used: u64,
    pub exceeded: bool,
}

impl MemoryLimiter {
    pub fn new(limit: u64) -> Self {
        MemoryLimiter { limit, used: 0, exceeded: false }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        if self.used + growth > self.limit {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} bytes exceeded", self.limit);
        }
        self.used += growth;
        Ok(true)
    }

    /// Table elements count against the same budget as linear memory (a
    /// plugin could otherwise hold memory in tables that `limits.memory`
    /// never saw), and no table grows past a million elements.
    fn table_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let growth = desired.saturating_sub(current) as u64 * TABLE_ELEMENT_BYTES;
        if self.used + growth > self.limit {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} bytes exceeded (table growth)", self.limit);
        }
        self.used += growth;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter as _;

    #[test]
    fn tables_count_against_the_memory_limit() {
        let mut l = MemoryLimiter::new(1 << 20);
        assert!(l.memory_growing(0, 512 << 10, None).unwrap());
        assert!(l.table_growing(0, 32 << 10, None).unwrap(), "256 KiB of table fits");
        assert!(l.table_growing(32 << 10, 128 << 10, None).is_err(), "past the shared budget");
        assert!(l.exceeded);
        assert!(!MemoryLimiter::new(u64::MAX).table_growing(0, MAX_TABLE_ELEMENTS + 1, None).unwrap());
    }
}
