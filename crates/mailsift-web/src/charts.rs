//! Charts for the dashboard, drawn on the server as inline SVG: no JavaScript, nothing loaded from
//! elsewhere, readable in any browser and in a screenshot. Each chart has a `<title>` per bar for hovering
//! and a caption, so the numbers are there for screen readers too.

use std::fmt::Write;

/// Colours per action, the same everywhere in the console.
pub fn action_colour(action: &str) -> &'static str {
    match action {
        "deliver" => "#3a7d44",
        "tag" => "#c9a227",
        "quarantine" => "#d9822b",
        "reject" => "#b3261e",
        "refused" => "#7b1fa2",
        "tempfail" => "#607d8b",
        _ => "#9e9e9e",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Stacked bars: one bar per x label, one segment per series. `series` is (name, colour, values per x).
pub fn stacked_bars(title: &str, labels: &[String], series: &[(String, &str, Vec<u64>)]) -> String {
    let (w, h, left, bottom, top) = (720.0, 220.0, 40.0, 30.0, 24.0);
    let n = labels.len().max(1) as f64;
    let totals: Vec<u64> =
        (0..labels.len()).map(|i| series.iter().map(|s| s.2.get(i).copied().unwrap_or(0)).sum()).collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let plot_h = h - bottom - top;
    let bar_w = ((w - left - 10.0) / n) * 0.8;
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title>{}</title><text x=\"{left}\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        esc(title),
        esc(title)
    );
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/><text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
        h - bottom,
        w - 5.0,
        h - bottom,
        left - 4.0,
        top + 8.0,
        max as u64
    );
    for (i, label) in labels.iter().enumerate() {
        let x = left + 5.0 + i as f64 * ((w - left - 10.0) / n);
        let mut y = h - bottom;
        for (name, colour, values) in series {
            let v = values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let bh = v as f64 / max * plot_h;
            y -= bh;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"><title>{} {}: {v}</title></rect>",
                esc(label),
                esc(name)
            );
        }
        // Every few labels, so they do not overlap.
        let every = (labels.len() / 12).max(1);
        if i % every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"9\" text-anchor=\"middle\">{}</text>",
                x + bar_w / 2.0,
                h - bottom + 12.0,
                esc(label)
            );
        }
    }
    // Legend.
    let mut lx = left;
    for (name, colour, values) in series {
        let total: u64 = values.iter().sum();
        let _ = write!(
            svg,
            "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"{}\" font-size=\"10\">{} ({total})</text>",
            h - 12.0,
            lx + 13.0,
            h - 3.0,
            esc(name)
        );
        lx += 110.0;
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars, largest first: (label, value).
pub fn horizontal_bars(title: &str, rows: &[(String, u64)], colour: &str) -> String {
    let (w, row_h, label_w) = (720.0, 18.0, 300.0);
    let h = 28.0 + row_h * rows.len().max(1) as f64;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title>{}</title><text x=\"4\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{}</text>",
        esc(title),
        esc(title)
    );
    if rows.is_empty() {
        svg.push_str("<text x=\"4\" y=\"40\" font-size=\"11\" fill=\"#666\">nothing yet</text>");
    }
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 24.0 + i as f64 * row_h;
        let bw = *v as f64 / max * (w - label_w - 60.0);
        let shown: String = label.chars().take(48).collect();
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{}: {v}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{v}</text>",
            label_w - 6.0,
            y + 12.0,
            esc(&shown),
            y + 2.0,
            row_h - 4.0,
            esc(label),
            label_w + bw + 4.0,
            y + 12.0
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_labels_and_scale_to_the_largest_value() {
        let svg = horizontal_bars("Top <senders>", &[("<script>@x".into(), 10), ("b".into(), 5)], "#000");
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;@x"));
        assert!(svg.contains("width=\"360.0\""), "the largest bar spans the plot: {svg}");
        let svg = stacked_bars(
            "Per hour",
            &["00".into(), "01".into()],
            &[("deliver".into(), "#0f0", vec![3, 1]), ("reject".into(), "#f00", vec![1, 0])],
        );
        assert!(svg.contains("deliver (4)") && svg.contains("reject (1)"));
        assert_eq!(svg.matches("<rect").count(), 3 + 2, "three bars and two legend keys");
    }
}
