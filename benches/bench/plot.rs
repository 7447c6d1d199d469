//! docs/bench/latency.svg: release latency per scenario and contender, bars
//! at the median with a min–max whisker and the median written above, on
//! a log scale (1 ms to 100 s).

use crate::latency::Contender;
use crate::report::Report;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const Y_MIN: f64 = 0.001;
const Y_MAX: f64 = 100.0;

fn colour(c: Contender) -> RGBColor {
    match c {
        Contender::Seed => RGBColor(140, 140, 140),
        Contender::Ping => RGBColor(31, 119, 180),
        Contender::Barrier => RGBColor(255, 127, 14),
        Contender::Sidecar => RGBColor(44, 160, 44),
    }
}

pub fn latency_svg(report: &Report, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let scenarios = report.scenarios();
    let contenders = report.contenders();
    if scenarios.is_empty() {
        return Ok(());
    }
    let width = (140 * scenarios.len() as u32).max(600) + 120;
    let root = SVGBackend::new(path, (width, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = scenarios.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "peergate: release latency after the last pod starts (median, min–max)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(55)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n, (Y_MIN..Y_MAX).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("seconds (log scale)")
        .y_label_formatter(&|v| {
            if *v >= 1.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .draw()?;
    let slot = 0.8 / contenders.len() as f64;
    for (ci, &c) in contenders.iter().enumerate() {
        let col = colour(c);
        let stats: Vec<(f64, crate::report::Stat)> = scenarios
            .iter()
            .enumerate()
            .filter_map(|(si, &sc)| {
                let x = si as f64 + 0.1 + ci as f64 * slot;
                report.latency_stat(sc, c).map(|s| (x, s))
            })
            .collect();
        chart
            .draw_series(stats.iter().map(|(x, s)| {
                Rectangle::new(
                    [(*x, Y_MIN), (*x + slot * 0.9, s.median.max(Y_MIN))],
                    col.filled(),
                )
            }))?
            .label(c.label())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], col.filled()));
        let above = TextStyle::from(("sans-serif", 10).into_font())
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(stats.iter().map(|(x, s)| {
            let label = if s.median < 1.0 {
                format!("{:.0}ms", s.median * 1000.0)
            } else {
                format!("{:.1}s", s.median)
            };
            let top = s.max.max(s.median).max(Y_MIN) * 1.15;
            Text::new(label, (*x + slot * 0.45, top), above.clone())
        }))?;
        chart.draw_series(stats.iter().map(|(x, s)| {
            let xc = *x + slot * 0.45;
            PathElement::new(
                vec![(xc, s.min.max(Y_MIN)), (xc, s.max.max(Y_MIN))],
                BLACK.stroke_width(1),
            )
        }))?;
    }
    // Targets: 50 ms (barrier) and 0.5 s (64 pods).
    for (y, label) in [(0.05, "50 ms"), (0.5, "0.5 s")] {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, y), (n, y)],
            RED.mix(0.5).stroke_width(1),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("target {label}"),
            (n - 0.01 * n, y),
            ("sans-serif", 12)
                .into_font()
                .color(&RED)
                .pos(Pos::new(HPos::Right, VPos::Bottom)),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    // Scenario names under each group of bars.
    for (si, sc) in scenarios.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(si as f64 + 0.5, Y_MIN));
        let style =
            TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(
            format!("{} pods", sc.pods),
            (px, py + 8),
            style.clone(),
        ))?;
        root.draw(&Text::new(sc.dns.short(), (px, py + 26), style))?;
    }
    root.present()?;
    Ok(())
}
