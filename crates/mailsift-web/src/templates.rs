//! The console's page templates (minijinja), compiled into the binary once at start, with the filters the
//! pages use. The console renders them; the application state keeps the compiled set.

pub fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    for (name, text) in [
        ("base.html", include_str!("../templates/base.html")),
        ("login.html", include_str!("../templates/login.html")),
        ("dashboard.html", include_str!("../templates/dashboard.html")),
        ("log.html", include_str!("../templates/log.html")),
        ("log_detail.html", include_str!("../templates/log_detail.html")),
        ("quarantine.html", include_str!("../templates/quarantine.html")),
        ("quarantine_item.html", include_str!("../templates/quarantine_item.html")),
        ("policy.html", include_str!("../templates/policy.html")),
        ("outbound.html", include_str!("../templates/outbound.html")),
        ("policy_with_rule_form.html", RULE_FORM),
        ("link.html", include_str!("../templates/link.html")),
        ("error.html", include_str!("../templates/error.html")),
    ] {
        env.add_template(name, text).expect("the console's templates compile");
    }
    env.add_filter("when", |t: i64| mailsift_gateway::text::rfc5322_date(t).replace(" +0000", ""));
    env
}

/// The policy page with the rule form built from fields: every field a condition can look at, the ones a
/// forger cannot write first, the ones the sender writes marked forgeable; and the stored rules a forger
/// can get mail through, named above the form.
const RULE_FORM: &str = r#"{% extends "policy.html" %}
{% block content %}
{{ super() }}
{% if principal.role == "admin" %}
<h2 id="rule-form">Add a rule from fields</h2>
{% if forgeable_rules %}
<div id="rule-warnings" class="error"><strong>Warning: rules a forger can get mail through.</strong>
<ul>{% for w in forgeable_rules %}<li>{{ w }}</li>{% endfor %}</ul></div>
{% endif %}
<p class="muted">Conditions on what the sender writes (headers, From, MAIL FROM, HELO, subject, body, attachments)
are <strong>forgeable</strong>: anyone can write them. They are right for tagging or blocking; to let mail
through, tie the rule to what a forger cannot write: the connecting server's IP or verified name, a DKIM signing
domain, an ARC sealer, or a hop written by our trusted relays.</p>
<form method="post" action="/console/policy/rules/build" id="rule-builder">
<input type="hidden" name="_csrf" value="{{ csrf }}">
<p><label>Name <input name="name" required></label>
<label>Mail <select name="direction"><option>inbound</option><option>outbound</option><option>both</option></select></label>
<label>Match <select name="match"><option value="all">all conditions</option><option value="any">any condition</option></select></label></p>
{% for i in [1, 2, 3] %}
<p>Condition {{ i }}:
<select name="field{{ i }}" id="field{{ i }}"><option value="">(none)</option>
<optgroup label="Facts a forger cannot write">{% for f in rule_fields if not f.forgeable %}<option value="{{ f.name }}">{{ f.description }} ({{ f.name }})</option>{% endfor %}</optgroup>
<optgroup label="Written by the sender: forgeable">{% for f in rule_fields if f.forgeable %}<option value="{{ f.name }}">{{ f.description }} ({{ f.name }}) (forgeable: the sender writes it)</option>{% endfor %}</optgroup>
</select>
<input name="header{{ i }}" placeholder="header name (for a header)" size="16">
<select name="op{{ i }}">{% for o in rule_ops %}<option>{{ o }}</option>{% endfor %}</select>
<input name="value{{ i }}" placeholder="value" size="30">
<label><input type="checkbox" name="not{{ i }}" value="1"> not</label></p>
{% endfor %}
<p><label>Then <select name="action"><option>allow</option><option>quarantine</option><option>reject</option><option>tag</option><option value="add_score">add score</option></select></label>
<label>Score <input name="score" size="5" placeholder="-2"></label>
<label>Position <input name="at" size="4" placeholder="end"></label>
<button id="build-rule">Add rule</button></p>
</form>
{% endif %}
{% endblock %}
"#;
