//! How fast is one optimizer step? The generated kernel against what else one could run.
//!
//! ```text
//! cargo run --release -q -p optim-zoo --example step_bench -- ALGO N THREADS
//! ```
//!
//! - `ALGO N THREADS` (`ALGO` a registry name: `adam`, `adamw`, `momentum`, `rmsprop`, …;
//!   default hyperparameters): one f32 parameter of `N` elements, or of `ROWSxCOLS` (a 2-D
//!   matrix: `adafactor 2048x2048 1`, `muon 1024x1024 1`; Muon needs one), stepped by
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
//!   `momentum`, `sgdm`, `nag`), `rmsprop` and `lazyadam` under their default options,
//!   and two-pass ones for `lamb` and `novograd` (their norms are over the whole tensor,
//!   so a step needs two passes: LAMB's first updates m and v and sums ‖w‖² and ‖u‖² in
//!   f64, its second recomputes u and updates w; NovoGrad's first sums ‖g‖², its second
//!   updates m and w); other names (`lars`, `adafactor`, `muon`, `schedule_free_adamw`,
//!   …) show the generated kernel and the probe only.
//!   For the multi-pass optimizers (`lamb`, `novograd`, `lars`, `adafactor`) the bytes
//!   are those their passes move (e.g. LAMB 40 B per element: 24 in the first pass, 16
//!   in the second), and the probe makes the same passes over the same arrays, each
//!   array read or read and written as in that pass. For `muon` there is no probe (the
//!   step is five Newton–Schulz iterations of matrix products, not a stream); instead
//!   `newton_schulz alone` times `optim_core::matrix::newton_schulz` on a copy of the
//!   matrix, and the GFLOP/s of both are printed (per iteration, with X the matrix
//!   transposed to r ≤ c rows: X·Xᵀ, A·A and B·X, 2·r·r·c + 2·r³ + 2·r·r·c FLOP).
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

use ndarray::{Array1, Array2, ArrayD, IxDyn};
use optim_core::kernel::{self, Kernel};
use optim_core::{Grads, HyperValue, Optimizer, Params, StatePrecision};
use serde_json::json;
use std::cell::RefCell;
use std::time::{Duration, Instant};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let precision = match args.iter().position(|a| a == "--state-precision") {
        Some(at) if at + 1 < args.len() => {
            let name = args.remove(at + 1);
            args.remove(at);
            StatePrecision::parse::<f32>(&name).unwrap_or_else(|| {
                fail(&format!(
                    "--state-precision takes {}, got `{name}`",
                    StatePrecision::choices::<f32>()
                ))
            })
        }
        Some(_) => fail("--state-precision needs a value: f32, bf16 or q8"),
        None => StatePrecision::Full,
    };
    let many_size = args[0].ends_with("-many") && args.len() == 4;
    if args.len() != 3 && !many_size {
        eprintln!("usage: step_bench ALGO N THREADS   (see the example's documentation)");
        std::process::exit(2);
    }
    let algo = args[0].as_str();
    let shape = parse_shape(&args[1]);
    let n: usize = shape.iter().product();
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
        "# {algo}, N = {n}{}, f32, threads = {}, instruction set = {}",
        match shape.as_slice() {
            [_] => String::new(),
            dims => format!(" ({})", shape_name(dims)),
        },
        optim_core::num_threads(),
        kernel::isa().name()
    );
    let one_d = shape.len() == 1;
    if !one_d && (algo == "lazyadam-rows" || algo.ends_with("-many")) {
        fail("`lazyadam-rows` and `ALGO-many` take N as a number of elements");
    }
    let ns = if algo == "lazyadam-rows" {
        lazy_rows(n)
    } else if let Some(base) = algo.strip_suffix("-many") {
        let size = match args.get(3) {
            Some(s) => parse(s, "SIZE"),
            None => 4096,
        };
        many(base, n, size)
    } else {
        dense(algo, &shape, precision)
    };
    println!("ns_per_elem {ns:.4}");
}

fn parse(s: &str, what: &str) -> usize {
    match s.replace('_', "").parse() {
        Ok(v) if v > 0 => v,
        _ => fail(&format!("{what} must be a positive integer, got `{s}`")),
    }
}

/// `N` (one dimension) or `ROWSxCOLS` (a matrix).
fn parse_shape(s: &str) -> Vec<usize> {
    let dims: Vec<usize> = s.split('x').map(|d| parse(d, "N")).collect();
    if dims.len() > 2 {
        fail(&format!(
            "N must be a number of elements or ROWSxCOLS, got `{s}`"
        ));
    }
    dims
}

/// `4194304` or `1024x1024`.
fn shape_name(dims: &[usize]) -> String {
    let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
    dims.join("x")
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
        let gbs = if v.bytes > 0.0 {
            format!("{:.1}", v.bytes / best / 1e9)
        } else {
            "-".into()
        };
        println!(
            "{:<22} {:>12.1} {:>12.1} {:>9.4} {:>8} {:>9}{vs}",
            v.name,
            best * 1e6,
            v.median() * 1e6,
            best * 1e9 / v.elems,
            gbs,
            pct
        );
    }
    variants[0].best() * 1e9 / variants[0].elems
}

// ---------------------------------------------------------------------------------------
// Dense: generated vs hand-fused vs ndarray vs probe

fn dense(algo: &str, shape: &[usize], precision: StatePrecision) -> f64 {
    let n: usize = shape.iter().product();
    let opt = build(json!({ "optimizer": algo }));
    let compact = (precision != StatePrecision::Full).then(|| {
        let mut c = build(json!({ "optimizer": algo, "state_precision": precision.name() }));
        let mut p = Params::new().with("w", array(shape, values(n, 1))).unwrap();
        let g = Grads::new().with("w", array(shape, values(n, 2)));
        c.step(&mut p, &g).unwrap();
        let per = c.state_bytes() as f64 / n as f64;
        println!(
            "# state bytes per parameter: {per:.4} ({precision}); {:.4} (f32)",
            (states_of(opt.as_ref(), shape.len()) * 4) as f64
        );
        RefCell::new(c)
    });
    let muon = (opt.name() == "muon").then(|| Ns::of(opt.as_ref(), shape));
    let hand = Hand::from(opt.as_ref());
    let n_states = states_of(opt.as_ref(), shape.len());
    let plan = passes(opt.name(), shape.len());
    let bytes = match (plan, &muon) {
        (Some(plan), _) => pass_bytes(plan) * n,
        (None, Some(_)) => 0, // not a stream: see the GFLOP/s line
        (None, None) => (3 + 2 * n_states) * 4 * n, // read w, g, states; write w, states
    };
    let w0 = values(n, 1);
    let g0 = values(n, 2);

    if let Some(h) = &hand {
        check_same_bits(algo, h, 9_001);
    }

    let threads = optim_core::num_threads();
    // The probe's arrays: the parameter, the gradient, then the element-wise states.
    let pa: RefCell<Vec<Vec<f32>>> = RefCell::new(vec![w0.clone(), g0.clone()]);
    let params = RefCell::new(Params::new().with("w", array(shape, w0.clone())).unwrap());
    let grads = Grads::new().with("w", array(shape, g0.clone()));
    let opt = RefCell::new(opt);
    let generated = || {
        let mut params = params.borrow_mut();
        opt.borrow_mut().step(&mut params, &grads).unwrap()
    };
    let compact_params = RefCell::new(Params::new().with("w", array(shape, w0.clone())).unwrap());
    let mut variants = vec![Variant::new(
        "generated",
        n,
        bytes,
        on_threads(threads, generated),
    )];
    // With compact states, the compact step comes first (its ns_per_elem is the last
    // line) and the f32-state step runs in the same rounds.
    if let Some(c) = &compact {
        let stepped = || {
            let mut params = compact_params.borrow_mut();
            c.borrow_mut().step(&mut params, &grads).unwrap()
        };
        let per = c.borrow().state_bytes() as f64 / n as f64;
        // w read and written, g read, each state's codes (and scales) read and written.
        let moved = (12.0 + 2.0 * per) * n as f64;
        variants[0].name = "generated, f32 states".into();
        variants.insert(
            0,
            Variant::new(
                &format!("generated, {precision} states"),
                n,
                moved as usize,
                on_threads(threads, stepped),
            ),
        );
    }

    // Every variant allocates its states at its first step, as the optimizer does, so
    // that all arrays sit alike in memory: at DRAM sizes, where the arrays fall relative
    // to each other alone moved results by up to 30% on the measuring machine.
    let (mut hw, hg) = (w0.clone(), g0.clone());
    let mut hs: Vec<Vec<f32>> = Vec::new();
    let mut hx = Aux::default();
    let mut ht = 0u64;
    let (mut aw, ag) = (Array1::from(w0.clone()), Array1::from(g0.clone()));
    let mut as_: Vec<Array1<f32>> = Vec::new();
    let mut ax = Aux::default();
    let mut at = 0u64;
    if let Some(h) = &hand {
        variants.push(Variant::new(h.label(), n, bytes, move || {
            if ht == 0 {
                hs = vec![vec![0.0; n]; n_states];
            }
            ht += 1;
            h.step(ht, &mut hw, &hg, &mut hs, &mut hx);
        }));
        if let Rule::Lamb { eps_root, wd, .. } = h.rule {
            let b = Hand {
                rule: Rule::Lamb {
                    eps_root,
                    wd,
                    blocked: true,
                },
                ..*h
            };
            check_same_bits(algo, &b, 9_001);
            let (mut bw, bg) = (w0.clone(), g0.clone());
            let (mut bs, mut bx, mut bt) = (Vec::new(), Aux::default(), 0u64);
            variants.push(Variant::new(b.label(), n, bytes, move || {
                if bt == 0 {
                    bs = vec![vec![0.0; n]; n_states];
                }
                bt += 1;
                b.step(bt, &mut bw, &bg, &mut bs, &mut bx);
            }));
        }
        variants.push(Variant::new("ndarray (1 thread)", n, bytes, move || {
            if at == 0 {
                as_ = vec![Array1::zeros(n); n_states];
            }
            at += 1;
            h.step_ndarray(at, &mut aw, &ag, &mut as_, &mut ax);
        }));
    }
    if let Some(ns) = &muon {
        let (src, mut x, mut scratch) = (values(n, 5), vec![0.0f32; n], Vec::new());
        variants.push(Variant::new("newton_schulz alone", n, 0, move || {
            x.copy_from_slice(&src);
            ns.run(&mut x, &mut scratch);
        }));
    }
    let probe_step = || {
        let mut pa = pa.borrow_mut();
        // (Allocated once; with no element-wise states there is nothing to allocate.)
        if pa.len() < 2 + n_states {
            pa.extend(vec![vec![0.0; n]; n_states]);
        }
        let (wg, s) = pa.split_at_mut(2);
        let [w, g] = wg else { unreachable!() };
        match plan {
            Some(plan) => probe_passes(plan, w, g, s),
            None => probe(w, g, s),
        }
    };
    let probe_name = match plan {
        Some(plan) => format!("probe ({} passes)", plan.len()),
        None => "probe".to_string(),
    };
    // Muon's step is matrix products, not a stream: no probe.
    let p = muon.is_none().then_some(variants.len());
    if p.is_some() {
        variants.push(Variant::new(
            &probe_name,
            n,
            bytes,
            on_threads(threads, probe_step),
        ));
    }
    if threads > 1 {
        // The same optimizer and arrays on one thread, in the same rounds: the speed-up
        // of threads measured under the same machine load.
        variants.push(Variant::new(
            "generated, 1 thread",
            n,
            bytes,
            on_threads(1, generated),
        ));
        if p.is_some() {
            variants.push(Variant::new(
                &format!("{probe_name}, 1 thread"),
                n,
                bytes,
                on_threads(1, probe_step),
            ));
        }
    }
    measure(&mut variants);
    let ns = report(&variants, p, Some(0));
    if compact.is_some() {
        println!(
            "# {precision} states / f32 states, same rounds: {:.3}x",
            variants[0].best() / variants[1].best()
        );
    }
    for v in variants.iter().filter(|v| v.name.starts_with("hand-fused")) {
        println!(
            "# generated / {}, same rounds: {:.3}x",
            v.name,
            variants[0].best() / v.best()
        );
    }
    if let Some(ns) = &muon {
        let flop = ns.flop();
        let at = |i: usize| flop / variants[i].best() / 1e9;
        println!(
            "# Newton-Schulz: {} iterations on {} x {} (Gram {} x {}), {:.2} GFLOP per step; \
             generated step {:.1} GFLOP/s, newton_schulz alone {:.1} GFLOP/s (step / alone {:.3}x)",
            ns.steps,
            ns.r,
            ns.c,
            ns.r,
            ns.r,
            flop / 1e9,
            at(0),
            at(1),
            variants[0].best() / variants[1].best()
        );
    }
    if threads > 1 {
        let one = variants
            .iter()
            .position(|v| v.name == "generated, 1 thread");
        let one = one.unwrap_or(0);
        match p {
            Some(p) => println!(
                "# {threads} threads vs 1, same rounds: generated {:.2}x, probe {:.2}x",
                variants[one].best() / variants[0].best(),
                variants[one + 1].best() / variants[p].best()
            ),
            None => println!(
                "# {threads} threads vs 1, same rounds: generated {:.2}x",
                variants[one].best() / variants[0].best()
            ),
        }
    }
    ns
}

/// A parameter-shaped array (`[n]` or `[rows, cols]`) holding `v`.
fn array(shape: &[usize], v: Vec<f32>) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap_or_else(|e| fail(&e.to_string()))
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

/// Element-wise states the optimizer keeps (those shaped like the parameter: not
/// Adafactor's per-row and per-column ones), from its exported state on a small tensor
/// with `ndim` dimensions.
fn states_of(opt: &dyn Optimizer<f32>, ndim: usize) -> usize {
    let mut o = opt.boxed_clone();
    let shape: &[usize] = if ndim >= 2 { &[4, 8] } else { &[8] };
    let n = shape.iter().product();
    let mut p = Params::new()
        .with("x", array(shape, vec![0.5f32; n]))
        .unwrap();
    let g = Grads::new().with("x", array(shape, vec![0.25f32; n]));
    o.step(&mut p, &g).unwrap_or_else(|e| fail(&e.to_string()));
    o.export_state()
        .params
        .first()
        .map_or(0, |s| s.tensors.iter().filter(|t| t.shape == shape).count())
}

/// Runs the generated optimizer and the hand-fused loop for a few steps from the same
/// values and stops if any bit differs: the comparison is of the same math.
fn check_same_bits(algo: &str, hand: &Hand, n: usize) {
    let mut opt = build(json!({ "optimizer": algo }));
    let n_states = states_of(opt.as_ref(), 1);
    let (w0, g0) = (values(n, 7), values(n, 8));
    let mut params = Params::new().with("w", Array1::from(w0.clone())).unwrap();
    let grads = Grads::new().with("w", Array1::from(g0.clone()));
    let mut hw = w0;
    let mut hs = vec![vec![0.0f32; n]; n_states];
    let mut hx = Aux::default();
    for t in 1..=3 {
        opt.step(&mut params, &grads).unwrap();
        hand.step(t, &mut hw, &g0, &mut hs, &mut hx);
    }
    let gen = params.get("w").unwrap().as_slice().unwrap();
    let same = gen.iter().zip(&hw).all(|(a, b)| a.to_bits() == b.to_bits());
    if !same {
        fail("the hand-fused loop does not give the generated kernel's bits: not the same math");
    }
    println!(
        "# check: {} gives the generated kernel's bits (3 steps)",
        hand.label()
    );
}

// ---------------------------------------------------------------------------------------
// Many small tensors vs one large one

fn many(algo: &str, n: usize, size: usize) -> f64 {
    let count = (n / size).max(1);
    let total = count * size;
    let mut opt_many = build(json!({ "optimizer": algo }));
    let mut opt_one = build(json!({ "optimizer": algo }));
    let n_states = states_of(opt_one.as_ref(), 1);
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
    type Tensor = (Vec<f32>, Vec<f32>, Vec<Vec<f32>>, Aux); // parameter, gradient, states
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
        .map(|((w, g), s)| (w, g, s, Aux::default()))
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
                for (w, g, s, x) in hm.iter_mut() {
                    h.step(ht, w, g, s, x);
                }
            },
        ));
    }
    variants.push(Variant::new("probe", total, bytes, move || {
        if ps.len() != n_states {
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
        // w and g, then each state that exists.
        (2 + self.s.iter().filter(|s| !s.is_empty()).count()) * std::mem::size_of::<f32>()
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
// Multi-pass optimizers: the passes their generated kernels make, and a probe making them

/// The arrays one pass reads only (`r`) and reads and writes (`rw`): [`W`], [`G`], and
/// the element-wise states from [`S0`].
#[derive(Clone, Copy, Debug)]
struct Pass {
    r: &'static [usize],
    rw: &'static [usize],
}

const W: usize = 0;
const G: usize = 1;
const S0: usize = 2;
const S1: usize = 3;

/// The passes the generated step of `name` makes over the parameter-sized arrays, as in
/// its expanded code (`-Zunpretty=expanded`), for the optimizers that need more than one
/// (a value over the whole tensor is needed before any element can be written).
fn passes(name: &str, ndim: usize) -> Option<&'static [Pass]> {
    Some(match name {
        // m, v updated, Σw² and Σu²; then u again from m, v, w and w updated
        "lamb" => &[
            Pass {
                r: &[W, G],
                rw: &[S0, S1],
            },
            Pass {
                r: &[S0, S1],
                rw: &[W],
            },
        ],
        // Σg²; then m and w
        "novograd" => &[
            Pass { r: &[G], rw: &[] },
            Pass {
                r: &[G],
                rw: &[W, S0],
            },
        ],
        // Σw², Σu²; then b and w
        "lars" => &[
            Pass {
                r: &[W, G],
                rw: &[],
            },
            Pass {
                r: &[G],
                rw: &[W, S0],
            },
        ],
        // Σw² with the row and column sums of g²; Σu²; then w (the per-row and
        // per-column states are small)
        "adafactor" if ndim >= 2 => &[
            Pass {
                r: &[W, G],
                rw: &[],
            },
            Pass { r: &[G], rw: &[] },
            Pass { r: &[G], rw: &[W] },
        ],
        // a vector keeps the full second moment V
        "adafactor" => &[
            Pass {
                r: &[W, G],
                rw: &[S0],
            },
            Pass {
                r: &[G, S0],
                rw: &[],
            },
            Pass {
                r: &[G, S0],
                rw: &[W],
            },
        ],
        _ => return None,
    })
}

/// Bytes per element the passes move (f32): each array read, each written array again.
fn pass_bytes(plan: &[Pass]) -> usize {
    plan.iter().map(|p| 4 * (p.r.len() + 2 * p.rw.len())).sum()
}

/// The probe for a multi-pass step: each pass of `plan` as one streaming loop over the
/// same arrays, reading and writing what that pass reads and writes.
fn probe_passes(plan: &[Pass], w: &mut [f32], g: &mut [f32], s: &mut [Vec<f32>]) {
    for pass in plan {
        let mut r: Vec<&[f32]> = Vec::new();
        let mut rw: Vec<&mut [f32]> = Vec::new();
        let arrays = [&mut *w, &mut *g]
            .into_iter()
            .chain(s.iter_mut().map(Vec::as_mut_slice));
        for (i, a) in arrays.enumerate() {
            if pass.rw.contains(&i) {
                rw.push(a);
            } else if pass.r.contains(&i) {
                r.push(a);
            }
        }
        stream(r, rw);
    }
}

fn stream(r: Vec<&[f32]>, rw: Vec<&mut [f32]>) {
    fn go<const R: usize, const M: usize>(r: Vec<&[f32]>, rw: Vec<&mut [f32]>) {
        match (<[&[f32]; R]>::try_from(r), <[&mut [f32]; M]>::try_from(rw)) {
            (Ok(r), Ok(rw)) => kernel::run(Stream { r, rw }),
            _ => unreachable!("the lengths were matched"),
        }
    }
    match (r.len(), rw.len()) {
        (1, 0) => go::<1, 0>(r, rw),
        (2, 0) => go::<2, 0>(r, rw),
        (1, 1) => go::<1, 1>(r, rw),
        (2, 1) => go::<2, 1>(r, rw),
        (1, 2) => go::<1, 2>(r, rw),
        (2, 2) => go::<2, 2>(r, rw),
        other => fail(&format!("no probe pass for {other:?} arrays")),
    }
}

/// One probe pass: `R ≥ 1` arrays read, `M` arrays read and written (one add per element);
/// a pass that writes nothing folds what it read into a value it keeps (`black_box`).
struct Stream<'a, const R: usize, const M: usize> {
    r: [&'a [f32]; R],
    rw: [&'a mut [f32]; M],
}

impl<const R: usize, const M: usize> Kernel for Stream<'_, R, M> {
    fn split_len(&self) -> usize {
        self.r[0].len()
    }
    fn bytes_per_elem(&self) -> usize {
        4 * (R + M)
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let r = self.r.map(|a| a.split_at(mid));
        let mut rw1: [&mut [f32]; M] = std::array::from_fn(|_| &mut [][..]);
        let mut i = 0;
        let rw0 = self.rw.map(|a| {
            let (x, y) = a.split_at_mut(mid);
            rw1[i] = y;
            i += 1;
            x
        });
        (
            Stream {
                r: r.map(|p| p.0),
                rw: rw0,
            },
            Stream {
                r: r.map(|p| p.1),
                rw: rw1,
            },
        )
    }
    #[inline(always)]
    fn run(self) {
        let n = self.r[0].len();
        let r = self.r.map(|a| &a[..n]);
        let mut rw = self.rw.map(|a| &mut a[..n]);
        let mut bits = 0u32;
        for i in 0..n {
            let mut x = r[0][i];
            for a in &r[1..] {
                x += a[i];
            }
            for a in rw.iter_mut() {
                a[i] += x;
            }
            if M == 0 {
                bits ^= x.to_bits();
            }
        }
        std::hint::black_box(bits);
    }
}

// ---------------------------------------------------------------------------------------
// Muon: Newton–Schulz alone

/// Muon's orthogonalization with the optimizer's hyperparameters, on the matrix shape of
/// the parameter (`r × c` after the transpose that makes `r ≤ c`).
struct Ns {
    rows: usize,
    cols: usize,
    r: usize,
    c: usize,
    steps: usize,
    abc: (f64, f64, f64),
    eps: f64,
}

impl Ns {
    fn of(o: &dyn Optimizer<f32>, shape: &[usize]) -> Ns {
        let [rows, cols] = *shape else {
            fail("muon steps matrices: give N as ROWSxCOLS (e.g. 1024x1024)")
        };
        Ns {
            rows,
            cols,
            r: rows.min(cols),
            c: rows.max(cols),
            steps: float(o, "ns_steps") as usize,
            abc: (float(o, "ns_a"), float(o, "ns_b"), float(o, "ns_c")),
            eps: float(o, "eps"),
        }
    }

    /// FLOP of the iterations: per iteration A = X·Xᵀ (2·r·r·c), A·A (2·r³), B·X (2·r·r·c).
    fn flop(&self) -> f64 {
        let (r, c) = (self.r as f64, self.c as f64);
        self.steps as f64 * (2.0 * r * r * c + 2.0 * r * r * r + 2.0 * r * r * c)
    }

    fn run(&self, x: &mut [f32], scratch: &mut Vec<f32>) {
        let (a, b, c) = self.abc;
        optim_core::matrix::newton_schulz(
            x, self.rows, self.cols, self.steps, a, b, c, self.eps, scratch,
        );
    }
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
    /// Two passes: m, v and the sums of w² and u²; then w. `blocked`: the first pass
    /// per block of `kernel::REDUCE_BLOCK` elements as an element loop writing u to a
    /// buffer in L1, then the sums (see [`lamb_first_pass_blocked`]).
    Lamb {
        eps_root: f64,
        wd: f64,
        blocked: bool,
    },
    /// Two passes: the sum of g²; then m and w.
    Novograd {
        eps_root: f64,
        wd: f64,
    },
}

/// Per-step constants of a hand-written step, in f32.
type Consts = [f32; 10];

/// What a hand-written step keeps besides the element-wise states: NovoGrad's ν, and the
/// per-block partial sums of a first pass (kept, so that a step allocates nothing).
#[derive(Clone, Debug, Default)]
struct Aux {
    nu: f64,
    parts: Vec<f64>,
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
    /// The variant's name in the output.
    fn label(&self) -> &'static str {
        match self.rule {
            Rule::Lamb { blocked: true, .. } => "hand-fused, blocked",
            _ => "hand-fused",
        }
    }

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
            "lamb" => Rule::Lamb {
                eps_root: float(o, "eps_root"),
                wd,
                blocked: false,
            },
            "novograd" => Rule::Novograd {
                eps_root: float(o, "eps_root"),
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
    fn consts(&self, t: u64) -> Consts {
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
                0.0,
                0.0,
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
                0.0,
                0.0,
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
                0.0,
                0.0,
            ],
            Rule::Rmsprop { alpha, wd } => [
                wd,
                alpha,
                1.0 - alpha,
                self.eps,
                self.lr,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
            ],
            // The bias corrections as factors (lamb.rs multiplies by them); the last is
            // lr·(trust ratio), set after the first pass.
            Rule::Lamb { eps_root, wd, .. } => [
                b1,
                1.0 - b1,
                b2,
                1.0 - b2,
                1.0 / (1.0 - b1.powi(t)),
                1.0 / (1.0 - b2.powi(t)),
                eps_root,
                self.eps,
                wd,
                0.0,
            ],
            // The first is √(ν + ε_root) + ε, set after the first pass.
            Rule::Novograd { wd, .. } => [0.0, wd, b1, self.lr, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        };
        c.map(|x| x as f32)
    }

    /// One fused step over slices (two for LAMB and NovoGrad), through the runtime's
    /// instruction-set dispatch and thread split.
    fn step(&self, t: u64, w: &mut [f32], g: &[f32], s: &mut [Vec<f32>], aux: &mut Aux) {
        let k = match self.rule {
            Rule::Lamb { .. } | Rule::Novograd { .. } => self.first_pass(t, w, g, s, aux),
            _ => self.consts(t),
        };
        kernel::run(Fused {
            rule: self.rule,
            first: t == 1,
            k: &k,
            span: Span::new(w, g, s),
        });
    }

    /// The first pass of a two-pass rule (LAMB: m and v, and the sums of w² and u²;
    /// NovoGrad: the sum of g²), then the constants of the second pass, which depend on
    /// those sums. Each block of `kernel::REDUCE_BLOCK` elements sums in 8 f64 lanes and
    /// the blocks are added in order, as the generated step does: the same bits under any
    /// thread split.
    fn first_pass(
        &self,
        t: u64,
        w: &mut [f32],
        g: &[f32],
        s: &mut [Vec<f32>],
        aux: &mut Aux,
    ) -> Consts {
        let mut k = self.consts(t);
        let sums = if matches!(self.rule, Rule::Lamb { .. }) {
            2
        } else {
            1
        };
        let blocks = w.len().div_ceil(kernel::REDUCE_BLOCK);
        aux.parts.resize(blocks * sums, 0.0);
        kernel::run(Reduce {
            rule: self.rule,
            k: &k,
            span: Span::new(w, g, s),
            parts: &mut aux.parts,
            sums,
        });
        let norm = |j: usize| {
            let total = aux
                .parts
                .iter()
                .skip(j)
                .step_by(sums)
                .fold(0.0, |a, &p| a + p);
            total.sqrt()
        };
        match self.rule {
            Rule::Lamb { .. } => {
                let (w_norm, u_norm) = (norm(0), norm(1));
                let ratio = if w_norm > 0.0 && u_norm > 0.0 {
                    w_norm / u_norm
                } else {
                    1.0
                };
                k[9] = (self.lr * ratio) as f32;
            }
            Rule::Novograd { eps_root, .. } => {
                let g_norm = norm(0);
                let sq = g_norm * g_norm;
                aux.nu = if t == 1 {
                    sq
                } else {
                    self.beta2 * aux.nu + (1.0 - self.beta2) * sq
                };
                k[0] = ((aux.nu + eps_root).sqrt() + self.eps) as f32;
            }
            _ => {}
        }
        k
    }

    /// The same update as ndarray whole-array operations.
    fn step_ndarray(
        &self,
        t: u64,
        w: &mut Array1<f32>,
        g: &Array1<f32>,
        s: &mut [Array1<f32>],
        aux: &mut Aux,
    ) {
        let k = self.consts(t);
        match self.rule {
            Rule::Adam { .. } | Rule::AdamW { .. } | Rule::LazyAdam => {
                let [m, v] = s else { return };
                let (b1, omb1, b2, omb2, bc2, eps, step);
                let decayed;
                let g = match self.rule {
                    Rule::Adam { wd } => {
                        [_, b1, omb1, b2, omb2, bc2, eps, step, _, _] = k;
                        if wd != 0.0 {
                            decayed = g + &(&*w * k[0]);
                            &decayed
                        } else {
                            g
                        }
                    }
                    Rule::AdamW { .. } => {
                        [_, b1, omb1, b2, omb2, bc2, eps, step, _, _] = k;
                        *w *= k[0];
                        g
                    }
                    _ => {
                        [b1, omb1, b2, omb2, step, eps, ..] = k;
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
            Rule::Lamb { .. } => {
                let [m, v] = s else { return };
                let [b1, omb1, b2, omb2, c1, c2, eps_root, eps, wd, _] = k;
                *m *= b1;
                m.scaled_add(omb1, g);
                *v *= b2;
                v.scaled_add(omb2, &(g * g));
                let den = (&*v * c2 + eps_root).mapv(f32::sqrt) + eps;
                let mut u = &*m * c1 / &den;
                u.scaled_add(wd, w);
                let (w_norm, u_norm) = (w.dot(&*w).sqrt(), u.dot(&u).sqrt());
                let ratio = if w_norm > 0.0 && u_norm > 0.0 {
                    w_norm / u_norm
                } else {
                    1.0
                };
                w.scaled_add(-(self.lr as f32) * ratio, &u);
            }
            Rule::Novograd { eps_root, .. } => {
                let [m] = s else { return };
                let [_, wd, b1, lr, ..] = k;
                let sq = f64::from(g.dot(g));
                aux.nu = if t == 1 {
                    sq
                } else {
                    self.beta2 * aux.nu + (1.0 - self.beta2) * sq
                };
                let den = ((aux.nu + eps_root).sqrt() + self.eps) as f32;
                let mut u = g / den;
                u.scaled_add(wd, w);
                if t == 1 {
                    m.assign(&u);
                } else {
                    *m *= b1;
                    *m += &u;
                }
                w.scaled_add(-lr, m);
            }
        }
    }
}

/// The first pass of a hand-written two-pass step (see [`Hand::first_pass`]), as a
/// [`Kernel`]; splits fall on whole blocks, each writing its own partial sums.
struct Reduce<'a> {
    rule: Rule,
    k: &'a Consts,
    span: Span<'a, 2>,
    parts: &'a mut [f64],
    /// Sums per block.
    sums: usize,
}

impl Kernel for Reduce<'_> {
    fn split_len(&self) -> usize {
        self.span.w.len()
    }
    fn bytes_per_elem(&self) -> usize {
        self.span.bytes_per_elem()
    }
    fn align(&self) -> usize {
        kernel::REDUCE_BLOCK
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let Reduce {
            rule,
            k,
            span,
            parts,
            sums,
        } = self;
        let (a, b) = span.split_at(mid);
        let (pa, pb) = kernel::split_parts(parts, mid, sums);
        (
            Reduce {
                rule,
                k,
                span: a,
                parts: pa,
                sums,
            },
            Reduce {
                rule,
                k,
                span: b,
                parts: pb,
                sums,
            },
        )
    }
    #[inline(always)]
    fn run(self) {
        const B: usize = kernel::REDUCE_BLOCK;
        let Span { w, g, s: [m, v] } = self.span;
        let n = w.len();
        let g = &g[..n];
        match self.rule {
            Rule::Lamb { blocked, .. } => {
                let (m, v) = (&mut m[..n], &mut v[..n]);
                if blocked {
                    lamb_first_pass_blocked(self.k, w, g, m, v, self.parts)
                } else {
                    lamb_first_pass(self.k, w, g, m, v, self.parts)
                }
            }
            Rule::Novograd { .. } => {
                for (g, p) in g.chunks(B).zip(self.parts.iter_mut()) {
                    *p = sum_sq(g);
                }
            }
            _ => {}
        }
    }
}

/// LAMB's first pass over one span: m and v updated, and per block of
/// `kernel::REDUCE_BLOCK` elements the sums of w² and u² into `parts`.
///
/// Eight elements at a time as arrays (one bounds check per eight) and the rest with
/// constant lanes, so that the eight lanes of each sum stay in one vector register. Written
/// with chunk iterators or a tail indexing the lanes at run time, the loop stays scalar
/// under the release profile's 16 codegen units (LLVM does not vectorize the 8 unrolled
/// lanes there), at 4x the time.
#[inline(always)]
fn lamb_first_pass(
    k: &Consts,
    w: &[f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    parts: &mut [f64],
) {
    const B: usize = kernel::REDUCE_BLOCK;
    let n = w.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    for (blk, p) in parts.chunks_exact_mut(2).enumerate() {
        let (mut i, hi) = (blk * B, n.min(blk * B + B));
        let (mut sw, mut su) = ([0.0f64; 8], [0.0f64; 8]);
        while i + 8 <= hi {
            let (w8, g8): (&[f32; 8], &[f32; 8]) = (lanes(&w[i..i + 8]), lanes(&g[i..i + 8]));
            let m8: &mut [f32; 8] = lanes_mut(&mut m[i..i + 8]);
            let v8: &mut [f32; 8] = lanes_mut(&mut v[i..i + 8]);
            for l in 0..8 {
                let (x, y) = lamb_elem(k, w8[l], g8[l], &mut m8[l], &mut v8[l]);
                sw[l] += x;
                su[l] += y;
            }
            i += 8;
        }
        for l in 0..8 {
            let e = i + l;
            if e < hi {
                let (x, y) = lamb_elem(k, w[e], g[e], &mut m[e], &mut v[e]);
                sw[l] += x;
                su[l] += y;
            }
        }
        p[0] = kernel::fold_sum(&sw);
        p[1] = kernel::fold_sum(&su);
    }
}

/// LAMB's first pass as [`lamb_first_pass`], but per block as two loops: an element loop
/// updating m and v and writing u to a buffer that stays in L1 (the loop vectorizer makes
/// it 16 wide under AVX-512, where the 8-lane loop is 8 wide), then the sums of w² and u².
/// Same bits.
#[inline(always)]
fn lamb_first_pass_blocked(
    k: &Consts,
    w: &[f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    parts: &mut [f64],
) {
    const B: usize = kernel::REDUCE_BLOCK;
    let [b1, omb1, b2, omb2, c1, c2, eps_root, eps, wd, _] = *k;
    let mut u = [0.0f32; B];
    let blocks = w.chunks(B).zip(g.chunks(B));
    let blocks = blocks.zip(m.chunks_mut(B).zip(v.chunks_mut(B)));
    for (((w, g), (m, v)), p) in blocks.zip(parts.chunks_exact_mut(2)) {
        let u = &mut u[..w.len()];
        for ((((u, &w), &g), m), v) in u.iter_mut().zip(w).zip(g).zip(m).zip(v) {
            *m = b1 * *m + omb1 * g;
            *v = b2 * *v + omb2 * g * g;
            *u = (*m * c1) / ((*v * c2 + eps_root).sqrt() + eps) + wd * w;
        }
        p[0] = sum_sq(w);
        p[1] = sum_sq(u);
    }
}

/// One element of LAMB's first pass: m and v updated; w² and u² for the sums.
#[inline(always)]
fn lamb_elem(k: &Consts, w: f32, g: f32, m: &mut f32, v: &mut f32) -> (f64, f64) {
    let [b1, omb1, b2, omb2, c1, c2, eps_root, eps, wd, _] = *k;
    *m = b1 * *m + omb1 * g;
    *v = b2 * *v + omb2 * g * g;
    let u = (*m * c1) / ((*v * c2 + eps_root).sqrt() + eps) + wd * w;
    (f64::from(w) * f64::from(w), f64::from(u) * f64::from(u))
}

/// Eight elements as an array.
#[inline(always)]
fn lanes(x: &[f32]) -> &[f32; 8] {
    x.try_into().expect("chunks of 8")
}

#[inline(always)]
fn lanes_mut(x: &mut [f32]) -> &mut [f32; 8] {
    x.try_into().expect("chunks of 8")
}

/// Σx² over one block in f64: element i goes to lane i mod 8, the lanes are added as
/// `kernel::fold_sum` adds them (the generated reductions' order); written as
/// [`lamb_first_pass`] is, for the same reason.
#[inline(always)]
fn sum_sq(x: &[f32]) -> f64 {
    let mut lanes8 = [0.0f64; 8];
    let mut i = 0;
    while i + 8 <= x.len() {
        let x8: &[f32; 8] = lanes(&x[i..i + 8]);
        for l in 0..8 {
            lanes8[l] += f64::from(x8[l]) * f64::from(x8[l]);
        }
        i += 8;
    }
    for (l, acc) in lanes8.iter_mut().enumerate() {
        if let Some(&y) = x.get(i + l) {
            *acc += f64::from(y) * f64::from(y);
        }
    }
    kernel::fold_sum(&lanes8)
}

/// The hand-written fused loop, as a [`Kernel`] so it gets the same dispatch and split.
struct Fused<'a> {
    rule: Rule,
    first: bool,
    k: &'a Consts,
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
            // The second passes of the two-pass rules (the first: `Reduce`).
            Rule::Lamb { .. } => {
                let [_, _, _, _, c1, c2, eps_root, eps, wd, step] = k;
                let (m, v) = (&s0[..n], &s1[..n]);
                for i in 0..n {
                    let u = (m[i] * c1) / ((v[i] * c2 + eps_root).sqrt() + eps) + wd * w[i];
                    w[i] -= step * u;
                }
            }
            Rule::Novograd { .. } => {
                let [den, wd, b1, lr, ..] = k;
                let m = &mut s0[..n];
                if self.first {
                    for i in 0..n {
                        let u = g[i] / den + wd * w[i];
                        w[i] -= lr * u;
                        m[i] = u;
                    }
                } else {
                    for i in 0..n {
                        let mi = b1 * m[i] + (g[i] / den + wd * w[i]);
                        w[i] -= lr * mi;
                        m[i] = mi;
                    }
                }
            }
        }
    }
}
