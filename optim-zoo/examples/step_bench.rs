//! How fast is one optimizer step? The generated kernel against what else one could run.
//!
//! ```text
//! cargo run --release -q -p optim-zoo --example step_bench -- ALGO N THREADS
//! ```
//!
//! - `ALGO N THREADS` (`ALGO` a registry name: `adam`, `adamw`, `momentum`, `rmsprop`, …;
//!   default hyperparameters): one f32 parameter of `N` elements, stepped by
//!   1. the generated kernel, through the public API (`registry::build`, `Optimizer::step`);
//!   2. `hand-fused`: a hand-written fused Rust loop over slices with the same math
//!      (checked to give the same bits), run through the same runtime instruction-set
//!      dispatch and thread split as the generated kernel — what an expert writes by hand;
//!   3. `ndarray`: the same update as ndarray whole-array expressions (in-place
//!      operators and temporaries, one pass per operation; one thread) — what a user
//!      writes without us;
//!   4. `probe`: a memory bandwidth probe moving the same bytes (read the gradient,
//!      read and write the parameter and each state, one add per element).
//!
//!   Hand-fused and ndarray versions exist for `adam`, `adamw`, `sgd` (and its presets
//!   `momentum`, `sgdm`, `nag`), `rmsprop` and `lazyadam` under their default options;
//!   other names show the generated kernel and the probe only.
//! - `ALGO-many N THREADS [SIZE]` (e.g. `adam-many 4194304 1`): `N / SIZE` tensors of
//!   `SIZE` elements (default 4096) in one step (1024 × 4096 for N = 4M), against one
//!   tensor of `N` elements, and the hand-fused loop run over the same number of
//!   separate small tensors (what the memory system charges for many tensors, with no
//!   bookkeeping). A tiny `SIZE` (say 16) shows the optimizer's cost per tensor. Also
//!   prints what one `Grads::insert` costs while building the gradients of that many
//!   tensors.
//! - `lazyadam-rows N THREADS` (e.g. `lazyadam-rows 67108864 1`): an embedding table of
//!   `N / 64` rows × 64; a LazyAdam step whose sparse gradient touches 1024 distinct
//!   rows (unsorted, as an embedding lookup gives them; and the same rows pre-sorted),
//!   against a dense Adam step on the same table. `ns_per_elem` is per touched element
//!   (unsorted rows).
//!
//! `THREADS` is passed to `optim_core::set_num_threads` (1 = the calling thread only).
//! The environment variable `OPTIM_ISA=portable|avx2|avx512` caps the instruction set
//! (default: the best the CPU has), to see what the runtime dispatch gains.
//! Each line gives the best time per step over interleaved rounds (and the median),
//! ns per element, GB/s moved (reads + writes of the arrays), and the percentage of
//! the probe's speed. The last line is always `ns_per_elem X` for the generated kernel.

use ndarray::{Array1, Array2};
use optim_core::kernel::{self, Kernel};
use optim_core::{Grads, HyperValue, Optimizer, Params};
use serde_json::json;
use std::cell::RefCell;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let many_size = args[0].ends_with("-many") && args.len() == 4;
    if args.len() != 3 && !many_size {
        eprintln!("usage: step_bench ALGO N THREADS   (see the example's documentation)");
        std::process::exit(2);
    }
    let algo = args[0].as_str();
    let n: usize = parse(&args[1], "N");
    let threads: usize = parse(&args[2], "THREADS");
    if let Err(e) = optim_core::set_num_threads(threads) {
        fail(&e.to_string());
    }
    if let Ok(name) = std::env::var("OPTIM_ISA") {
        let cap = match name.as_str() {
            "portable" => kernel::Isa::Portable,
            "avx2" => kernel::Isa::Avx2,
            "avx512" => kernel::Isa::Avx512,
            _ => fail("OPTIM_ISA must be portable, avx2 or avx512"),
        };
        kernel::set_isa(cap);
    }
    println!(
        "# {algo}, N = {n}, f32, threads = {}, instruction set = {}",
        optim_core::num_threads(),
        kernel::isa().name()
    );
    let ns = if algo == "lazyadam-rows" {
        lazy_rows(n)
    } else if let Some(base) = algo.strip_suffix("-many") {
        let size = match args.get(3) {
            Some(s) => parse(s, "SIZE"),
            None => 4096,
        };
        many(base, n, size)
    } else {
        dense(algo, n)
    };
    println!("ns_per_elem {ns:.4}");
}

fn parse(s: &str, what: &str) -> usize {
    match s.replace('_', "").parse() {
        Ok(v) if v > 0 => v,
        _ => fail(&format!("{what} must be a positive integer, got `{s}`")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("step_bench: {msg}");
    std::process::exit(2)
}

fn build(config: serde_json::Value) -> Box<dyn Optimizer<f32>> {
    optim_zoo::registry::build::<f32>(&config).unwrap_or_else(|e| fail(&e.to_string()))
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Timing

struct Variant<'a> {
    name: String,
    /// Bytes moved per step.
    bytes: f64,
    /// Elements per step (for ns/element).
    elems: f64,
    step: Box<dyn FnMut() + 'a>,
    times: Vec<f64>,
}

impl<'a> Variant<'a> {
    fn new(name: &str, elems: usize, bytes: usize, step: impl FnMut() + 'a) -> Self {
        Variant {
            name: name.to_string(),
            bytes: bytes as f64,
            elems: elems as f64,
            step: Box::new(step),
            times: Vec::new(),
        }
    }
    fn best(&self) -> f64 {
        self.times.iter().copied().fold(f64::INFINITY, f64::min)
    }
    fn median(&self) -> f64 {
        let mut t = self.times.clone();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    }
}

/// Interleaved rounds (so that load from elsewhere hits every variant alike); in each
/// round a variant runs for about `slice`, and its time per step is recorded.
fn measure(variants: &mut [Variant<'_>]) {
    let slice = Duration::from_millis(60);
    let rounds = 9;
    let mut per_round = Vec::new();
    for v in variants.iter_mut() {
        for _ in 0..2 {
            (v.step)(); // warm-up: state allocated, pages touched
        }
        let t = Instant::now();
        (v.step)();
        let one = t.elapsed().as_secs_f64().max(1e-9);
        per_round.push(((slice.as_secs_f64() / one) as usize).clamp(1, 100_000));
    }
    for _ in 0..rounds {
        for (v, &k) in variants.iter_mut().zip(&per_round) {
            let t = Instant::now();
            for _ in 0..k {
                (v.step)();
            }
            v.times.push(t.elapsed().as_secs_f64() / k as f64);
        }
    }
}

/// Prints one line per variant; returns the first variant's ns/element.
fn report(variants: &[Variant<'_>], probe: Option<usize>, ratio_to: Option<usize>) -> f64 {
    println!(
        "{:<22} {:>12} {:>12} {:>9} {:>8} {:>9}",
        "variant", "best µs", "median µs", "ns/elem", "GB/s", "% probe"
    );
    for (i, v) in variants.iter().enumerate() {
        let best = v.best();
        let pct = match probe {
            Some(p) => format!("{:.0}%", 100.0 * variants[p].best() / best),
            None => "-".into(),
        };
        let vs = match ratio_to {
            Some(r) if r != i => format!(
                "  ({:.2}x vs {})",
                best / variants[r].best(),
                variants[r].name
            ),
            _ => String::new(),
        };
        println!(
            "{:<22} {:>12.1} {:>12.1} {:>9.4} {:>8.1} {:>9}{vs}",
            v.name,
            best * 1e6,
            v.median() * 1e6,
            best * 1e9 / v.elems,
            v.bytes / best / 1e9,
            pct
        );
    }
    variants[0].best() * 1e9 / variants[0].elems
}

// ---------------------------------------------------------------------------------------
// Dense: generated vs hand-fused vs ndarray vs probe

fn dense(algo: &str, n: usize) -> f64 {
    let opt = build(json!({ "optimizer": algo }));
    let hand = Hand::from(opt.as_ref());
    let n_states = states_of(opt.as_ref());
    let bytes = (3 + 2 * n_states) * 4 * n; // read w, g, states; write w, states
    let w0 = values(n, 1);
    let g0 = values(n, 2);

    if let Some(h) = &hand {
        check_same_bits(algo, h, 4099);
    }

    let threads = optim_core::num_threads();
    let (pw, pg) = (RefCell::new(w0.clone()), g0.clone());
    let ps: RefCell<Vec<Vec<f32>>> = RefCell::new(Vec::new());
    let params = RefCell::new(Params::new().with("w", Array1::from(w0.clone())).unwrap());
    let grads = Grads::new().with("w", Array1::from(g0.clone()));
    let opt = RefCell::new(opt);
    let generated = || {
        let mut params = params.borrow_mut();
        opt.borrow_mut().step(&mut params, &grads).unwrap()
    };
    let mut variants = vec![Variant::new(
        "generated",
        n,
        bytes,
        on_threads(threads, generated),
    )];

    // Every variant allocates its states at its first step, as the optimizer does, so
    // that all arrays sit alike in memory: at DRAM sizes, where the arrays fall relative
    // to each other alone moved results by up to 30% on the measuring machine.
    let (mut hw, hg) = (w0.clone(), g0.clone());
    let mut hs: Vec<Vec<f32>> = Vec::new();
    let mut ht = 0u64;
    let (mut aw, ag) = (Array1::from(w0.clone()), Array1::from(g0.clone()));
    let mut as_: Vec<Array1<f32>> = Vec::new();
    let mut at = 0u64;
    if let Some(h) = &hand {
        variants.push(Variant::new("hand-fused", n, bytes, move || {
            if ht == 0 {
                hs = vec![vec![0.0; n]; n_states];
            }
            ht += 1;
            h.step(ht, &mut hw, &hg, &mut hs);
        }));
        variants.push(Variant::new("ndarray (1 thread)", n, bytes, move || {
            if at == 0 {
                as_ = vec![Array1::zeros(n); n_states];
            }
            at += 1;
            h.step_ndarray(at, &mut aw, &ag, &mut as_);
        }));
    }
    let probe_step = || {
        let mut ps = ps.borrow_mut();
        if ps.is_empty() {
            *ps = vec![vec![0.0; n]; n_states];
        }
        probe(&mut pw.borrow_mut(), &pg, &mut ps)
    };
    variants.push(Variant::new(
        "probe",
        n,
        bytes,
        on_threads(threads, probe_step),
    ));
    let p = variants.len() - 1;
    if threads > 1 {
        // The same optimizer and arrays on one thread, in the same rounds: the speed-up
        // of threads measured under the same machine load.
        variants.push(Variant::new(
            "generated, 1 thread",
            n,
            bytes,
            on_threads(1, generated),
        ));
        variants.push(Variant::new(
            "probe, 1 thread",
            n,
            bytes,
            on_threads(1, probe_step),
        ));
    }
    measure(&mut variants);
    let ns = report(&variants, Some(p), Some(0));
    if threads > 1 {
        let last = variants.len() - 1;
        println!(
            "# {threads} threads vs 1, same rounds: generated {:.2}x, probe {:.2}x",
            variants[last - 1].best() / variants[0].best(),
            variants[last].best() / variants[p].best()
        );
    }
    ns
}

/// `step` run with `threads` threads (set before each call when another variant changed
/// it; `set_num_threads` is process-wide).
fn on_threads(threads: usize, mut step: impl FnMut()) -> impl FnMut() {
    move || {
        if optim_core::num_threads() != threads {
            if let Err(e) = optim_core::set_num_threads(threads) {
                fail(&e.to_string());
            }
        }
        step()
    }
}

/// Element-wise states the optimizer keeps, from its exported state on a small tensor.
fn states_of(opt: &dyn Optimizer<f32>) -> usize {
    let mut o = opt.boxed_clone();
    let mut p = Params::new()
        .with("x", Array1::from(vec![0.5f32; 8]))
        .unwrap();
    let g = Grads::new().with("x", Array1::from(vec![0.25f32; 8]));
    o.step(&mut p, &g).unwrap();
    o.export_state()
        .params
        .first()
        .map_or(0, |s| s.tensors.len())
}

/// Runs the generated optimizer and the hand-fused loop for a few steps from the same
/// values and stops if any bit differs: the comparison is of the same math.
fn check_same_bits(algo: &str, hand: &Hand, n: usize) {
    let mut opt = build(json!({ "optimizer": algo }));
    let n_states = states_of(opt.as_ref());
    let (w0, g0) = (values(n, 7), values(n, 8));
    let mut params = Params::new().with("w", Array1::from(w0.clone())).unwrap();
    let grads = Grads::new().with("w", Array1::from(g0.clone()));
    let mut hw = w0;
    let mut hs = vec![vec![0.0f32; n]; n_states];
    for t in 1..=3 {
        opt.step(&mut params, &grads).unwrap();
        hand.step(t, &mut hw, &g0, &mut hs);
    }
    let gen = params.get("w").unwrap().as_slice().unwrap();
    let same = gen.iter().zip(&hw).all(|(a, b)| a.to_bits() == b.to_bits());
    if !same {
        fail("the hand-fused loop does not give the generated kernel's bits: not the same math");
    }
    println!("# check: hand-fused loop gives the generated kernel's bits (3 steps)");
}

// ---------------------------------------------------------------------------------------
// Many small tensors vs one large one

fn many(algo: &str, n: usize, size: usize) -> f64 {
    let count = (n / size).max(1);
    let total = count * size;
    let mut opt_many = build(json!({ "optimizer": algo }));
    let mut opt_one = build(json!({ "optimizer": algo }));
    let n_states = states_of(opt_one.as_ref());
    let bytes = (3 + 2 * n_states) * 4 * total;
    // As in a model: the parameters are allocated together (at initialisation), then
    // the gradients together (by backpropagation).
    let mut pm = Params::new();
    let mut gm = Grads::new();
    for i in 0..count {
        let name = format!("layer{i:05}");
        pm.insert(name, Array1::from(values(size, 10 + i as u64)))
            .unwrap();
    }
    for i in 0..count {
        let name = format!("layer{i:05}");
        gm.insert(name, Array1::from(values(size, 100_000 + i as u64)));
    }
    let mut p1 = Params::new()
        .with("w", Array1::from(values(total, 1)))
        .unwrap();
    let g1 = Grads::new().with("w", Array1::from(values(total, 2)));
    // The hand-fused loop over the same kind of separate small tensors: what the memory
    // system charges for many tensors, without any optimizer bookkeeping.
    // Allocated in the same order as the optimizer's: parameters, gradients, then each
    // state kind over all tensors.
    let hand = Hand::from(opt_one.as_ref());
    type Tensor = (Vec<f32>, Vec<f32>, Vec<Vec<f32>>); // parameter, gradient, states
    let hw: Vec<Vec<f32>> = (0..count).map(|i| values(size, 10 + i as u64)).collect();
    let hg: Vec<Vec<f32>> = (0..count)
        .map(|i| values(size, 100_000 + i as u64))
        .collect();
    let mut hs: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(n_states); count];
    for _ in 0..n_states {
        for s in hs.iter_mut() {
            s.push(vec![0.0f32; size]);
        }
    }
    let mut hm: Vec<Tensor> = hw
        .into_iter()
        .zip(hg)
        .zip(hs)
        .map(|((w, g), s)| (w, g, s))
        .collect();
    let mut ht = 0u64;
    let (mut pw, pg) = (values(total, 3), values(total, 4));
    let mut ps: Vec<Vec<f32>> = Vec::new();
    let mut variants = vec![
        Variant::new(&format!("{count} x {size}"), total, bytes, || {
            opt_many.step(&mut pm, &gm).unwrap()
        }),
        Variant::new(&format!("1 x {total}"), total, bytes, || {
            opt_one.step(&mut p1, &g1).unwrap()
        }),
    ];
    if let Some(h) = &hand {
        variants.push(Variant::new(
            "hand-fused, same split",
            total,
            bytes,
            move || {
                ht += 1;
                for (w, g, s) in hm.iter_mut() {
                    h.step(ht, w, g, s);
                }
            },
        ));
    }
    variants.push(Variant::new("probe", total, bytes, move || {
        if ps.is_empty() {
            ps = vec![vec![0.0; total]; n_states];
        }
        probe(&mut pw, &pg, &mut ps)
    }));
    let p = variants.len() - 1;
    measure(&mut variants);
    let ns = report(&variants, Some(p), Some(1));
    if hand.is_some() && optim_core::num_threads() == 1 {
        // What the optimizer adds per tensor over the hand loop on the same split (which
        // runs on one thread: each of its tensors is below the parallel threshold).
        let extra = (variants[0].best() - variants[2].best()) / count as f64;
        println!(
            "# optimizer cost per tensor over the hand loop: {:.0} ns",
            extra * 1e9
        );
    }
    println!(
        "# building the gradients of {count} tensors: {:.0} ns per Grads::insert",
        grads_insert_ns(count)
    );
    ns
}

/// Best time of one `Grads::insert` while filling a `Grads` of `count` entries (the
/// arrays are made beforehand and moved in).
fn grads_insert_ns(count: usize) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..20 {
        let entries: Vec<(String, Array1<f32>)> = (0..count)
            .map(|i| (format!("layer{i:05}"), Array1::zeros(16)))
            .collect();
        let t = Instant::now();
        let mut grads = Grads::new();
        for (name, g) in entries {
            grads.insert(name, g);
        }
        best = best.min(t.elapsed().as_secs_f64());
        drop(grads);
    }
    best * 1e9 / count as f64
}

// ---------------------------------------------------------------------------------------
// LazyAdam on touched rows vs dense Adam on the whole table

fn lazy_rows(n: usize) -> f64 {
    const WIDTH: usize = 64;
    const TOUCHED: usize = 1024;
    let rows = (n / WIDTH).max(TOUCHED);
    let total = rows * WIDTH;
    let table = Array2::from_shape_vec((rows, WIDTH), values(total, 1)).unwrap();
    // Distinct rows in a scattered order, as an embedding lookup produces them.
    let picked: Vec<usize> = (0..TOUCHED)
        .map(|i| (i * 2_654_435_761usize + 12_345) % rows)
        .collect();
    let mut distinct = picked.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != TOUCHED {
        fail("the row picker repeated a row; choose another N");
    }
    let values_rows = Array2::from_shape_vec((TOUCHED, WIDTH), values(TOUCHED * WIDTH, 2)).unwrap();
    let mut lazy = build(json!({ "optimizer": "lazyadam" }));
    let mut lazy_sorted = build(json!({ "optimizer": "lazyadam" }));
    let mut adam = build(json!({ "optimizer": "adam" }));
    let mut pl = Params::new().with("emb", table.clone()).unwrap();
    let mut gl = Grads::new();
    gl.insert_rows("emb", picked, values_rows.clone());
    let mut ps = Params::new().with("emb", table.clone()).unwrap();
    let mut gs = Grads::new();
    gs.insert_rows("emb", distinct, values_rows);
    let mut pd = Params::new().with("emb", table).unwrap();
    let gd = Grads::new().with(
        "emb",
        Array2::from_shape_vec((rows, WIDTH), values(total, 3)).unwrap(),
    );
    let touched = TOUCHED * WIDTH;
    let mut variants = vec![
        Variant::new(
            &format!("lazyadam {TOUCHED} rows"),
            touched,
            7 * 4 * touched,
            || lazy.step(&mut pl, &gl).unwrap(),
        ),
        // Already sorted: the runtime passes them through without sorting or copying.
        Variant::new("  (rows pre-sorted)", touched, 7 * 4 * touched, || {
            lazy_sorted.step(&mut ps, &gs).unwrap()
        }),
        Variant::new(
            &format!("adam dense {rows}x{WIDTH}"),
            total,
            7 * 4 * total,
            || adam.step(&mut pd, &gd).unwrap(),
        ),
    ];
    measure(&mut variants);
    let ns = report(&variants, None, None);
    println!(
        "# dense adam step / lazyadam step: {:.0}x (rows pre-sorted: {:.0}x)  (table {rows} x {WIDTH}, {TOUCHED} rows touched)",
        variants[2].best() / variants[0].best(),
        variants[2].best() / variants[1].best()
    );
    ns
}

// ---------------------------------------------------------------------------------------
// The probe: the same bytes, one add per element

/// A span of a parameter with the same span of its gradient and of up to `S` states
/// (empty when absent), split as the runtime splits generated kernels.
struct Span<'a, const S: usize> {
    w: &'a mut [f32],
    g: &'a [f32],
    s: [&'a mut [f32]; S],
}

impl<'a, const S: usize> Span<'a, S> {
    /// `w`, `g` and the first `S` states of `states` (missing ones empty).
    fn new(w: &'a mut [f32], g: &'a [f32], states: &'a mut [Vec<f32>]) -> Self {
        let mut it = states.iter_mut();
        let s = std::array::from_fn(|_| it.next().map_or(&mut [][..], |v| v.as_mut_slice()));
        Span { w, g, s }
    }

    fn bytes_per_elem(&self) -> usize {
        kernel::bytes_per_elem::<f32>(true, &self.s)
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (w0, w1) = self.w.split_at_mut(mid);
        let (g0, g1) = self.g.split_at(mid);
        let mut s1: [&mut [f32]; S] = std::array::from_fn(|_| &mut [][..]);
        let mut i = 0;
        let s0 = self.s.map(|state| {
            let (a, b) = kernel::split_state(state, mid);
            s1[i] = b;
            i += 1;
            a
        });
        (
            Span {
                w: w0,
                g: g0,
                s: s0,
            },
            Span {
                w: w1,
                g: g1,
                s: s1,
            },
        )
    }
}

struct Probe<'a>(Span<'a, 3>);

impl Kernel for Probe<'_> {
    fn split_len(&self) -> usize {
        self.0.w.len()
    }
    fn bytes_per_elem(&self) -> usize {
        self.0.bytes_per_elem()
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (a, b) = self.0.split_at(mid);
        (Probe(a), Probe(b))
    }
    #[inline(always)]
    fn run(self) {
        let Span { w, g, s } = self.0;
        let n = w.len();
        let g = &g[..n];
        match s {
            [a, b, c] if !c.is_empty() => {
                let (a, b, c) = (&mut a[..n], &mut b[..n], &mut c[..n]);
                for i in 0..n {
                    w[i] += g[i];
                    a[i] += g[i];
                    b[i] += g[i];
                    c[i] += g[i];
                }
            }
            [a, b, _] if !b.is_empty() => {
                let (a, b) = (&mut a[..n], &mut b[..n]);
                for i in 0..n {
                    w[i] += g[i];
                    a[i] += g[i];
                    b[i] += g[i];
                }
            }
            [a, _, _] if !a.is_empty() => {
                let a = &mut a[..n];
                for i in 0..n {
                    w[i] += g[i];
                    a[i] += g[i];
                }
            }
            _ => {
                for i in 0..n {
                    w[i] += g[i];
                }
            }
        }
    }
}

/// One probe pass: one fused loop reading the gradient and reading and writing the
/// parameter and the states (the states must be filled in order).
fn probe(w: &mut [f32], g: &[f32], s: &mut [Vec<f32>]) {
    kernel::run(Probe(Span::new(w, g, s)));
}

// ---------------------------------------------------------------------------------------
// Hand-written reference implementations (f32), with the generated kernels' exact math

#[derive(Clone, Copy, Debug)]
enum Rule {
    Adam {
        wd: f64,
    },
    AdamW {
        wd: f64,
    },
    LazyAdam,
    Sgd {
        momentum: f64,
        dampening: f64,
        nesterov: bool,
        wd: f64,
    },
    Rmsprop {
        alpha: f64,
        wd: f64,
    },
}

#[derive(Clone, Copy, Debug)]
struct Hand {
    rule: Rule,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

fn float(o: &dyn Optimizer<f32>, name: &str) -> f64 {
    match o.hyper(name) {
        Ok(HyperValue::Float(x)) => x,
        Ok(HyperValue::Int(i)) => i as f64,
        _ => 0.0,
    }
}

fn flag(o: &dyn Optimizer<f32>, name: &str) -> bool {
    matches!(o.hyper(name), Ok(HyperValue::Bool(true)))
}

impl Hand {
    /// The hand-written version of `o`, if there is one for its options.
    fn from(o: &dyn Optimizer<f32>) -> Option<Hand> {
        if flag(o, "maximize") || flag(o, "amsgrad") {
            return None;
        }
        let wd = float(o, "weight_decay");
        let rule = match o.name() {
            "adam" => Rule::Adam { wd },
            "adamw" if flag(o, "bias_correction") => Rule::AdamW { wd },
            "lazyadam" => Rule::LazyAdam,
            "sgd" => Rule::Sgd {
                momentum: float(o, "momentum"),
                dampening: float(o, "dampening"),
                nesterov: flag(o, "nesterov"),
                wd,
            },
            "rmsprop" if !flag(o, "centered") && float(o, "momentum") == 0.0 => Rule::Rmsprop {
                alpha: float(o, "alpha"),
                wd,
            },
            _ => return None,
        };
        Some(Hand {
            rule,
            lr: float(o, "lr"),
            beta1: float(o, "beta1"),
            beta2: float(o, "beta2"),
            eps: float(o, "eps"),
        })
    }

    /// Per-step constants, computed in f64 and rounded once, as the generated code does.
    fn consts(&self, t: u64) -> [f32; 8] {
        let t = t as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let c = match self.rule {
            Rule::Adam { wd } => [
                wd,
                b1,
                1.0 - b1,
                b2,
                1.0 - b2,
                (1.0 - b2.powi(t)).sqrt(),
                self.eps,
                self.lr / (1.0 - b1.powi(t)),
            ],
            Rule::AdamW { wd } => [
                1.0 - self.lr * wd,
                b1,
                1.0 - b1,
                b2,
                1.0 - b2,
                (1.0 - b2.powi(t)).sqrt(),
                self.eps,
                self.lr / (1.0 - b1.powi(t)),
            ],
            Rule::LazyAdam => [
                b1,
                1.0 - b1,
                b2,
                1.0 - b2,
                self.lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t)),
                self.eps,
                0.0,
                0.0,
            ],
            Rule::Sgd {
                momentum,
                dampening,
                wd,
                ..
            } => [
                wd,
                momentum,
                1.0 - dampening,
                momentum,
                self.lr,
                0.0,
                0.0,
                0.0,
            ],
            Rule::Rmsprop { alpha, wd } => {
                [wd, alpha, 1.0 - alpha, self.eps, self.lr, 0.0, 0.0, 0.0]
            }
        };
        c.map(|x| x as f32)
    }

    /// One fused step over slices, through the runtime's instruction-set dispatch and
    /// thread split.
    fn step(&self, t: u64, w: &mut [f32], g: &[f32], s: &mut [Vec<f32>]) {
        let k = self.consts(t);
        kernel::run(Fused {
            rule: self.rule,
            first: t == 1,
            k: &k,
            span: Span::new(w, g, s),
        });
    }

    /// The same update as ndarray whole-array operations.
    fn step_ndarray(&self, t: u64, w: &mut Array1<f32>, g: &Array1<f32>, s: &mut [Array1<f32>]) {
        let k = self.consts(t);
        match self.rule {
            Rule::Adam { .. } | Rule::AdamW { .. } | Rule::LazyAdam => {
                let [m, v] = s else { return };
                let (b1, omb1, b2, omb2, bc2, eps, step);
                let decayed;
                let g = match self.rule {
                    Rule::Adam { wd } => {
                        [_, b1, omb1, b2, omb2, bc2, eps, step] = k;
                        if wd != 0.0 {
                            decayed = g + &(&*w * k[0]);
                            &decayed
                        } else {
                            g
                        }
                    }
                    Rule::AdamW { .. } => {
                        [_, b1, omb1, b2, omb2, bc2, eps, step] = k;
                        *w *= k[0];
                        g
                    }
                    _ => {
                        [b1, omb1, b2, omb2, step, eps, _, _] = k;
                        bc2 = 1.0;
                        g
                    }
                };
                *m *= b1;
                m.scaled_add(omb1, g);
                *v *= b2;
                v.scaled_add(omb2, &(g * g));
                let mut denom = v.mapv(f32::sqrt);
                if bc2 != 1.0 {
                    denom /= bc2;
                }
                denom += eps;
                w.scaled_add(-step, &(&*m / &denom));
            }
            Rule::Sgd {
                momentum,
                nesterov,
                wd,
                ..
            } => {
                let [wdk, mom, omd, _, lr, ..] = k;
                let decayed;
                let g = if wd != 0.0 {
                    decayed = g + &(&*w * wdk);
                    &decayed
                } else {
                    g
                };
                if momentum == 0.0 {
                    w.scaled_add(-lr, g);
                    return;
                }
                let [b] = s else { return };
                if t == 1 {
                    b.assign(g);
                } else {
                    *b *= mom;
                    b.scaled_add(omd, g);
                }
                if nesterov {
                    w.scaled_add(-lr, &(g + &(&*b * mom)));
                } else {
                    w.scaled_add(-lr, b);
                }
            }
            Rule::Rmsprop { wd, .. } => {
                let [wdk, alpha, oma, eps, lr, ..] = k;
                let [v] = s else { return };
                let decayed;
                let g = if wd != 0.0 {
                    decayed = g + &(&*w * wdk);
                    &decayed
                } else {
                    g
                };
                *v *= alpha;
                v.scaled_add(oma, &(g * g));
                let den = v.mapv(f32::sqrt) + eps;
                w.scaled_add(-lr, &(g / &den));
            }
        }
    }
}

/// The hand-written fused loop, as a [`Kernel`] so it gets the same dispatch and split.
struct Fused<'a> {
    rule: Rule,
    first: bool,
    k: &'a [f32; 8],
    span: Span<'a, 2>,
}

impl Kernel for Fused<'_> {
    fn split_len(&self) -> usize {
        self.span.w.len()
    }
    fn bytes_per_elem(&self) -> usize {
        self.span.bytes_per_elem()
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let Fused {
            rule,
            first,
            k,
            span,
        } = self;
        let (a, b) = span.split_at(mid);
        (
            Fused {
                rule,
                first,
                k,
                span: a,
            },
            Fused {
                rule,
                first,
                k,
                span: b,
            },
        )
    }
    #[inline(always)]
    fn run(self) {
        let Span { w, g, s: [s0, s1] } = self.span;
        let n = w.len();
        let g = &g[..n];
        let k = *self.k;
        match self.rule {
            Rule::Adam { .. } => {
                let (m, v) = (&mut s0[..n], &mut s1[..n]);
                for i in 0..n {
                    let gi = g[i] + k[0] * w[i];
                    let mi = k[1] * m[i] + k[2] * gi;
                    let vi = k[3] * v[i] + k[4] * gi * gi;
                    let denom = vi.sqrt() / k[5] + k[6];
                    w[i] -= k[7] * (mi / denom);
                    m[i] = mi;
                    v[i] = vi;
                }
            }
            Rule::AdamW { .. } => {
                let (m, v) = (&mut s0[..n], &mut s1[..n]);
                for i in 0..n {
                    let wi = w[i] * k[0];
                    let mi = k[1] * m[i] + k[2] * g[i];
                    let vi = k[3] * v[i] + k[4] * g[i] * g[i];
                    let denom = vi.sqrt() / k[5] + k[6];
                    w[i] = wi - k[7] * (mi / denom);
                    m[i] = mi;
                    v[i] = vi;
                }
            }
            Rule::LazyAdam => {
                let (m, v) = (&mut s0[..n], &mut s1[..n]);
                for i in 0..n {
                    let mi = k[0] * m[i] + k[1] * g[i];
                    let vi = k[2] * v[i] + k[3] * g[i] * g[i];
                    w[i] -= k[4] * (mi / (vi.sqrt() + k[5]));
                    m[i] = mi;
                    v[i] = vi;
                }
            }
            Rule::Sgd {
                momentum, nesterov, ..
            } if momentum > 0.0 => {
                let b = &mut s0[..n];
                if self.first {
                    for i in 0..n {
                        let gi = g[i] + k[0] * w[i];
                        w[i] -= k[4] * if nesterov { gi + k[3] * gi } else { gi };
                        b[i] = gi;
                    }
                } else if nesterov {
                    for i in 0..n {
                        let gi = g[i] + k[0] * w[i];
                        let bi = k[1] * b[i] + k[2] * gi;
                        w[i] -= k[4] * (gi + k[3] * bi);
                        b[i] = bi;
                    }
                } else {
                    for i in 0..n {
                        let gi = g[i] + k[0] * w[i];
                        let bi = k[1] * b[i] + k[2] * gi;
                        w[i] -= k[4] * bi;
                        b[i] = bi;
                    }
                }
            }
            Rule::Sgd { .. } => {
                for i in 0..n {
                    let gi = g[i] + k[0] * w[i];
                    w[i] -= k[4] * gi;
                }
            }
            Rule::Rmsprop { .. } => {
                let v = &mut s0[..n];
                for i in 0..n {
                    let gi = g[i] + k[0] * w[i];
                    let vi = k[1] * v[i] + k[2] * gi * gi;
                    w[i] -= k[4] * (gi / (vi.sqrt() + k[3]));
                    v[i] = vi;
                }
            }
        }
    }
}
