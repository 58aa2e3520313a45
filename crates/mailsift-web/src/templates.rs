//! The console's page templates (minijinja), compiled into the binary once at start, with the filters the
//! pages use. The console renders them; the application state keeps the compiled set.

pub fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    for (name, text) in [
        ("base.html", include_str!("../templates/base.html")),
        ("login.html", include_str!("../templates/login.html")),
        ("dashboard.html", include_str!("../templates/dashboard.html")),
        ("log.html", include_str!("../templates/log.html")),
        ("diagnosis.html", include_str!("../templates/diagnosis.html")),
        ("log_detail.html", include_str!("../templates/log_detail.html")),
        ("quarantine.html", include_str!("../templates/quarantine.html")),
        ("quarantine_item.html", include_str!("../templates/quarantine_item.html")),
        ("policy.html", include_str!("../templates/policy.html")),
        ("outbound.html", include_str!("../templates/outbound.html")),
        ("policy_with_rule_form.html", include_str!("../templates/policy_with_rule_form.html")),
        ("range.html", include_str!("../templates/range.html")),
        ("reports.html", include_str!("../templates/reports.html")),
        ("sender_domain.html", include_str!("../templates/sender_domain.html")),
        ("lists.html", include_str!("../templates/lists.html")),
        ("link.html", include_str!("../templates/link.html")),
        ("error.html", include_str!("../templates/error.html")),
    ] {
        env.add_template(name, text).expect("the console's templates compile");
    }
    let presets: Vec<(&str, i64, &str)> = crate::range::PRESETS.to_vec();
    env.add_global("range_presets", minijinja::Value::from_serialize(&presets));
    env.add_filter("when", |t: i64| mailsift_gateway::text::rfc5322_date(t).replace(" +0000", ""));
    env
}
