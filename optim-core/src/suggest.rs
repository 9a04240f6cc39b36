//! "Did you mean" suggestions for misspelled names.

/// Edit distance between two strings, counted in chars: insertions, deletions,
/// substitutions and swaps of adjacent chars each cost one (optimal string alignment), so
/// `alpah` is one edit from `alpha`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate closest to `name`, if it is close enough to be a plausible typo
/// (distance at most a third of the name's length, and at least 1 allowed).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(edit_distance("beta1", "beta1"), 0);
        assert_eq!(edit_distance("beta", "beta1"), 1);
        assert_eq!(edit_distance("lr", "rl"), 1);
        assert_eq!(edit_distance("alpah", "alpha"), 1);
        assert_eq!(edit_distance("momentum", "momentun"), 1);
    }

    #[test]
    fn closest_only_suggests_plausible_typos() {
        let names = ["lr", "beta1", "beta2", "weight_decay"];
        assert_eq!(closest("weight_decy", names), Some("weight_decay"));
        assert_eq!(closest("betaa1", names), Some("beta1"));
        assert_eq!(closest("nesterov", names), None);
        assert_eq!(closest("betaa1", ["alpha"]), None);
        assert_eq!(closest("alpah", ["k", "alpha"]), Some("alpha"));
    }
}
