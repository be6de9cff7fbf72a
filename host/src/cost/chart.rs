//! The chart of daily cost per project: an SVG of stacked bars, a bar per day and a
//! colour per project, in one currency (currencies are never added, so never stacked).
//! Drawn by hand: a few rectangles and labels need no charting library, and the output
//! is static (no script), so the API can serve it under a strict content policy.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::money::{Currency, Money};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 180.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 40.0;

/// Colours that stay apart for most forms of colour blindness (Okabe and Ito's), then
/// repeated in a lighter shade.
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
];

/// `text` safe inside an SVG element or attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A round step for the value axis: 1, 2 or 5 times a power of ten, about a fifth of
/// `max`.
fn step(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * power)
}

/// The chart: `days` in order (`YYYY-MM-DD`), each project's cost on each day (the same
/// length as `days`), titled with `title`.
pub fn daily_by_project(
    title: &str,
    currency: &Currency,
    days: &[String],
    series: &BTreeMap<String, Vec<Decimal>>,
) -> String {
    let totals: Vec<Decimal> = (0..days.len())
        .map(|i| series.values().map(|v| v[i]).sum())
        .collect();
    let max = totals
        .iter()
        .copied()
        .max()
        .unwrap_or_default()
        .to_f64()
        .unwrap_or(0.0);
    let step = step(max);
    let top_value = ((max / step).ceil().max(1.0)) * step;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let y = |v: f64| TOP + plot_h - v / top_value * plot_h;
    let slot = plot_w / days.len().max(1) as f64;
    let bar = (slot * 0.8).max(1.0);
    let shown = |amount: Decimal| {
        Money {
            amount,
            currency: currency.clone(),
        }
        .display()
    };

    let mut svg = String::new();
    let whole: Decimal = totals.iter().copied().sum();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="title desc" font-family="sans-serif" font-size="12">
<title id="title">{title}</title>
<desc id="desc">Stacked bars of each day's cost per project; {days} days, {projects} projects, {whole} in all.</desc>
<style>text {{ fill: #222 }} @media (prefers-color-scheme: dark) {{ text {{ fill: #ddd }} .grid {{ stroke: #555 }} }}</style>
<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{title}</text>
"##,
        title = escape(title),
        days = days.len(),
        projects = series.len(),
        whole = escape(&shown(whole)),
    );
    // The value axis: gridlines at round steps.
    let mut v = 0.0;
    while v <= top_value + step / 2.0 {
        let _ = writeln!(
            svg,
            r##"<line class="grid" x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="#ccc"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>"##,
            x2 = LEFT + plot_w,
            y = y(v),
            tx = LEFT - 6.0,
            ty = y(v) + 4.0,
            label = escape(&shown(
                Decimal::from_f64_retain(v).unwrap_or_default().round_dp(2)
            )),
        );
        v += step;
    }
    // The bars, bottom up in project order, each with its figure as a tooltip.
    for (i, day) in days.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut base = 0.0;
        for (n, (project, values)) in series.iter().enumerate() {
            let value = values[i].to_f64().unwrap_or(0.0);
            if value <= 0.0 {
                continue;
            }
            let (y0, y1) = (y(base), y(base + value));
            let _ = writeln!(
                svg,
                r##"<rect x="{x:.1}" y="{y1:.1}" width="{bar:.1}" height="{h:.1}" fill="{fill}"><title>{project} on {day}: {amount}</title></rect>"##,
                h = (y0 - y1).max(0.5),
                fill = PALETTE[n % PALETTE.len()],
                project = escape(project),
                day = escape(day),
                amount = escape(&shown(values[i])),
            );
            base += value;
        }
        // Day-of-month labels, every few days so they never overlap.
        let every = (days.len() / 15).max(1);
        if i % every == 0 {
            let _ = writeln!(
                svg,
                r##"<text x="{tx:.1}" y="{ty}" text-anchor="middle">{label}</text>"##,
                tx = x + bar / 2.0,
                ty = TOP + plot_h + 16.0,
                label = escape(day.get(8..).unwrap_or(day)),
            );
        }
    }
    // The legend, in stacking order.
    for (n, project) in series.keys().enumerate() {
        let ly = TOP + 18.0 * n as f64;
        let lx = WIDTH - RIGHT + 16.0;
        let _ = writeln!(
            svg,
            r##"<rect x="{lx}" y="{ly}" width="12" height="12" fill="{fill}"/><text x="{tx}" y="{ty}">{project}</text>"##,
            fill = PALETTE[n % PALETTE.len()],
            tx = lx + 18.0,
            ty = ly + 11.0,
            project = escape(project),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_stacks_each_days_projects_and_escapes_what_it_prints() {
        let days: Vec<String> = (1..=3).map(|d| format!("2026-11-0{d}")).collect();
        let series = BTreeMap::from([
            (
                "web".to_string(),
                vec![Decimal::from(10), Decimal::ZERO, Decimal::from(5)],
            ),
            (
                "<b>&x".to_string(),
                vec![Decimal::from(2), Decimal::from(3), Decimal::ZERO],
            ),
        ]);
        let usd = Currency::parse("USD").unwrap();
        let svg = daily_by_project("Daily cost, 2026-11 (USD)", &usd, &days, &series);
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        // A bar per project and day with a cost; none for a day without.
        assert_eq!(svg.matches("<rect x=").count(), 4 + 2, "{svg}");
        assert!(svg.contains("web on 2026-11-01: 10.00 USD"));
        assert!(svg.contains("&lt;b&gt;&amp;x on 2026-11-02: 3.00 USD"));
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("20.00 USD in all"));
        // A well-formed document: every element opened is closed.
        assert_eq!(svg.matches("<svg").count(), svg.matches("</svg>").count());
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        // An empty month still draws its axes.
        let empty = daily_by_project("none", &usd, &days, &BTreeMap::new());
        assert!(empty.contains("0.00 USD"));
    }

    #[test]
    fn value_axis_steps_are_round() {
        assert_eq!(step(97.0), 20.0);
        assert_eq!(step(1234.0), 500.0);
        assert!((step(0.3) - 0.1).abs() < 1e-12);
        assert_eq!(step(0.0), 1.0);
    }
}
