//! The pooling allocator: instance, memory, table and stack slots reserved
//! once per process and reused by step after step, instead of each step
//! mapping, faulting in and unmapping fresh memory (issue 17: much of a
//! step's cost was system time in mmap/munmap and page faults).
//!
//! The pool is sized from the plan: how many steps may run at once (the
//! widest parallel stage), the largest `limits.memory` of any step, and
//! the tables the limiter allows. It only reserves address space; memory is
//! committed as steps touch it. `limits.memory` is still enforced by the
//! store's limiter (capabilities/limits.rs), which wasmtime asks before the
//! pool's own maximum, so a step stopped for memory is stopped at exactly
//! its limit and reported as such. When the pool cannot be reserved (a
//! `ulimit -v`, a 32-bit address space) the engine allocates on demand.

use crate::capabilities::limits::{DEFAULT_MEMORY, MAX_INSTANCES, MAX_TABLE_ELEMENTS};
use crate::pipeline::Plan;
use wasmtime::{Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Linear memories and tables one step's component may hold (its core
/// modules together). A component past these fails to instantiate with
/// wasmtime's error naming the limit.
const MEMORIES_PER_STEP: u32 = 8;
const TABLES_PER_STEP: u32 = 32;
/// Steps' memory kept mapped between uses and reset in place (only its
/// dirty pages, with PAGEMAP_SCAN where the kernel has it) rather than
/// returned to the kernel and faulted in again.
const MEMORY_KEEP_RESIDENT: usize = 2 << 20;
/// The largest pooled memory: a 32-bit memory's whole address space. A
/// plan that lets a step have more allocates on demand.
const MAX_POOLED_MEMORY: u64 = 4 << 30;

/// What the pool must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    /// Steps that may run at once.
    pub concurrent: u32,
    /// The largest `limits.memory` of any step, in bytes.
    pub max_memory: u64,
}

impl Default for PoolSize {
    /// One step at a time under the default memory limit: the commands
    /// that only ask plugins what they are.
    fn default() -> Self {
        PoolSize { concurrent: 1, max_memory: DEFAULT_MEMORY }
    }
}

impl PoolSize {
    /// Sized for every step of `plan`, its rollback's included (a
    /// rollback's restore step asks for less than the default).
    pub fn for_plan(plan: &Plan) -> PoolSize {
        let widest = plan.stages.iter().map(|s| if s.parallel { s.steps.len() } else { 1 }).max().unwrap_or(1);
        let steps = plan.stages.iter().flat_map(|s| &s.steps).chain(plan.rollback.iter().flat_map(|r| &r.steps));
        let max_memory = steps.map(|s| s.limits.memory).fold(DEFAULT_MEMORY, u64::max);
        PoolSize { concurrent: u32::try_from(widest).unwrap_or(u32::MAX).max(1), max_memory }
    }

    /// No pool: every instance allocated on demand (what the benchmarks
    /// compare the pool against).
    pub fn on_demand() -> PoolSize {
        PoolSize { concurrent: 0, max_memory: DEFAULT_MEMORY }
    }

    /// The pooling strategy for this size, or `None` for on-demand: when a
    /// step may have more memory than a pooled slot holds, or no pool was
    /// asked for.
    pub fn strategy(&self) -> Option<InstanceAllocationStrategy> {
        if self.concurrent == 0 || self.max_memory > MAX_POOLED_MEMORY {
            return None;
        }
        // One more than the plan runs at once: `validate`'s describe calls
        // and a step's instance being torn down while the next starts.
        let instances = self.concurrent.saturating_add(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(MAX_INSTANCES as u32))
            .max_core_instances_per_component(MAX_INSTANCES as u32)
            .total_memories(instances.saturating_mul(MEMORIES_PER_STEP))
            .max_memories_per_component(MEMORIES_PER_STEP)
            .max_memories_per_module(MEMORIES_PER_STEP)
            .max_memory_size(usize::try_from(self.max_memory).unwrap_or(usize::MAX))
            .total_tables(instances.saturating_mul(TABLES_PER_STEP))
            .max_tables_per_component(TABLES_PER_STEP)
            .max_tables_per_module(TABLES_PER_STEP)
            .table_elements(MAX_TABLE_ELEMENTS)
            .total_stacks(instances)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .pagemap_scan(Enabled::Auto);
        Some(InstanceAllocationStrategy::Pooling(pool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_larger_than_a_slot_are_allocated_on_demand() {
        assert!(PoolSize::default().strategy().is_some());
        assert!(PoolSize { concurrent: 200, max_memory: 4 << 30 }.strategy().is_some());
        assert!(PoolSize { concurrent: 1, max_memory: 8 << 30 }.strategy().is_none());
        assert!(PoolSize::on_demand().strategy().is_none());
    }
}
