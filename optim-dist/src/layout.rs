//! Which rank holds which elements: the shards and the padded blocks the collectives move.

use optim_core::{Params, Scalar};

/// How the parameters are split over the ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardRule {
    /// All parameters, in order, as one flat vector of `L` elements cut into `N` equal
    /// blocks of `B = ⌈L/N⌉` (the last padded with `N·B − L` unused elements): rank `r`
    /// holds elements `[r·B, (r+1)·B)`, a parameter possibly split between ranks. Only for
    /// element-wise updates ([`optim_core::Optimizer::elementwise`]).
    Flat,
    /// Whole parameters: the largest first, each to the rank holding the fewest elements
    /// so far (the lowest such rank), as torch's `ZeroRedundancyOptimizer` partitions;
    /// the blocks are padded to the largest rank's count `B`. For any optimizer.
    Whole,
}

/// A contiguous range of one parameter's elements (row-major) held by one rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The parameter's position in the parameters.
    pub param: usize,
    /// First element of the range within the parameter.
    pub start: usize,
    /// Number of elements.
    pub len: usize,
    /// Where the range sits in its rank's block.
    pub at: usize,
}

/// The shards of a set of parameters over `N` ranks.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    rule: ShardRule,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
    block: usize,
    blocks: Vec<Vec<Segment>>,
    fingerprint: u64,
}

impl Layout {
    /// The layout of `params` over `ranks` ranks (at least 1) under `rule`.
    pub fn new<T: Scalar>(params: &Params<T>, ranks: usize, rule: ShardRule) -> Layout {
        let ranks = ranks.max(1);
        let names: Vec<String> = params.names().map(str::to_string).collect();
        let shapes: Vec<Vec<usize>> = params.iter().map(|(_, p)| p.shape().to_vec()).collect();
        let numels: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
        let mut blocks = vec![Vec::new(); ranks];
        let block = match rule {
            ShardRule::Flat => {
                let total: usize = numels.iter().sum();
                let block = total.div_ceil(ranks);
                let mut offset = 0;
                for (param, &numel) in numels.iter().enumerate() {
                    let end = offset + numel;
                    // The ranks whose blocks [r·B, (r+1)·B) meet [offset, end).
                    let mut at = offset;
                    while at < end {
                        let r = at / block;
                        let stop = end.min((r + 1) * block);
                        blocks[r].push(Segment {
                            param,
                            start: at - offset,
                            len: stop - at,
                            at: at - r * block,
                        });
                        at = stop;
                    }
                    offset = end;
                }
                block
            }
            ShardRule::Whole => {
                let mut order: Vec<usize> = (0..numels.len()).collect();
                // Largest first; equal sizes in parameter order (the sort is stable).
                order.sort_by(|&a, &b| numels[b].cmp(&numels[a]));
                let mut load = vec![0usize; ranks];
                let mut owner = vec![0usize; numels.len()];
                for p in order {
                    let r = (0..ranks).min_by_key(|&r| (load[r], r)).unwrap_or(0);
                    owner[p] = r;
                    load[r] += numels[p];
                }
                let mut fill = vec![0usize; ranks];
                for (param, &r) in owner.iter().enumerate() {
                    blocks[r].push(Segment {
                        param,
                        start: 0,
                        len: numels[param],
                        at: fill[r],
                    });
                    fill[r] += numels[param];
                }
                load.into_iter().max().unwrap_or(0)
            }
        };
        let fingerprint = fingerprint(rule, ranks, T::DTYPE.name(), &names, &shapes);
        Layout {
            rule,
            names,
            shapes,
            block,
            blocks,
            fingerprint,
        }
    }

    /// Whether `params` has exactly these names and shapes, in this order.
    pub fn matches<T: Scalar>(&self, params: &Params<T>) -> bool {
        params.len() == self.names.len()
            && params
                .iter()
                .zip(self.names.iter().zip(&self.shapes))
                .all(|((n, p), (name, shape))| n == name && p.shape() == shape.as_slice())
    }

    /// The rule.
    pub fn rule(&self) -> ShardRule {
        self.rule
    }
    /// Number of ranks.
    pub fn ranks(&self) -> usize {
        self.blocks.len()
    }
    /// Elements per rank's block, padding included (`B`).
    pub fn block(&self) -> usize {
        self.block
    }
    /// Rank `rank`'s segments, in parameter order.
    pub fn segments(&self, rank: usize) -> &[Segment] {
        self.blocks.get(rank).map_or(&[], Vec::as_slice)
    }
    /// Elements of parameters rank `rank` holds.
    pub fn held(&self, rank: usize) -> usize {
        self.segments(rank).iter().map(|s| s.len).sum()
    }
    /// Unused elements at the end of rank `rank`'s block (`B − held`).
    pub fn padding(&self, rank: usize) -> usize {
        self.block - self.held(rank)
    }
    /// Parameter names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
    /// Parameter shapes, in order.
    pub fn shapes(&self) -> &[Vec<usize>] {
        &self.shapes
    }
    /// A 64-bit FNV-1a hash of the rule, the number of ranks, the element type, the names
    /// and the shapes: equal on two ranks when their layouts are.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

/// FNV-1a, 64 bits: a stable hash (std's `DefaultHasher` may change between releases,
/// and fingerprints are written into checkpoints).
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Fnv {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }
    pub(crate) fn word(&mut self, x: u64) -> &mut Fnv {
        self.bytes(&x.to_le_bytes())
    }
    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

fn fingerprint(
    rule: ShardRule,
    ranks: usize,
    dtype: &str,
    names: &[String],
    shapes: &[Vec<usize>],
) -> u64 {
    let mut h = Fnv::new();
    h.word(rule as u64)
        .word(ranks as u64)
        .bytes(dtype.as_bytes());
    for (name, shape) in names.iter().zip(shapes) {
        h.word(name.len() as u64).bytes(name.as_bytes());
        h.word(shape.len() as u64);
        shape.iter().for_each(|&d| {
            h.word(d as u64);
        });
    }
    h.finish()
}
