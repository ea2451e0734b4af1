//! The scenarios' plots: SVG files drawn with `plotters`, one chart per call. Text is left to
//! the viewer's fonts (no font files are read), so the plots draw the same on any machine.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

/// One line of a chart: its name in the legend and its points (x, y).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }
}

const SIZE: (u32, u32) = (800, 480);

/// Colours that stay apart for the handful of lines a chart has (Okabe and Ito's palette).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The range an axis shows for these values: from 0 (rates and latencies start there) to a
/// little above the largest, and never empty.
fn axis(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let top = values.filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    0.0..if top > 0.0 { top * 1.08 } else { 1.0 }
}

/// A line chart: every series as a line with its points marked, a legend with their names.
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        series.iter().any(|s| !s.points.is_empty()),
        "nothing to plot in {}",
        path.display()
    );
    create_parent(path)?;
    let all = || series.iter().flat_map(|s| s.points.iter());
    let x = axis(all().map(|p| p.0));
    let y = axis(all().map(|p| p.1));
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .y_label_formatter(&|v| short(*v))
        .x_label_formatter(&|v| short(*v))
        .draw()
        .map_err(drawing)?;
    for (i, s) in series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
            .map_err(drawing)?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(drawing)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(drawing)?;
    root.present().map_err(drawing)?;
    Ok(())
}

/// A bar chart: one bar per (name, value), the value written above it.
pub fn bars(path: &Path, title: &str, y_label: &str, bars: &[(String, f64)]) -> anyhow::Result<()> {
    anyhow::ensure!(!bars.is_empty(), "nothing to plot in {}", path.display());
    create_parent(path)?;
    let n = u32::try_from(bars.len()).context("too many bars")?;
    let y = axis(bars.iter().map(|b| b.1 * 1.1));
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d((0..n).into_segmented(), y)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_label)
        .y_label_formatter(&|v| short(*v))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => bars
                .get(*i as usize)
                .map(|b| b.0.clone())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(drawing)?;
    for (i, (_, value)) in (0..n).zip(bars) {
        let c = colour(i as usize);
        chart
            .draw_series([Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *value),
                ],
                c.mix(0.8).filled(),
            )])
            .map_err(drawing)?;
        chart
            .draw_series([Text::new(
                short(*value),
                (SegmentValue::CenterOf(i), *value),
                ("sans-serif", 14).into_font().color(&BLACK),
            )])
            .map_err(drawing)?;
    }
    root.present().map_err(drawing)?;
    Ok(())
}

/// A number as an axis or a bar shows it: 12.5k, 1.2M, 0.35, 42.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn create_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    Ok(())
}

fn drawing<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("could not draw the plot: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_short() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(0.354), "0.35");
        assert_eq!(short(42.0), "42");
        assert_eq!(short(1_234.0), "1.2k");
        assert_eq!(short(41_686.0), "42k");
        assert_eq!(short(1_200_000.0), "1.2M");
    }

    #[test]
    fn an_axis_starts_at_zero_and_is_never_empty() {
        assert_eq!(axis([].into_iter()), 0.0..1.0);
        assert_eq!(axis([f64::NAN, 0.0].into_iter()), 0.0..1.0);
        let r = axis([10.0, 100.0].into_iter());
        assert!(r.start == 0.0 && r.end > 100.0 && r.end < 110.0);
    }

    #[test]
    fn a_chart_is_an_svg_with_every_series_named() {
        let dir = std::env::temp_dir().join(format!("gallery-plot-{}", uuid::Uuid::new_v4()));
        let path = dir.join("like.svg");
        lines(
            &path,
            "likes/s against connections",
            "connections",
            "likes/s",
            &[
                Series::new("Gallery", vec![(64.0, 20_000.0), (256.0, 41_000.0)]),
                Series::new("(a) no-op", vec![(64.0, 90_000.0), (256.0, 120_000.0)]),
            ],
        )
        .unwrap();
        let bars_path = dir.join("bars.svg");
        bars(
            &bars_path,
            "events/s",
            "events/s",
            &[("projector".into(), 30_000.0), ("COPY".into(), 90_000.0)],
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let bar_svg = std::fs::read_to_string(&bars_path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in [
            "Gallery",
            "(a) no-op",
            "likes/s against connections",
            "connections",
        ] {
            assert!(svg.contains(text), "the chart names {text}");
        }
        assert!(svg.contains("<polyline"), "the series are lines");
        for text in ["projector", "COPY", "90k"] {
            assert!(bar_svg.contains(text), "the bars name {text}");
        }
        assert!(lines(&dir.join("empty.svg"), "t", "x", "y", &[]).is_err());
    }
}
