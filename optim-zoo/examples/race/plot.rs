//! SVG charts: loss curves of every optimizer on one chart, and optimizer paths over a
//! shaded map of each 2-D test function.

use crate::surfaces::Surface;
use crate::AnyResult;
use plotters::prelude::*;
use std::path::Path;

/// One line on a chart.
pub struct Line<'a, P> {
    /// Legend text.
    pub label: &'a str,
    /// Index into the palette; the same optimizer keeps its color on every chart.
    pub color: usize,
    /// The points, in order.
    pub points: &'a [P],
}

/// Tableau 10 plus six darker tones: 16 colors that stay apart on a white or gray map.
const PALETTE: [(u8, u8, u8); 16] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (0, 0, 0),
    (0, 70, 130),
    (150, 60, 0),
    (0, 100, 60),
    (120, 0, 90),
    (90, 90, 0),
];

/// The palette color at `index` (wrapping).
pub fn color(index: usize) -> RGBColor {
    let (r, g, b) = PALETTE[index % PALETTE.len()];
    RGBColor(r, g, b)
}

/// Training loss against step, log scale, one line per optimizer.
pub fn loss_curves(path: &Path, title: &str, lines: &[Line<(u64, f64)>]) -> AnyResult<()> {
    let finite = |&&(_, loss): &&(u64, f64)| loss.is_finite() && loss > 0.0;
    let all = || lines.iter().flat_map(|l| l.points.iter().filter(finite));
    let max_step = all().map(|p| p.0).max().unwrap_or(1).max(1);
    let lo = all().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = all().map(|p| p.1).fold(0.0, f64::max);
    let (lo, hi) = if lo < hi { (lo, hi) } else { (0.01, 10.0) };

    let root = SVGBackend::new(path, (1000, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0..max_step, (lo * 0.8..hi * 1.25).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("optimizer step")
        .y_desc("training loss (log scale)")
        .draw()?;
    for line in lines {
        let style = color(line.color).stroke_width(2);
        chart
            .draw_series(LineSeries::new(
                line.points.iter().filter(finite).copied(),
                style,
            ))?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Cells of the shaded map, across and down.
const MAP_CELLS: (usize, usize) = (64, 48);

/// The surface as a gray map (darker is higher), the start (×), the minimum (○), and each
/// optimizer's path ending in a dot; paths leaving the plot are cut at its edge.
pub fn surface_paths(path: &Path, surface: &Surface, lines: &[Line<(f64, f64)>]) -> AnyResult<()> {
    let (x0, x1) = surface.x_range;
    let (y0, y1) = surface.y_range;
    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(surface.title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("x")
        .y_desc("y")
        .draw()?;
    chart.draw_series(shaded_map(surface))?;

    for line in lines {
        let style = color(line.color).stroke_width(2);
        let points = inside_part(line.points, surface);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        if let Some(&end) = points.last() {
            chart.draw_series(std::iter::once(Circle::new(end, 4, style.filled())))?;
        }
    }
    chart.draw_series(std::iter::once(Cross::new(
        surface.start,
        7,
        BLACK.stroke_width(2),
    )))?;
    if let Some(minimum) = surface.minimum {
        chart.draw_series(std::iter::once(Circle::new(
            minimum,
            7,
            BLACK.stroke_width(2),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn shaded_map(surface: &Surface) -> Vec<Rectangle<(f64, f64)>> {
    let (x0, x1) = surface.x_range;
    let (y0, y1) = surface.y_range;
    let (nx, ny) = MAP_CELLS;
    let (dx, dy) = ((x1 - x0) / nx as f64, (y1 - y0) / ny as f64);
    let height = |x: f64, y: f64| {
        let f = (surface.f)(x, y);
        if surface.log_color {
            f.max(0.0).ln_1p()
        } else {
            f
        }
    };
    let cells: Vec<(f64, f64, f64)> = (0..nx)
        .flat_map(|i| (0..ny).map(move |j| (x0 + i as f64 * dx, y0 + j as f64 * dy)))
        .map(|(x, y)| (x, y, height(x + dx / 2.0, y + dy / 2.0)))
        .collect();
    let lo = cells.iter().map(|c| c.2).fold(f64::INFINITY, f64::min);
    let hi = cells.iter().map(|c| c.2).fold(f64::NEG_INFINITY, f64::max);
    cells
        .into_iter()
        .map(|(x, y, h)| {
            let t = if hi > lo { (h - lo) / (hi - lo) } else { 0.0 };
            let shade = (250.0 - 130.0 * t) as u8;
            Rectangle::new(
                [(x, y), (x + dx, y + dy)],
                RGBColor(shade, shade, shade.saturating_add(8)).filled(),
            )
        })
        .collect()
}

/// The path up to where it first leaves the plotted rectangle, ending on the edge there.
fn inside_part(points: &[(f64, f64)], surface: &Surface) -> Vec<(f64, f64)> {
    let (x0, x1) = surface.x_range;
    let (y0, y1) = surface.y_range;
    let inside = |(x, y): (f64, f64)| (x0..=x1).contains(&x) && (y0..=y1).contains(&y);
    let mut kept = Vec::with_capacity(points.len());
    for &p in points {
        match kept.last() {
            Some(&last) if !inside(p) => {
                kept.push(edge_crossing(last, p, surface));
                break;
            }
            None if !inside(p) => break,
            _ => kept.push(p),
        }
    }
    kept
}

/// Where the segment from `a` (inside) to `b` (outside) crosses the plot's border.
fn edge_crossing(a: (f64, f64), b: (f64, f64), surface: &Surface) -> (f64, f64) {
    let (x0, x1) = surface.x_range;
    let (y0, y1) = surface.y_range;
    // Largest t in [0, 1] with a + t (b − a) inside, one axis at a time.
    let limit = |from: f64, to: f64, lo: f64, hi: f64| {
        if to > hi {
            (hi - from) / (to - from)
        } else if to < lo {
            (lo - from) / (to - from)
        } else {
            1.0
        }
    };
    let t = limit(a.0, b.0, x0, x1)
        .min(limit(a.1, b.1, y0, y1))
        .clamp(0.0, 1.0);
    (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surfaces::surfaces;

    #[test]
    fn paths_are_cut_at_the_border() {
        let saddle = surfaces()[2]; // x and y in [-1.5, 1.5]
        let path = [(0.0, 0.0), (1.0, 1.0), (2.0, 1.0), (0.0, 0.0)];
        assert_eq!(
            inside_part(&path, &saddle),
            [(0.0, 0.0), (1.0, 1.0), (1.5, 1.0)]
        );
        assert!(inside_part(&[(9.0, 9.0)], &saddle).is_empty());
    }

    #[test]
    fn charts_are_written() {
        let dir = std::env::temp_dir().join(format!("race-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let curve = [(0, 2.3), (5, 1.0), (10, 0.4)];
        let lines = [Line {
            label: "sgd",
            color: 0,
            points: &curve[..],
        }];
        loss_curves(&dir.join("loss.svg"), "test", &lines).unwrap();
        let surface = surfaces()[0];
        let path = [surface.start, (0.0, 0.0), (0.5, 0.25)];
        let lines = [Line {
            label: "sgd",
            color: 0,
            points: &path[..],
        }];
        surface_paths(&dir.join("surface.svg"), &surface, &lines).unwrap();
        for file in ["loss.svg", "surface.svg"] {
            let svg = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(svg.starts_with("<svg") && svg.contains("sgd"), "{file}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
