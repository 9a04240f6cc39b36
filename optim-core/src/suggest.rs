//! "Did you mean" suggestions for misspelled names.

/// Edit distance (Levenshtein) between two strings, counted in chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
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
        assert_eq!(edit_distance("lr", "rl"), 2);
        assert_eq!(edit_distance("momentum", "momentun"), 1);
    }

    #[test]
    fn closest_only_suggests_plausible_typos() {
        let names = ["lr", "beta1", "beta2", "weight_decay"];
        assert_eq!(closest("weight_decy", names), Some("weight_decay"));
        assert_eq!(closest("betaa1", names), Some("beta1"));
        assert_eq!(closest("nesterov", names), None);
    }
}
