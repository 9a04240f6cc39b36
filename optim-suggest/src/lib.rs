//! # optim-suggest
//!
//! The one "did you mean" rule of optim-dsl, shared by the `#[optimizer]` macro (compile
//! errors) and the runtime (unknown parameters, hyperparameters, config keys), so that
//! both suggest the same names.
//!
//! A candidate is suggested for a misspelled `name` when its edit distance
//! ([`edit_distance`]) is at most [`max_edits`]`(name)` and smaller than both names'
//! lengths (a name whose every character would be replaced is not a typo of it); among
//! those, the closest, the first one given on a tie.
//!
//! ```
//! use optim_suggest::closest;
//! assert_eq!(closest("betaa1", ["lr", "beta1", "beta2"]), Some("beta1"));
//! assert_eq!(closest("wehn", ["when", "init"]), Some("when")); // a swap is one edit
//! assert_eq!(closest("b", ["t", "w"]), None);
//! ```
//!
//! The work is bounded whatever the input: a candidate whose length differs from the
//! name's by more than the allowed edits is dismissed without comparing them, and the
//! distance is computed only along the band of the table that can stay within the allowed
//! edits, in three rows. Comparing names of `n` and `m` characters costs
//! `O(n + m)` memory and `O((n + m) · k)` time for `k ≤` [`MAX_EDITS`] allowed edits.

#![warn(missing_docs)]

/// The most edits a suggestion may need, whatever the name's length: beyond a third of
/// 96 characters, a longer name does not make a more distant candidate a plausible typo,
/// and the cap keeps the cost of a comparison linear in the names' lengths.
pub const MAX_EDITS: usize = 32;

/// The most edits a candidate may be from `name` and still be suggested: a third of its
/// length in characters, at least 1 and at most [`MAX_EDITS`].
pub fn max_edits(name: &str) -> usize {
    limit_for(name.chars().count())
}

fn limit_for(len: usize) -> usize {
    (len / 3).clamp(1, MAX_EDITS)
}

/// The edit distance between `a` and `b`, counted in chars: insertions, deletions,
/// substitutions and swaps of two adjacent chars each cost one (the optimal string
/// alignment distance), so `alpah` is one edit from `alpha`.
///
/// With `d(i, j)` the distance between the first `i` chars of `a` and the first `j` of
/// `b`: `d(i, 0) = i`, `d(0, j) = j`, and
/// `d(i, j) = min(d(i−1, j) + 1, d(i, j−1) + 1, d(i−1, j−1) + [aᵢ ≠ bⱼ],
/// d(i−2, j−2) + 1 if aᵢ = bⱼ₋₁ and aᵢ₋₁ = bⱼ)`.
///
/// Memory is three rows of `b`'s length; time is the product of the lengths. To compare
/// against a threshold, [`distance_within`] is cheaper.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Every distance is at most the longer length, so this limit never cuts anything off.
    let limit = a.len().max(b.len());
    within(&a, &b, limit).unwrap_or(limit)
}

/// [`edit_distance`]`(a, b)` if it is at most `limit`, else `None`, in `O(len · limit)`
/// time: `None` at once when the lengths differ by more than `limit`, and only the cells
/// `d(i, j)` with `|i − j| ≤ limit` are computed (a path through any other cell makes
/// more than `limit` insertions or deletions).
pub fn distance_within(a: &str, b: &str, limit: usize) -> Option<usize> {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    within(&a, &b, limit)
}

/// The banded recurrence of [`edit_distance`] over three rows of `b.len() + 1` cells.
/// Cells outside the band, and values above `limit`, are held as `limit + 1`.
fn within(a: &[char], b: &[char], limit: usize) -> Option<usize> {
    let (n, m) = (a.len(), b.len());
    if n.abs_diff(m) > limit {
        return None;
    }
    let far = limit.saturating_add(1);
    let mut before: Vec<usize> = vec![far; m + 1]; // row i − 2
    let mut prev: Vec<usize> = (0..=m).map(|j| j.min(far)).collect(); // row i − 1
    let mut cur: Vec<usize> = vec![far; m + 1];
    // The smallest value of row i − 1, for the cut-off below.
    let mut prev_min = 0;
    for i in 1..=n {
        let lo = i.saturating_sub(limit).max(1);
        let hi = i.saturating_add(limit).min(m);
        // The cell left of the band: the first column, or outside the band.
        cur[lo - 1] = if lo == 1 { i.min(far) } else { far };
        let mut row_min = cur[lo - 1];
        for j in lo..=hi {
            let substitute = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            let mut d = substitute.min(prev[j] + 1).min(cur[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d.min(far);
            row_min = row_min.min(cur[j]);
        }
        // The cell right of the band, read by the next row.
        if hi < m {
            cur[hi + 1] = far;
        }
        // Row i + 1 builds on rows i (at cost ≥ 0) and i − 1 (a swap, at cost 1): once
        // both are past the limit, so is every later row.
        if row_min > limit && prev_min >= limit {
            return None;
        }
        prev_min = row_min;
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    let d = prev[m];
    (d <= limit).then_some(d)
}

/// The candidate to suggest for the unknown `name`, if any is a plausible typo of it (see
/// the crate documentation for the rule). `name` itself is never suggested.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let chars: Vec<char> = name.chars().collect();
    let limit = limit_for(chars.len());
    let mut best: Option<(usize, &'a str)> = None;
    let mut other = Vec::new();
    for candidate in candidates {
        if candidate == name {
            continue;
        }
        // Only a strictly closer candidate replaces the best so far.
        let bound = best.map_or(limit, |(d, _)| d - 1);
        other.clear();
        other.extend(candidate.chars());
        let Some(d) = within(&chars, &other, bound) else {
            continue;
        };
        if d < chars.len().max(other.len()) {
            best = Some((d, candidate));
            if d == 1 {
                break; // no other candidate can be strictly closer
            }
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distance from the full table, as the textbook writes it: the reference the
    /// banded version is checked against.
    fn full_table(a: &str, b: &str) -> usize {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for (i, row) in d.iter_mut().enumerate() {
            row[0] = i;
        }
        for (j, cell) in d[0].iter_mut().enumerate() {
            *cell = j;
        }
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                let mut best = (d[i - 1][j] + 1)
                    .min(d[i][j - 1] + 1)
                    .min(d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]));
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[i - 2][j - 2] + 1);
                }
                d[i][j] = best;
            }
        }
        d[a.len()][b.len()]
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(edit_distance("beta1", "beta1"), 0);
        assert_eq!(edit_distance("beta", "beta1"), 1);
        assert_eq!(edit_distance("lr", "rl"), 1);
        assert_eq!(edit_distance("alpah", "alpha"), 1);
        assert_eq!(edit_distance("momentum", "momentun"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ca", "abc"), 3); // OSA: no edit of a swapped pair
        assert_eq!(edit_distance("β1", "1β"), 1); // chars, not bytes
    }

    #[test]
    fn the_band_gives_the_full_table_distance_up_to_its_limit() {
        // Every pair of short strings over a small alphabet, against the full table.
        let words: Vec<String> = (0..3u32.pow(5))
            .flat_map(|k| {
                (0..=5).map(move |len| {
                    (0..len)
                        .map(|p| ['a', 'b', 'c'][(k / 3u32.pow(p)) as usize % 3])
                        .collect()
                })
            })
            .collect();
        let words: Vec<&String> = words.iter().step_by(7).collect();
        for a in &words {
            for b in &words {
                let d = full_table(a, b);
                assert_eq!(edit_distance(a, b), d, "{a} {b}");
                for limit in 0..=6 {
                    let want = (d <= limit).then_some(d);
                    assert_eq!(distance_within(a, b, limit), want, "{a} {b} {limit}");
                }
            }
        }
    }

    #[test]
    fn long_names_cost_little() {
        // 30,000 chars each: the full table would hold 9·10⁸ cells.
        let a = "x".repeat(30_000);
        let b = format!("{}y", &a[1..]);
        assert_eq!(distance_within(&a, &b, MAX_EDITS), Some(1));
        assert_eq!(distance_within(&a, "x", MAX_EDITS), None);
        assert_eq!(closest(&b, [a.as_str(), "lr"]), Some(a.as_str()));
        assert_eq!(closest(&"z".repeat(30_000), [a.as_str()]), None);
    }

    #[test]
    fn the_limit_is_a_third_of_the_name_between_1_and_the_cap() {
        assert_eq!(max_edits(""), 1);
        assert_eq!(max_edits("lr"), 1);
        assert_eq!(max_edits("beta1"), 1);
        assert_eq!(max_edits("weight_decay"), 4);
        assert_eq!(max_edits("ééé"), 1); // chars, not bytes
        assert_eq!(max_edits(&"a".repeat(3 * MAX_EDITS + 2)), MAX_EDITS);
        assert_eq!(max_edits(&"a".repeat(1000)), MAX_EDITS);
    }

    #[test]
    fn closest_only_suggests_plausible_typos() {
        let names = ["lr", "beta1", "beta2", "weight_decay"];
        assert_eq!(closest("weight_decy", names), Some("weight_decay"));
        assert_eq!(closest("betaa1", names), Some("beta1"));
        assert_eq!(closest("beta_1", names), Some("beta1"));
        assert_eq!(closest("nesterov", names), None);
        assert_eq!(closest("betaa1", ["alpha"]), None);
        assert_eq!(closest("alpah", ["k", "alpha"]), Some("alpha"));
        assert_eq!(closest("l", ["lr"]), Some("lr"));
        // Replacing every char is not a typo.
        assert_eq!(closest("b", ["t", "w", "g"]), None);
        assert_eq!(closest("momentum", ["nesterov"]), None);
        // The name itself is not a suggestion; the closest wins, the first on a tie.
        assert_eq!(closest("beta1", ["beta1"]), None);
        assert_eq!(
            closest("weight_dcay", ["weight_dec", "weight_decay"]),
            Some("weight_decay")
        );
        assert_eq!(closest("betax", ["beta1", "beta2"]), Some("beta1"));
    }
}
