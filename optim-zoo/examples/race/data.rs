//! The handwritten digits (data/digits.csv.gz, see data/README.md): loading, a seeded
//! train/test split, and standardization fitted on the training part only.

use crate::rng::SplitMix64;
use crate::AnyResult;
use flate2::read::GzDecoder;
use ndarray::{Array1, Array2, Axis};
use std::io::Read;
use std::path::Path;

/// Pixels per image (8×8).
pub const PIXELS: usize = 64;
/// Digit classes 0–9.
pub const CLASSES: usize = 10;

/// Share of the images held out for testing.
pub const TEST_FRACTION: f64 = 0.2;

/// The digits at `path`, split with `seed` ([`TEST_FRACTION`] held out) and standardized:
/// the data every optimizer trains on.
pub fn load_split(path: &Path, seed: u64) -> AnyResult<Split> {
    let mut parts = split(&load_digits(path)?, TEST_FRACTION, seed);
    standardize(&mut parts);
    Ok(parts)
}

/// Images as rows of `x`, with their labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// One row of [`PIXELS`] features per image.
    pub x: Array2<f32>,
    /// Class of each row, below [`CLASSES`].
    pub y: Vec<usize>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        Dataset {
            x: self.x.select(Axis(0), indices),
            y: indices.iter().map(|&i| self.y[i]).collect(),
        }
    }
}

/// A training part and a held-out test part.
#[derive(Clone, Debug)]
pub struct Split {
    /// Used for training and for fitting the standardization.
    pub train: Dataset,
    /// Only evaluated.
    pub test: Dataset,
}

/// Reads the gzip-compressed CSV: per line 64 pixel values then the label, no header.
pub fn load_digits(path: &Path) -> AnyResult<Dataset> {
    let compressed = std::fs::read(path)
        .map_err(|e| format!("cannot read {}: {e} (see --data)", path.display()))?;
    let mut text = String::new();
    GzDecoder::new(compressed.as_slice())
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: not a gzip-compressed text file: {e}", path.display()))?;
    parse_csv(&text).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Parses the CSV text (see [`load_digits`]); errors name the offending line.
pub fn parse_csv(text: &str) -> AnyResult<Dataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != PIXELS + 1 {
            let n = fields.len();
            return Err(format!("line {}: {n} fields, expected {}", number + 1, PIXELS + 1).into());
        }
        for field in &fields[..PIXELS] {
            let value: f32 = field
                .parse()
                .map_err(|_| format!("line {}: pixel `{field}` is not a number", number + 1))?;
            pixels.push(value);
        }
        let label: usize = fields[PIXELS]
            .parse()
            .ok()
            .filter(|&c| c < CLASSES)
            .ok_or_else(|| {
                format!(
                    "line {}: label `{}` is not 0..9",
                    number + 1,
                    fields[PIXELS]
                )
            })?;
        labels.push(label);
    }
    if labels.is_empty() {
        return Err("no images".into());
    }
    let x = Array2::from_shape_vec((labels.len(), PIXELS), pixels)?;
    Ok(Dataset { x, y: labels })
}

/// Shuffles with `seed` and holds out `test_fraction` of the images for testing.
pub fn split(data: &Dataset, test_fraction: f64, seed: u64) -> Split {
    let mut order: Vec<usize> = (0..data.len()).collect();
    SplitMix64::stream(seed, 1).shuffle(&mut order);
    let test_len = ((data.len() as f64 * test_fraction).round() as usize).min(data.len());
    let (test, train) = order.split_at(test_len);
    Split {
        train: data.select(train),
        test: data.select(test),
    }
}

/// Scales every feature to mean 0 and standard deviation 1 on the training part and
/// applies the same affine map to the test part. Pixels that are constant in training
/// (the always-blank border) keep scale 1 instead of dividing by zero.
pub fn standardize(split: &mut Split) {
    let mean: Array1<f32> = split
        .train
        .x
        .mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(split.train.x.ncols()));
    let std = split
        .train
        .x
        .std_axis(Axis(0), 0.0)
        .mapv(|s| if s > 1e-6 { s } else { 1.0 });
    for x in [&mut split.train.x, &mut split.test.x] {
        *x -= &mean;
        *x /= &std;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(pixel: u32, label: usize) -> String {
        let pixels: Vec<String> = (0..PIXELS)
            .map(|i| (pixel + i as u32 % 3).to_string())
            .collect();
        format!("{},{label}\n", pixels.join(","))
    }

    #[test]
    fn parses_pixels_and_labels() {
        let data = parse_csv(&(line(0, 3) + &line(5, 9))).unwrap();
        assert_eq!(data.x.dim(), (2, PIXELS));
        assert_eq!(data.y, [3, 9]);
        assert_eq!(data.x[[1, 1]], 6.0);
    }

    #[test]
    fn errors_name_the_line() {
        let bad_label = line(0, 3) + &line(0, 3).replace(",3\n", ",12\n");
        let e = parse_csv(&bad_label).unwrap_err().to_string();
        assert_eq!(e, "line 2: label `12` is not 0..9");
        let e = parse_csv("1,2,3\n").unwrap_err().to_string();
        assert_eq!(e, "line 1: 3 fields, expected 65");
        assert!(parse_csv("").is_err());
    }

    #[test]
    fn split_is_seeded_and_disjoint() {
        let text: String = (0..20).map(|i| line(i, (i % 10) as usize)).collect();
        let data = parse_csv(&text).unwrap();
        let a = split(&data, 0.25, 1);
        assert_eq!((a.train.len(), a.test.len()), (15, 5));
        assert_eq!(split(&data, 0.25, 1).test.x, a.test.x);
        assert_ne!(split(&data, 0.25, 2).test.x, a.test.x);
        let firsts: Vec<f32> = a
            .train
            .x
            .column(0)
            .iter()
            .chain(a.test.x.column(0))
            .copied()
            .collect();
        let mut sorted = firsts.clone();
        sorted.sort_by(f32::total_cmp);
        sorted.dedup();
        assert_eq!(sorted.len(), 20, "every image in exactly one part");
    }

    #[test]
    fn standardize_fits_on_train_only() {
        let text: String = (0..10).map(|i| line(i * 2, 0)).collect();
        let mut parts = split(&parse_csv(&text).unwrap(), 0.3, 0);
        standardize(&mut parts);
        let mean = parts.train.x.mean_axis(Axis(0)).unwrap();
        let std = parts.train.x.std_axis(Axis(0), 0.0);
        assert!(mean.iter().all(|m| m.abs() < 1e-5));
        assert!(std.iter().all(|s| (s - 1.0).abs() < 1e-4));
    }

    #[test]
    fn the_shipped_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/digits.csv.gz");
        let data = load_digits(&path).unwrap();
        assert_eq!(data.x.dim(), (1797, PIXELS));
        assert!(data.x.iter().all(|&p| (0.0..=16.0).contains(&p)));
        for class in 0..CLASSES {
            assert!(data.y.iter().filter(|&&c| c == class).count() > 150);
        }
    }
}
