//! The bytes a jq run holds, for the memory part of its budget. jaq allocates as it
//! pleases and cannot be told to stop, so the process's allocator counts, per thread,
//! the bytes allocated less the bytes freed; a run (synchronous, on one thread) compares
//! the count with what it was when the run started, at each `__tick`. A program that
//! grows a value step by step (`reduce range(40) as $i ("x"; . + .)`, `[range(1e9)]`)
//! is stopped once it holds more than [`RUN_MEMORY`]. A single step that would allocate
//! past it on its own is refused before it runs (`budget::checked_mul`, and the size
//! check of a run's result and of `tojson`).
//!
//! The counting allocator is this crate's `#[global_allocator]`, so every binary that
//! links `entrepot-api` (the runner, the operator, the test and fuzz binaries) counts;
//! it adds one thread-local addition to each allocation and free.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

/// How many bytes one jq run may hold beyond what it started with (one record's
/// mapping, one key, one example).
pub const RUN_MEMORY: usize = 128 * 1024 * 1024;

thread_local! {
    /// Bytes allocated on this thread less bytes freed on it. Memory freed on another
    /// thread than allocated it skews both threads' counts, never a run's difference.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: the allocator must never panic, not even while the thread's locals are
    // torn down (a const-initialised `Cell` needs no teardown, so this always succeeds).
    let _ = LIVE.try_with(|live| live.set(live.get().wrapping_add(delta)));
}

/// The bytes allocated on this thread less those freed on it, since it started.
pub(super) fn live() -> isize {
    LIVE.try_with(Cell::get).unwrap_or(0)
}

/// [`System`], counting what each thread allocates and frees.
pub struct CountingAllocator;

// SAFETY: every method forwards to `System` with the same arguments and only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_follows_what_this_thread_holds() {
        let before = live();
        let block = vec![0u8; 10 << 20];
        let during = live() - before;
        assert!((10 << 20..(10 << 20) + 4096).contains(&(during as usize)), "{during}");
        drop(block);
        assert!((live() - before).unsigned_abs() < 4096, "{}", live() - before);
    }
}
