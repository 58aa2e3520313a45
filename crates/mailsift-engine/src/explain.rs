//! The verdict explained for a person: every symbol that fired, grouped by engine, strongest first, with
//! what it means and what an administrator can do about it.

use std::fmt::Write;

use crate::symbols::Registry;
use crate::verdict::Verdict;

/// Renders the explanation as plain text.
pub fn render(verdict: &Verdict, registry: &Registry) -> String {
    let mut out = String::new();
    let t = &verdict.thresholds;
    let _ = writeln!(
        out,
        "Verdict: {} (score {:.2}; tag at {}, quarantine at {}, reject at {}), SCL {}, reference {}",
        verdict.action.as_str().to_uppercase(),
        verdict.score,
        t.tag,
        t.quarantine,
        t.reject,
        verdict.scl,
        verdict.id
    );
    if verdict.high_confidence {
        let _ = writeln!(out, "Marked high-confidence spam by an Additional Spam Filtering option that is On.");
    }
    for c in &verdict.capped {
        let _ = writeln!(
            out,
            "The {} group added {:.2} but counts at most {:.2} (group_caps.{}): one family of evidence may not decide alone.",
            c.group, c.total, c.cap, c.group
        );
    }
    if let Some(rule) = &verdict.decided_by {
        let _ = writeln!(out, "Decided by: {rule}");
    }
    if verdict.symbols.is_empty() {
        let _ = writeln!(
            out,
            "\nNo evidence fired: nothing about this message looks like spam to the engines that ran ({}).",
            verdict.engines.join(", ")
        );
        return out;
    }
    // Engines in order of their total weight.
    let mut engines: Vec<(&str, f64)> = Vec::new();
    for s in &verdict.symbols {
        let e = s.group.engine();
        match engines.iter_mut().find(|(n, _)| *n == e) {
            Some((_, total)) => *total += s.score,
            None => engines.push((e, s.score)),
        }
    }
    engines.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    for (engine, total) in engines {
        let _ = writeln!(out, "\n{} ({:+.2})", engine_title(engine), total);
        for s in verdict.symbols.iter().filter(|s| s.group.engine() == engine) {
            let def = registry.by_name(&s.name);
            let mode = match s.asf_mode {
                Some("test") => " [ASF test mode: reported, not scored]",
                Some(_) => " [ASF option On]",
                None => "",
            };
            let _ = writeln!(out, "  {:+7.2}  {}{}", s.score, s.name, mode);
            if let Some(d) = def {
                let _ = writeln!(out, "           {}", d.description);
            }
            if !s.detail.is_empty() {
                let _ = writeln!(out, "           seen: {}", s.detail);
            }
            if let Some(d) = def {
                let _ = writeln!(out, "           fix: {}", d.remedy);
            }
        }
    }
    out
}

fn engine_title(engine: &str) -> &'static str {
    match engine {
        "heuristics" => "Content heuristics",
        "asf" => "Additional Spam Filtering options",
        "sender" => "Sender reputation and practices",
        "auth" => "Authentication",
        "classifier" => "Statistical classifiers",
        "policy" => "Your own policy",
        _ => "Other",
    }
}
