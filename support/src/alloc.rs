//! A counting global allocator, for the tests that steps do not touch the heap.
//!
//! A test binary installs it with
//! `#[global_allocator] static GLOBAL: Counting = Counting;` and measures a closure with
//! [`allocations_on_this_thread`] (tests may run in parallel) or [`allocations_anywhere`]
//! (counts worker threads too; the binary must then hold a single `#[test]`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting allocations and reallocations per thread and in total.
pub struct Counting;

static EVERYWHERE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ON_THIS_THREAD: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    EVERYWHERE.fetch_add(1, Ordering::Relaxed);
    // `try_with`: a thread being torn down has no slot left, and must still allocate.
    let _ = ON_THIS_THREAD.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches no memory the
// allocator hands out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Heap allocations `f` made on the calling thread (0 unless [`Counting`] is installed).
pub fn allocations_on_this_thread(f: impl FnOnce()) -> usize {
    let before = ON_THIS_THREAD.with(Cell::get);
    f();
    ON_THIS_THREAD.with(Cell::get) - before
}

/// Heap allocations made on any thread while `f` ran.
pub fn allocations_anywhere(f: impl FnOnce()) -> usize {
    let before = EVERYWHERE.load(Ordering::SeqCst);
    f();
    EVERYWHERE.load(Ordering::SeqCst) - before
}
