//! Figures of a scorer on labelled mail: false-positive rate, spam caught, ROC AUC, operating points for a
//! target false-positive rate; and the ROC curves as a hand-written SVG (a plotting crate would be more
//! code than the plot).

/// How one scorer did. Scores: higher means spammier; a message is flagged at `score >= at`.
pub struct Metrics {
    pub fp_rate: f64,
    pub caught: f64,
    pub accuracy: f64,
    pub auc: f64,
    /// Ham and spam scores, highest first.
    ham: Vec<f64>,
    spam: Vec<f64>,
}

impl Metrics {
    pub fn of(scored: &[(f64, bool)], at: f64) -> Metrics {
        let mut ham: Vec<f64> = scored.iter().filter(|s| !s.1).map(|s| s.0).collect();
        let mut spam: Vec<f64> = scored.iter().filter(|s| s.1).map(|s| s.0).collect();
        ham.sort_by(|a, b| b.total_cmp(a));
        spam.sort_by(|a, b| b.total_cmp(a));
        let fp = ham.iter().filter(|&&s| s >= at).count();
        let tp = spam.iter().filter(|&&s| s >= at).count();
        let n = (ham.len() + spam.len()).max(1) as f64;
        Metrics {
            fp_rate: fp as f64 / ham.len().max(1) as f64,
            caught: tp as f64 / spam.len().max(1) as f64,
            accuracy: (tp + ham.len() - fp) as f64 / n,
            auc: auc(&ham, &spam),
            ham,
            spam,
        }
    }

    /// The lowest threshold `t` such that flagging `score > t` gives at most `rate` false positives, and
    /// the percentage of spam it catches. `None` without ham.
    pub fn at_fp_rate(&self, rate: f64) -> Option<(f64, f64)> {
        if self.ham.is_empty() {
            return None;
        }
        let allowed = (rate * self.ham.len() as f64 + 1e-9).floor() as usize;
        let t = *self.ham.get(allowed)?;
        let caught = self.spam.iter().filter(|&&s| s > t).count();
        Some((t, caught as f64 * 100.0 / self.spam.len().max(1) as f64))
    }
}

/// The area under the ROC curve: the chance a random spam scores above a random ham (ties count half).
pub fn auc(ham_desc: &[f64], spam_desc: &[f64]) -> f64 {
    if ham_desc.is_empty() || spam_desc.is_empty() {
        return f64::NAN;
    }
    // Walk ham from lowest to highest, counting the spam below and equal to each.
    let mut ham: Vec<f64> = ham_desc.to_vec();
    ham.reverse();
    let mut spam: Vec<f64> = spam_desc.to_vec();
    spam.reverse();
    let (mut below, mut wins) = (0usize, 0.0f64);
    let mut j = 0;
    for h in ham {
        while j < spam.len() && spam[j] < h {
            j += 1;
        }
        below = below.max(j);
        let mut equal = 0;
        while j + equal < spam.len() && spam[j + equal] == h {
            equal += 1;
        }
        wins += (spam.len() - below - equal) as f64 + equal as f64 / 2.0;
    }
    wins / (ham_desc.len() as f64 * spam_desc.len() as f64)
}

/// One ROC curve: (false-positive rate, spam caught) as the threshold falls, and the configured point.
pub struct Curve {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub at: (f64, f64),
}

impl Curve {
    pub fn new(name: &str, scored: &[(f64, bool)], at: f64) -> Curve {
        let mut s: Vec<(f64, bool)> = scored.to_vec();
        s.sort_by(|a, b| b.0.total_cmp(&a.0));
        let nh = s.iter().filter(|x| !x.1).count().max(1) as f64;
        let ns = s.iter().filter(|x| x.1).count().max(1) as f64;
        let (mut fp, mut tp) = (0usize, 0usize);
        let mut points = vec![(0.0, 0.0)];
        let mut i = 0;
        while i < s.len() {
            // Every message with the same score crosses the threshold together.
            let v = s[i].0;
            while i < s.len() && s[i].0 == v {
                if s[i].1 {
                    tp += 1;
                } else {
                    fp += 1;
                }
                i += 1;
            }
            points.push((fp as f64 / nh, tp as f64 / ns));
        }
        let m = Metrics::of(scored, at);
        Curve { name: name.to_string(), points, at: (m.fp_rate, m.caught) }
    }
}

const COLOURS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#111111", "#9467bd"];

/// The ROC curves on a logarithmic false-positive axis (0.05% to 100%), where the rates that matter for
/// mail live; a false-positive rate of 0 is drawn at the left edge.
pub fn svg(curves: &[Curve]) -> String {
    let (w, h) = (720.0, 520.0);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let (xmin, xmax) = (-3.3f64, 0.0f64); // log10 of the false-positive rate
    let (ymin, ymax) = (0.5f64, 1.0f64);
    let x = |fpr: f64| {
        let l = if fpr <= 0.0 { xmin } else { fpr.log10().max(xmin) };
        left + (l - xmin) / (xmax - xmin) * pw
    };
    let y = |tpr: f64| top + (1.0 - (tpr.max(ymin) - ymin) / (ymax - ymin)) * ph;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">mailsift: ROC curves</text>\n",
        w / 2.0
    );
    for (fpr, label) in [(0.001, "0.1%"), (0.005, "0.5%"), (0.01, "1%"), (0.1, "10%"), (1.0, "100%")] {
        let xv = x(fpr);
        s += &format!(
            "<line x1=\"{xv:.1}\" y1=\"{top}\" x2=\"{xv:.1}\" y2=\"{}\" stroke=\"#ddd\"/>\n\
             <text x=\"{xv:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>\n",
            top + ph,
            top + ph + 16.0
        );
    }
    for i in 0..=5 {
        let t = ymin + (ymax - ymin) * i as f64 / 5.0;
        let yv = y(t);
        s += &format!(
            "<line x1=\"{left}\" y1=\"{yv:.1}\" x2=\"{}\" y2=\"{yv:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}%</text>\n",
            left + pw,
            left - 6.0,
            yv + 4.0,
            t * 100.0
        );
    }
    s += &format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">false positives (ham flagged, log scale)</text>\n\
         <text transform=\"translate(18 {}) rotate(-90)\" text-anchor=\"middle\">spam caught</text>\n",
        left + pw / 2.0,
        h - 18.0,
        top + ph / 2.0
    );
    for (i, c) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let pts: Vec<String> = c.points.iter().map(|&(f, t)| format!("{:.1},{:.1}", x(f), y(t))).collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"/>\n\
             <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{colour}\" stroke-width=\"2\"/>\n\
             <text x=\"{}\" y=\"{}\">{} (dot: configured threshold)</text>\n",
            pts.join(" "),
            x(c.at.0),
            y(c.at.1),
            left + pw - 250.0,
            top + ph - 20.0 - 18.0 * i as f64,
            left + pw - 225.0,
            top + ph - 20.0 - 18.0 * i as f64,
            left + pw - 218.0,
            top + ph - 16.0 - 18.0 * i as f64,
            c.name
        );
    }
    s += "</svg>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_inverted_scorers() {
        let perfect = [(0.1, false), (0.2, false), (0.8, true), (0.9, true)];
        assert_eq!(Metrics::of(&perfect, 0.5).auc, 1.0);
        let inverted = [(0.9, false), (0.8, false), (0.2, true), (0.1, true)];
        assert_eq!(Metrics::of(&inverted, 0.5).auc, 0.0);
        let ties = [(0.5, false), (0.5, true)];
        assert_eq!(Metrics::of(&ties, 0.5).auc, 0.5);
        let mixed = [(0.1, false), (0.6, false), (0.5, true), (0.9, true)];
        assert_eq!(Metrics::of(&mixed, 0.5).auc, 0.75);
    }

    #[test]
    fn operating_point_for_a_false_positive_rate() {
        let mut scored: Vec<(f64, bool)> = (0..1000).map(|i| (i as f64 / 1000.0, false)).collect();
        scored.extend((0..10).map(|i| (0.9985 + i as f64 * 0.0001, true)));
        let m = Metrics::of(&scored, 0.5);
        // 0.1% of 1000 ham: one may be flagged, so the threshold sits at the second-highest ham.
        let (t, caught) = m.at_fp_rate(0.001).unwrap();
        assert_eq!(t, 0.998);
        assert_eq!(caught, 100.0);
    }

    #[test]
    fn the_plot_is_an_svg_with_one_line_per_curve() {
        let scored = [(0.1, false), (0.9, true)];
        let svg = svg(&[Curve::new("a", &scored, 0.5), Curve::new("b", &scored, 0.5)]);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
    }
}
