//! Issue 13, "Tried as a hostile user would": each test is one way a user broke the
//! runtime, checked against what the user is owed (worked out by hand, not by the code
//! under test).

mod common;

use common::*;
use ndarray::arr1;
use optim_core::optim::Optim;
use optim_core::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

// ---------------------------------------------------------------------------------------
// Peak heap use of a closure, on this thread (the tests of this file run in parallel, each
// on its own thread).

struct Measuring;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grew(bytes: isize) {
    let live = LIVE.with(|l| {
        l.set(l.get() + bytes);
        l.get()
    });
    PEAK.with(|p| p.set(p.get().max(live)));
}

unsafe impl GlobalAlloc for Measuring {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        grew(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Measuring = Measuring;

/// What `f` returns, and the most heap it held at once beyond what was live before.
fn peak_bytes<R>(f: impl FnOnce() -> R) -> (R, isize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    (out, PEAK.with(Cell::get) - start)
}

// ---------------------------------------------------------------------------------------
// 9. "Did you mean" on very long names.

#[test]
fn suggestions_for_very_long_names_take_little_memory() {
    let long = "a".repeat(30_000);
    let typo = format!("{}b", &long[1..]); // one substitution away
    let mut params = Params::new()
        .with(long.clone(), arr1(&[0.0f32]))
        .unwrap()
        .with("w", arr1(&[0.0f32]))
        .unwrap();
    let mut opt = Optim::<Sgd, f32>::new(Sgd::default()).unwrap();
    let before = params.clone();
    for (given, want) in [(typo, Some(long.clone())), ("z".repeat(30_000), None)] {
        let grads = Grads::new().with(given.clone(), arr1(&[1.0f32]));
        let (err, peak) = peak_bytes(|| opt.step(&mut params, &grads).unwrap_err());
        assert_eq!(
            err,
            OptimError::UnknownParam {
                name: given,
                suggestion: want
            }
        );
        // The names themselves are 30 kB (120 kB as chars); quadratic work would be GBs.
        assert!(peak < 4 << 20, "peak {peak} bytes");
    }
    assert_eq!(params, before);
    let (hint, peak) = peak_bytes(|| suggest::closest(&long, ["lr", "beta1"]));
    assert_eq!(hint, None);
    assert!(peak < 1 << 20, "peak {peak} bytes");
}

#[test]
fn the_runtime_suggests_what_the_macro_suggests() {
    // The macro never offers a name every character of which would be replaced (its
    // test: `did_you_mean("b", ["t", "w", "g"])` is empty); the runtime did.
    assert_eq!(suggest::closest("b", ["t", "w", "g"]), None);
    assert_eq!(suggest::closest("l", ["lr"]), Some("lr"));
    assert_eq!(suggest::closest("wehn", ["when", "init"]), Some("when"));
}
