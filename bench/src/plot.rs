//! `evstore-bench plot`: the bench's output as pictures.
//!
//! - `.hgrm` files (report.rs writes them) become one chart of latency by percentile, one line
//!   per system: the x axis is HdrHistogram's, log scale in 1/(1-percentile), labelled 0%, 90%,
//!   99%, 99.9% ...; so the tail that matters gets as much room as the median. The 100% line of a
//!   file (the maximum) has no finite x; the maximum is given in the line's label instead.
//! - `--json` output (one object per line) becomes a bar chart of throughput per system; objects
//!   without `system` and the chosen figure (those of `read`, `reopen`, `projection-costs`) are
//!   skipped.
//!
//! SVG only: plotters draws SVG text as `<text>` elements with no font files, while PNG needs a
//! font rasteriser and an image encoder, which would add more to the build than the rest of the
//! bench (see docs/results.md). A browser, or `rsvg-convert`, turns an SVG into a PNG.

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor;
use serde_json::Value;

use crate::OUT_DIR_DEFAULT;

/// Pixels: wide enough for five percentile decades and their labels, small in a repository.
const CHART_SIZE: (u32, u32) = (900, 500);

#[derive(clap::Args)]
pub struct PlotArgs {
    /// Input files: `.hgrm` latency distributions (from `seed` or `lowload`, in its `--out`
    /// directory) and files of `--json` output (any other name, one JSON object per line).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Directory for the charts: `<name>-latency.svg` and `<name>-throughput.svg`.
    #[arg(long, default_value = OUT_DIR_DEFAULT)]
    out: PathBuf,
    /// Prefix of the chart files' names, e.g. `seed-2-producers`.
    #[arg(long, default_value = "bench")]
    name: String,
    /// A line under each chart's title, e.g. the command that produced the data.
    #[arg(long)]
    caption: Option<String>,
    /// The figure drawn as bars from the JSON objects.
    #[arg(long, value_enum, default_value = "events")]
    metric: Metric,
    /// Linear latency axis (default: log scale, since the systems differ by orders of magnitude).
    #[arg(long)]
    linear_latency: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Metric {
    /// `events_per_sec`: events made durable per second (raw's "events" are writes: left out).
    Events,
    /// `mb_per_sec`: payload MB/s (raw: bytes written, left out).
    PayloadMb,
    /// `disk_mb_per_sec`: bytes written to disk per second, MB/s; raw included.
    DiskMb,
}

impl Metric {
    fn key(self) -> &'static str {
        match self {
            Metric::Events => "events_per_sec",
            Metric::PayloadMb => "mb_per_sec",
            Metric::DiskMb => "disk_mb_per_sec",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Metric::Events => "events made durable per second (higher is better)",
            Metric::PayloadMb => "payload MB/s (higher is better)",
            Metric::DiskMb => "disk MB/s (bytes written per second)",
        }
    }

    /// raw's events and payload are writes and written bytes: not comparable with the others.
    fn includes_raw(self) -> bool {
        matches!(self, Metric::DiskMb)
    }
}

/// One `.hgrm` file: (1/(1-percentile), latency µs) points, and the maximum.
#[derive(Debug, PartialEq)]
pub struct Distribution {
    pub system: String,
    pub points: Vec<(f64, f64)>,
    pub max_us: f64,
}

/// Reads the classic `.hgrm` layout: a header line, then `Value Percentile TotalCount
/// 1/(1-Percentile)` rows, then `#[...]` footer lines; the system is named in the footer
/// (`system = evstore`) or, failing that, by the file name.
pub fn parse_hgrm(text: &str, fallback_name: &str) -> Result<Distribution, String> {
    let mut points = Vec::new();
    let mut max_us: f64 = 0.0;
    let mut system = None;
    for line in text.lines().map(str::trim) {
        if let Some(footer) = line.strip_prefix("#[") {
            system = system.or_else(|| {
                footer.split(',').find_map(|field| field.trim().strip_prefix("system = ").map(str::to_string))
            });
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(value), Some(percentile)) = (fields.first(), fields.get(1)) else { continue };
        let (Ok(value), Ok(percentile)) = (value.parse::<f64>(), percentile.parse::<f64>()) else { continue };
        max_us = max_us.max(value);
        if percentile < 1.0 {
            points.push((1.0 / (1.0 - percentile), value));
        }
    }
    if points.is_empty() {
        return Err("no percentile rows (is it an .hgrm file?)".into());
    }
    Ok(Distribution { system: system.unwrap_or_else(|| fallback_name.to_string()), points, max_us })
}

/// 1 -> "0%", 10 -> "90%", 1000 -> "99.9%": a point on the 1/(1-percentile) axis, as a percentile
/// with as many decimals as its decade needs.
fn percentile_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 1.0 / x.max(1.0));
    let decimals = (x.max(1.0).log10().ceil() as i32 - 2).max(0) as usize;
    format!("{percent:.decimals$}%")
}

/// A fixed colour per known system, so charts from different runs read alike.
fn color(system: &str, index: usize) -> RGBColor {
    match system {
        "evstore" => RGBColor(31, 119, 180),
        "naive" => RGBColor(255, 127, 14),
        "sqlite" => RGBColor(44, 160, 44),
        "raw" => RGBColor(127, 127, 127),
        _ => {
            let (r, g, b) = Palette99::pick(index + 4).rgb();
            RGBColor(r, g, b)
        }
    }
}

type DrawResult<T> = Result<T, String>;

fn draw_error<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> String + '_ {
    move |e| format!("drawing {}: {e}", path.display())
}

pub fn draw_latency(distributions: &[Distribution], path: &Path, caption: &str, log_latency: bool) -> DrawResult<()> {
    let x_max = distributions.iter().flat_map(|d| d.points.iter().map(|p| p.0)).fold(10.0, f64::max);
    // Whole decades, so the axis ends on a labelled percentile.
    let x_max = 10f64.powf(x_max.log10().ceil());
    let y_max = distributions.iter().flat_map(|d| d.points.iter().map(|p| p.1)).fold(1.0, f64::max);
    let y_min = distributions.iter().flat_map(|d| d.points.iter().map(|p| p.1)).fold(f64::MAX, f64::min).max(1.0);
    let root = SVGBackend::new(path, CHART_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error(path))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(format!("append-to-durable latency by percentile (lower is better){caption}"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    let series = |d: &Distribution| d.points.clone();
    let label = |d: &Distribution| format!("{} (max {:.0} µs)", d.system, d.max_us);
    if log_latency {
        let mut chart = builder
            .build_cartesian_2d((1f64..x_max).log_scale(), (y_min / 1.5..y_max * 1.5).log_scale())
            .map_err(draw_error(path))?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency, µs (log scale)")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(draw_error(path))?;
        for (i, d) in distributions.iter().enumerate() {
            let c = color(&d.system, i);
            chart
                .draw_series(LineSeries::new(series(d), c.stroke_width(2)))
                .map_err(draw_error(path))?
                .label(label(d))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(draw_error(path))?;
    } else {
        let mut chart =
            builder.build_cartesian_2d((1f64..x_max).log_scale(), 0f64..y_max * 1.05).map_err(draw_error(path))?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency, µs")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(draw_error(path))?;
        for (i, d) in distributions.iter().enumerate() {
            let c = color(&d.system, i);
            chart
                .draw_series(LineSeries::new(series(d), c.stroke_width(2)))
                .map_err(draw_error(path))?
                .label(label(d))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(draw_error(path))?;
    }
    root.present().map_err(draw_error(path))
}

pub fn draw_throughput(bars: &[(String, f64)], path: &Path, title: &str, caption: &str) -> DrawResult<()> {
    let y_max = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, CHART_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error(path))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title}{caption}"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d((0..bars.len() as i32 - 1).into_segmented(), 0f64..y_max)
        .map_err(draw_error(path))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => bars.get(*i as usize).map(|b| b.0.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|y| human(*y))
        .draw()
        .map_err(draw_error(path))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (system, value))| {
            let system_name = system.split(' ').next().unwrap_or(system);
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i as i32), 0.0), (SegmentValue::Exact(i as i32 + 1), *value)],
                color(system_name, i).filled(),
            );
            bar.set_margin(0, 0, 25, 25);
            bar
        }))
        .map_err(draw_error(path))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, value))| {
            Text::new(
                human(*value),
                (SegmentValue::CenterOf(i as i32), *value + y_max * 0.02),
                ("sans-serif", 15)
                    .into_font()
                    .color(&BLACK)
                    .pos(text_anchor::Pos::new(text_anchor::HPos::Center, text_anchor::VPos::Bottom)),
            )
        }))
        .map_err(draw_error(path))?;
    root.present().map_err(draw_error(path))
}

/// 2.51M, 310.2k, 45.
fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// The bars: `metric` of every JSON object that names a system, in file order; a system that
/// appears more than once (several runs) is numbered.
pub fn bars_from_json(texts: &[String], metric_key: &str, include_raw: bool) -> Vec<(String, f64)> {
    let mut bars: Vec<(String, f64)> = Vec::new();
    for text in texts {
        for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            let Ok(object) = serde_json::from_str::<Value>(line) else { continue };
            let (Some(system), Some(value)) = (object["system"].as_str(), object[metric_key].as_f64()) else {
                continue;
            };
            if system == "raw" && !include_raw {
                continue;
            }
            bars.push((system.to_string(), value));
        }
    }
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for bar in &mut bars {
        if names.iter().filter(|n| **n == bar.0).count() > 1 {
            let run = match seen.iter_mut().find(|s| s.0 == bar.0) {
                Some(entry) => {
                    entry.1 += 1;
                    entry.1
                }
                None => {
                    seen.push((bar.0.clone(), 1));
                    1
                }
            };
            bar.0 = format!("{} #{run}", bar.0);
        }
    }
    bars
}

pub fn run(args: &PlotArgs) -> Result<(), String> {
    let read = |path: &PathBuf| std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()));
    let mut distributions = Vec::new();
    let mut json_texts = Vec::new();
    for path in &args.files {
        if path.extension().is_some_and(|ext| ext == "hgrm") {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            distributions.push(parse_hgrm(&read(path)?, &stem).map_err(|e| format!("{}: {e}", path.display()))?);
        } else {
            json_texts.push(read(path)?);
        }
    }
    std::fs::create_dir_all(&args.out).map_err(|e| format!("creating {}: {e}", args.out.display()))?;
    let caption = args.caption.as_deref().map(|c| format!("\n{c}")).unwrap_or_default();
    // plotters' SVG captions are one line: the caption goes after a separator instead.
    let caption = caption.replace('\n', " — ");
    if !distributions.is_empty() {
        let path = args.out.join(format!("{}-latency.svg", args.name));
        draw_latency(&distributions, &path, &caption, !args.linear_latency)?;
        println!("{}", path.display());
    }
    if !json_texts.is_empty() {
        let bars = bars_from_json(&json_texts, args.metric.key(), args.metric.includes_raw());
        if bars.is_empty() {
            return Err(format!("no JSON object with `system` and `{}` in the input", args.metric.key()));
        }
        let path = args.out.join(format!("{}-throughput.svg", args.name));
        draw_throughput(&bars, &path, args.metric.label(), &caption)?;
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{histogram, Outcome};

    fn outcome(system: &str, latencies: impl Iterator<Item = u64>) -> Outcome {
        let mut latency_us = histogram();
        for v in latencies {
            latency_us.saturating_record(v);
        }
        Outcome {
            system: system.into(),
            sync: "dsync".into(),
            backend: "test".into(),
            producers: 1,
            in_flight: 1,
            events: latency_us.len(),
            seconds: 1.0,
            payload_bytes: 1_000,
            disk_bytes: 4_096,
            record_bytes: 2_000,
            syncs: 10,
            groups: 10,
            latency_us,
            cpu_seconds: None,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("evstore-bench-plot-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn percentiles_are_labelled_as_the_hdrhistogram_plot_does() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(100_000.0), "99.999%");
    }

    #[test]
    fn the_bench_hgrm_files_read_back_and_draw() {
        let dir = temp_dir("hgrm");
        let files: Vec<PathBuf> = [outcome("evstore", 1..=10_000), outcome("sqlite", (1..=10_000).map(|v| v * 10))]
            .iter()
            .map(|o| o.write_hgrm(&dir, "").unwrap())
            .collect();
        let evstore = parse_hgrm(&std::fs::read_to_string(&files[0]).unwrap(), "x").unwrap();
        assert_eq!(evstore.system, "evstore");
        assert!(evstore.max_us >= 9_990.0, "max {}", evstore.max_us);
        assert!(evstore.points.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1), "monotone");
        let args = PlotArgs {
            files: files.clone(),
            out: dir.clone(),
            name: "test".into(),
            caption: Some("cargo test".into()),
            metric: Metric::Events,
            linear_latency: false,
        };
        run(&args).unwrap();
        let svg = std::fs::read_to_string(dir.join("test-latency.svg")).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("evstore (max") && svg.contains("sqlite (max") && svg.contains("99.9%"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_lines_become_bars_and_raw_only_where_comparable() {
        let dir = temp_dir("json");
        let context = serde_json::Map::new();
        let lines = ["evstore", "naive", "raw"]
            .iter()
            .map(|s| outcome(s, 1..=100).json(&context))
            .chain(["# a note".to_string(), r#"{"strategy":"not a system"}"#.to_string()])
            .collect::<Vec<_>>()
            .join("\n");
        let texts = vec![lines.clone(), lines];
        let events = bars_from_json(&texts, Metric::Events.key(), Metric::Events.includes_raw());
        let names: Vec<&str> = events.iter().map(|b| b.0.as_str()).collect();
        assert_eq!(names, ["evstore #1", "naive #1", "evstore #2", "naive #2"]);
        assert_eq!(bars_from_json(&texts[..1], Metric::DiskMb.key(), true).len(), 3);
        let path = dir.join("bars.svg");
        draw_throughput(&events, &path, "events/s", "").unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("naive #2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
