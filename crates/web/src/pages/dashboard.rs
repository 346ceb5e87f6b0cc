//! The business dashboard: order sync delay, orders completed, shipment posting failures,
//! invoice exceptions, held postings and their age, stock mismatches and open exceptions
//! by category — SVG charts rendered here from the samples of the node's live metrics
//! ([`crate::samples`]), the same series `/metrics` exports and the alerts use.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::html::{Section, esc};
use crate::samples::Sample;
use crate::{Me, Web};

const W: f64 = 360.0;
const H: f64 = 140.0;
const PAD: f64 = 28.0;
const COLOURS: [&str; 6] = ["#1f5fa8", "#c2410c", "#15803d", "#7e22ce", "#a16207", "#be123c"];

/// A series over the samples: label and (seconds since the epoch, value) points.
type Series = (String, Vec<(i64, f64)>);

fn fmt_value(v: f64) -> String {
    // A sum of nothing is -0.0; people read 0.
    let v = v + 0.0;
    if v == 0.0 || v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        // Small figures (a sync delay of 4 ms) keep two significant digits.
        let decimals = (1 - v.abs().log10().floor() as i32).clamp(2, 6) as usize;
        format!("{v:.decimals$}")
    }
}

/// A line chart of `series`; `data-total` is the sum of the latest values.
pub fn line_chart(id: &str, title: &str, unit: &str, series: &[Series]) -> String {
    let latest: Vec<f64> = series.iter().map(|(_, p)| p.last().map_or(0.0, |x| x.1)).collect();
    let total: f64 = latest.iter().sum();
    let (t0, t1) = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.0))
        .fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t), b.max(t)));
    // All zero: an axis from 0 to 1, so the flat line sits on the bottom.
    let max = series.iter().flat_map(|(_, p)| p.iter().map(|x| x.1)).fold(0.0f64, f64::max);
    let max = if max > 0.0 { max } else { 1.0 };
    let span = (t1 - t0).max(1) as f64;
    let x = |t: i64| PAD + (t - t0) as f64 / span * (W - PAD - 8.0);
    let y = |v: f64| H - PAD + 8.0 - v / max * (H - PAD - 8.0);
    let summary: Vec<String> =
        series.iter().zip(&latest).map(|((l, _), v)| format!("{l} {}{unit}", fmt_value(*v))).collect();
    let mut s = format!(
        r#"<figure class="chart-card" id="{id}"><figcaption>{title}</figcaption><svg class="chart" data-total="{total}" viewBox="0 0 {W} {H}" role="img" aria-label="{aria}"><line class="axis" x1="{PAD}" y1="{yb}" x2="{xr}" y2="{yb}"/><line class="axis" x1="{PAD}" y1="8" x2="{PAD}" y2="{yb}"/><text class="tick" x="2" y="14">{maxl}</text><text class="tick" x="2" y="{yb}">0</text>"#,
        title = esc(title),
        total = fmt_value(total),
        aria = esc(&format!("{title}: {}", summary.join(", "))),
        yb = H - PAD + 8.0,
        xr = W - 8.0,
        maxl = fmt_value(max),
    );
    for (i, (_, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        if points.len() == 1 {
            let (t, v) = points[0];
            let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#, x(t).max(PAD + 4.0), y(v));
        } else {
            let pts: Vec<String> = points.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
            let _ =
                write!(s, r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#, pts.join(" "));
        }
    }
    s.push_str(r#"</svg><ul class="legend">"#);
    for (i, ((label, _), v)) in series.iter().zip(&latest).enumerate() {
        let _ = write!(
            s,
            r#"<li><span class="swatch c{}" aria-hidden="true"></span>{} <strong>{}{}</strong></li>"#,
            i % COLOURS.len(),
            esc(label),
            fmt_value(*v),
            esc(unit)
        );
    }
    s.push_str("</ul></figure>");
    s
}

/// A horizontal bar chart of `bars` (label, value).
pub fn bar_chart(id: &str, title: &str, bars: &[(String, f64)]) -> String {
    let total: f64 = bars.iter().map(|b| b.1).sum();
    let max = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(1e-9);
    let row = 18.0;
    let h = (bars.len().max(1) as f64) * row + 8.0;
    let aria: Vec<String> = bars.iter().map(|(l, v)| format!("{l} {}", fmt_value(*v))).collect();
    let mut s = format!(
        r#"<figure class="chart-card" id="{id}"><figcaption>{}</figcaption><svg class="chart" data-total="{}" viewBox="0 0 {W} {h}" role="img" aria-label="{}">"#,
        esc(title),
        fmt_value(total),
        esc(&format!("{title}: {}", if aria.is_empty() { "none".into() } else { aria.join(", ") }))
    );
    for (i, (label, v)) in bars.iter().enumerate() {
        let yy = 4.0 + i as f64 * row;
        let width = v / max * (W - 170.0);
        let _ = write!(
            s,
            r#"<text class="tick" x="0" y="{:.1}">{}</text><rect x="130" y="{yy:.1}" width="{width:.1}" height="{}" fill="{}"/><text class="tick" x="{:.1}" y="{:.1}">{}</text>"#,
            yy + 12.0,
            esc(label),
            row - 5.0,
            COLOURS[0],
            134.0 + width,
            yy + 12.0,
            fmt_value(*v)
        );
    }
    s.push_str("</svg></figure>");
    s
}

fn series(samples: &[Sample], label: &str, f: impl Fn(&Sample) -> f64) -> Series {
    (label.to_string(), samples.iter().map(|s| (s.at, f(s))).collect())
}

/// Average order sync delay per sampling interval: Δsum / Δcount of the histogram (the
/// overall average for the first sample).
fn sync_delay(samples: &[Sample]) -> Series {
    let sum = |s: &Sample| s.sum("waybill_order_sync_delay_seconds_sum", &[]);
    let count = |s: &Sample| s.sum("waybill_order_sync_delay_seconds_count", &[]);
    let mut out = Vec::new();
    let mut prev: Option<&Sample> = None;
    for s in samples {
        let (ds, dc) = match prev {
            Some(p) if count(s) > count(p) => (sum(s) - sum(p), count(s) - count(p)),
            Some(_) => (0.0, 0.0),
            None => (sum(s), count(s)),
        };
        out.push((s.at, if dc > 0.0 { ds / dc } else { 0.0 }));
        prev = Some(s);
    }
    ("last interval".into(), out)
}

/// Average order sync delay since the node started: sum / count of the histogram.
fn sync_delay_overall(samples: &[Sample]) -> Series {
    series(samples, "since start", |s| {
        let count = s.sum("waybill_order_sync_delay_seconds_count", &[]);
        if count > 0.0 { s.sum("waybill_order_sync_delay_seconds_sum", &[]) / count } else { 0.0 }
    })
}

/// `GET /dashboard`.
pub(crate) async fn show(State(web): State<Arc<Web>>, me: Me) -> Response {
    let w = web.clone();
    let samples = tokio::task::spawn_blocking(move || {
        w.samples.refresh(Duration::from_secs(1));
        w.samples.all()
    })
    .await
    .unwrap_or_default();
    let mut b = String::from("<h1>Dashboard</h1>");
    if !web.cfg.grafana_url.is_empty() {
        let _ = write!(
            b,
            r#"<p class="meta">Engineers: the technical view is the <a href="{}">Grafana dashboard</a>.</p>"#,
            esc(&web.cfg.grafana_url)
        );
    }
    if samples.is_empty() {
        b.push_str(r#"<p id="empty">No metrics sampled yet; this node serves no metrics to the workbench.</p>"#);
        return me.page("Dashboard", Section::Dashboard, &b).into_response();
    }
    let _ = write!(
        b,
        r#"<p class="meta">The last {} samples of this node's live metrics, one every {} s.</p><div class="charts">"#,
        samples.len(),
        web.cfg.sample_every_secs
    );
    b.push_str(&line_chart(
        "chart-sync-delay",
        "Order sync delay (average)",
        " s",
        &[sync_delay_overall(&samples), sync_delay(&samples)],
    ));
    b.push_str(&line_chart(
        "chart-completed",
        "Sagas completed (since start)",
        "",
        &[
            series(&samples, "orders", |s| s.sum("waybill_sagas_completed_total", &[("kind", "o2f")])),
            series(&samples, "invoicing", |s| s.sum("waybill_sagas_completed_total", &[("kind", "s2i")])),
            series(&samples, "returns", |s| s.sum("waybill_sagas_completed_total", &[("kind", "ret")])),
        ],
    ));
    b.push_str(&line_chart(
        "chart-held",
        "Held postings",
        "",
        &[
            series(&samples, "invoices", |s| s.sum("waybill_postings_held", &[("document", "invoice")])),
            series(&samples, "credit notes", |s| s.sum("waybill_postings_held", &[("document", "credit_note")])),
        ],
    ));
    b.push_str(&line_chart(
        "chart-held-age",
        "Oldest held posting",
        " min",
        &[series(&samples, "waiting", |s| s.sum("waybill_postings_held_oldest_age_seconds", &[]) / 60.0)],
    ));
    b.push_str(&line_chart(
        "chart-posting-failures",
        "Shipment posting failures (since start)",
        "",
        &[series(&samples, "invoicing sagas failed", |s| s.sum("waybill_sagas_failed_total", &[("kind", "s2i")]))],
    ));
    let open = |s: &Sample, c: &str| s.sum("waybill_exceptions_open", &[("category", c)]);
    b.push_str(&line_chart(
        "chart-invoice-exceptions",
        "Invoice exceptions (open)",
        "",
        &[
            series(&samples, "rejected by finance", |s| open(s, "posting-rejected")),
            series(&samples, "approval overdue", |s| open(s, "approval-overdue")),
            series(&samples, "not delivered", |s| open(s, "delivery-failed")),
        ],
    ));
    b.push_str(&line_chart(
        "chart-stock-mismatches",
        "Stock mismatches (since start)",
        "",
        &[series(&samples, "picks, shipments, returns", |s| s.sum("waybill_stock_mismatches_total", &[]))],
    ));
    let last = samples.last().cloned().unwrap_or_default();
    let bars: Vec<(String, f64)> = last
        .label_values("waybill_exceptions_open", "category")
        .into_iter()
        .map(|c| {
            let v = open(&last, &c);
            (c, v)
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    b.push_str(&bar_chart("chart-exceptions", "Open exceptions by category", &bars));
    b.push_str("</div>");
    b.push_str(
        r#"<p class="meta">Settlement gaps are not charted: this release does not reconcile bank settlements yet.</p>"#,
    );
    me.page("Dashboard", Section::Dashboard, &b).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_carry_their_totals_and_escape_labels() {
        let s = line_chart(
            "c",
            "Held <postings>",
            "",
            &[("a".into(), vec![(1, 1.0), (2, 3.0)]), ("b".into(), vec![(1, 2.0), (2, 2.0)])],
        );
        assert!(s.contains(r#"data-total="5""#), "{s}");
        assert!(s.contains("Held &lt;postings&gt;") && s.contains("<polyline"));
        let one = line_chart("c", "x", " s", &[("a".into(), vec![(1, 0.25)])]);
        assert!(one.contains("<circle") && one.contains(r#"data-total="0.25""#));
        let bars = bar_chart("b", "Open", &[("pick-overdue".into(), 2.0), ("master-data".into(), 1.0)]);
        assert!(bars.contains(r#"data-total="3""#) && bars.contains("pick-overdue"));
    }

    #[test]
    fn figures_read_with_sensible_precision() {
        assert_eq!(fmt_value(-0.0), "0");
        assert_eq!(fmt_value(250.4), "250");
        assert_eq!(fmt_value(3.0), "3");
        assert_eq!(fmt_value(2.345), "2.35");
        assert_eq!(fmt_value(0.25), "0.25");
        assert_eq!(fmt_value(0.0042), "0.0042");
        let flat = line_chart("c", "x", "", &[("a".into(), vec![(1, 0.0), (2, 0.0)])]);
        assert!(flat.contains(r#"data-total="0""#) && flat.contains(">1</text>"), "{flat}");
    }

    #[test]
    fn sync_delay_is_the_average_of_each_interval() {
        let mk = |at, sum: f64, count: f64| {
            crate::samples::parse(
                &format!(
                    "waybill_order_sync_delay_seconds_sum {sum}\nwaybill_order_sync_delay_seconds_count {count}\n"
                ),
                at,
            )
        };
        let (_, pts) = sync_delay(&[mk(0, 2.0, 4.0), mk(5, 8.0, 6.0), mk(10, 8.0, 6.0)]);
        assert_eq!(pts, vec![(0, 0.5), (5, 3.0), (10, 0.0)]);
    }
}
