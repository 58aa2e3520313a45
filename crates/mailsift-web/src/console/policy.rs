//! Policy: filter rules, allowed and blocked senders, domains and their thresholds, additional spam filtering.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/policy", get(policy_page))
        .route("/console/policy/test", post(policy_test))
        .route("/console/policy/rules/{op}", post(rules_op))
        .route("/console/policy/lists/{op}", post(lists_op))
        .route("/console/policy/domain", post(domain_save))
        .route("/console/policy/asf", post(asf_save))
}

/// The organisation-wide ASF modes (administrators): one select per option, `default` for the configuration
/// file's; all saved at once, all or nothing.
async fn asf_save(State(web): State<AppState>, page: Page, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !page.principal.is_admin() {
        return error_page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "organisation-wide ASF options are for administrators",
        );
    }
    let changes: Vec<(String, String)> = mailsift_engine::config::AsfConfig::OPTIONS
        .iter()
        .filter_map(|o| f.get(&format!("asf.{o}")).map(|m| (o.to_string(), m.to_string())))
        .collect();
    if changes.is_empty() {
        return policy_render(&web, &page, None, Some("asf: no option was given".into()), None, None).await;
    }
    match service::set_asf(&web.gateway, &page.principal, changes).await {
        Ok(done) => back("/console/policy", &done),
        Err(e) => policy_render(&web, &page, None, Some(e.message), None, None).await,
    }
}

#[derive(Serialize)]
struct RuleRow {
    /// Where the rule is evaluated, from 0 (the forms' hidden move targets).
    position: usize,
    /// The rule's number as people read it and the CLI takes it: from 1.
    number: usize,
    /// Said here because the rule's own serialisation leaves `enabled = true` out.
    enabled: bool,
    rule: FilterRule,
    /// The rule as TOML, led by comments saying how a forger gets through it and which conditions are
    /// forgeable (the page shows this text as the rule).
    toml: String,
    last_matched: Option<i64>,
    warnings: Vec<String>,
    forgeable_conditions: Vec<usize>,
}

impl RuleRow {
    fn of(r: mailsift_store::StoredRule) -> RuleRow {
        let mut toml = String::new();
        let warnings = api::rule_warnings(&r.rule);
        for w in &warnings {
            toml.push_str(&format!("# WARNING: FORGEABLE: {w}\n"));
        }
        let forgeable_conditions = api::forgeable_conditions(&r.rule);
        for n in &forgeable_conditions {
            let c = &r.rule.conditions[n - 1];
            let field = match (&c.header, c.field) {
                (Some(h), mailsift_engine::policy::Field::Header) => format!("header {}", h.trim()),
                (_, f) => f.as_str().to_string(),
            };
            toml.push_str(&format!("# condition {n} ({field}): (forgeable: the sender writes it)\n"));
        }
        toml.push_str(&mailsift_store::gateway::policy::rule_to_toml(&r.rule).unwrap_or_default());
        RuleRow {
            position: r.position,
            number: r.position + 1,
            enabled: r.rule.enabled,
            toml,
            rule: r.rule,
            last_matched: r.last_matched,
            warnings,
            forgeable_conditions,
        }
    }
}

async fn policy_page(State(web): State<AppState>, page: Page, Query(f): Query<FlashParams>) -> Response {
    policy_render(&web, &page, f.flash, None, None, None).await
}

async fn policy_render(
    web: &AppState,
    page: &Page,
    flash: Option<String>,
    error: Option<String>,
    test: Option<BTreeMap<String, String>>,
    result: Option<service::RulesTestAnswer>,
) -> Response {
    if let Err(r) = page.require_manager() {
        return r;
    }
    let w = web.clone();
    let p = page.principal.clone();
    let loaded = blocking(move || {
        let rules: Vec<RuleRow> = if p.is_admin() {
            w.db.rules().map_err(api::policy_error)?.into_iter().map(RuleRow::of).collect()
        } else {
            Vec::new()
        };
        let entries: Vec<mailsift_store::StoredEntry> =
            w.db.list_entries()
                .map_err(api::policy_error)?
                .into_iter()
                .filter(|e| service::may_manage_entry(&p, e.entry.recipient()))
                .collect();
        let domains: Vec<api::DomainView> = service::all_domains(&w.gateway)?
            .into_iter()
            .filter(|(d, _)| p.manages_domain(&d.name))
            .map(|(settings, source)| api::DomainView { settings, source: source.into() })
            .collect();
        let asf = service::asf_list(&w.gateway)?;
        Ok((rules, entries, domains, asf))
    })
    .await;
    let (rules, entries, domains, asf) = match loaded {
        Ok(x) => x,
        Err(e) => return api_error_page(e),
    };
    let state = web.gateway.state();
    let thresholds = state.engine.config().thresholds.clone();
    let forgeable_rules: Vec<&String> = rules.iter().flat_map(|r| &r.warnings).collect();
    let rule_fields: Vec<api::RuleField> = mailsift_engine::policy::Field::ALL
        .iter()
        .map(|f| api::RuleField { name: f.as_str(), description: api::field_label(*f), forgeable: f.forgeable() })
        .collect();
    let rule_ops: Vec<&str> = RULE_OPS.iter().map(|o| o.as_str()).collect();
    render(
        web,
        "policy_with_rule_form.html",
        context! { title => "Policy", page => "policy", principal => &page.principal, csrf => &page.csrf, flash, error,
        rules, entries, domains, thresholds, asf, test, result, forgeable_rules, rule_fields,
        rule_ops },
    )
}

async fn policy_test(State(web): State<AppState>, page: Page, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let message = f.all("message").first().map(|m| m.replace("\r\n", "\n").replace('\n', "\r\n")).unwrap_or_default();
    let params = ScanParams {
        ip: f.get("ip").map(String::from),
        mail_from: f.get("mail_from").map(String::from),
        rcpt: f.get("rcpt").map(String::from),
        ..Default::default()
    };
    let test: BTreeMap<String, String> = ["ip", "mail_from", "rcpt"]
        .iter()
        .filter_map(|k| f.get(k).map(|v| (k.to_string(), v.to_string())))
        .chain(std::iter::once(("message".to_string(), message.clone())))
        .collect();
    if message.trim().is_empty() {
        return policy_render(&web, &page, None, Some("paste a message to test".into()), Some(test), None).await;
    }
    match service::test_rules(&web.gateway, message.into_bytes(), &params).await {
        Ok(result) => policy_render(&web, &page, None, None, Some(test), Some(result)).await,
        Err(e) => policy_render(&web, &page, None, Some(e.message), Some(test), None).await,
    }
}

async fn rules_op(State(web): State<AppState>, page: Page, Path(op): Path<String>, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !page.principal.is_admin() {
        return error_page(
            StatusCode::FORBIDDEN,
            "Not for you",
            "Filter rules are the organisation's: administrators only.",
        );
    }
    let db = web.db.clone();
    let name = f.get("name").unwrap_or("").to_string();
    let result: Result<String, ApiError> = match op.as_str() {
        "add" => {
            let text = f.all("rule").first().copied().unwrap_or("").to_string();
            // Positions count from 1 here, as on the page and in the CLI.
            let at = f.get("at").and_then(|a| a.parse::<usize>().ok()).map(|a| a.saturating_sub(1));
            match toml::from_str::<FilterRule>(&text) {
                Ok(rule) => add_rule(&web, rule, at).await,
                Err(e) => Err(ApiError::bad_request(format!("the rule does not read: {e}"))),
            }
        }
        "build" => {
            // Positions count from 1 here, as on the page and in the CLI.
            let at = f.get("at").and_then(|a| a.parse::<usize>().ok()).map(|a| a.saturating_sub(1));
            match rule_from_form(&f) {
                Ok(rule) => add_rule(&web, rule, at).await,
                Err(e) => Err(ApiError::bad_request(e)),
            }
        }
        "delete" => {
            blocking(move || db.rule_remove(&name).map_err(api::policy_error)).await.map(|_| "rule removed".into())
        }
        "toggle" => {
            blocking(move || {
                let rule = db
                    .rule_get(&name)
                    .map_err(api::policy_error)?
                    .ok_or_else(|| ApiError::not_found("no such rule"))?;
                db.rule_set_enabled(&name, !rule.rule.enabled).map_err(api::policy_error)?;
                Ok(format!("rule {name:?} {}", if rule.rule.enabled { "disabled" } else { "enabled" }))
            })
            .await
        }
        "move" => {
            let to: usize = f.get("to").and_then(|t| t.parse().ok()).unwrap_or(0);
            blocking(move || {
                let count = db.rules().map_err(api::policy_error)?.len();
                db.rule_move(&name, to.min(count.saturating_sub(1))).map_err(api::policy_error)?;
                Ok("rule moved".to_string())
            })
            .await
        }
        other => Err(ApiError::not_found(format!("no rule operation {other:?}"))),
    };
    match result {
        Ok(done) => back("/console/policy", &done),
        Err(e) => policy_render(&web, &page, None, Some(e.message), None, None).await,
    }
}

/// The operators the rule form offers, in the order the documentation gives them.
const RULE_OPS: &[mailsift_engine::policy::Operator] = {
    use mailsift_engine::policy::Operator as O;
    &[O::Is, O::Contains, O::StartsWith, O::EndsWith, O::Matches, O::InCidr, O::Above, O::Below, O::Exists]
};

/// Stores a rule from the console; the confirmation carries the forgery warning, so whoever added it reads
/// it at once (the rule list repeats it).
async fn add_rule(web: &AppState, rule: FilterRule, at: Option<usize>) -> Result<String, ApiError> {
    let n = rule.name.clone();
    let warning = rule.forgery_warning();
    let db = web.db.clone();
    let pos = blocking(move || db.rule_add(rule, at).map_err(api::policy_error)).await?;
    Ok(match warning {
        Some(w) => format!("rule {n:?} added at position {}. WARNING: FORGEABLE: {w}", pos + 1),
        None => format!("rule {n:?} added at position {}", pos + 1),
    })
}

/// A rule from the console's field form: up to three conditions (field, header, operator, value, not),
/// one action. The engine checks it when it is stored.
fn rule_from_form(f: &Fields) -> Result<FilterRule, String> {
    use mailsift_engine::policy::{Condition, Field, MatchMode, Operator, RuleAction, RuleDirection, Value};
    let name = f.get("name").unwrap_or("").trim().to_string();
    if name.is_empty() {
        return Err("the rule needs a name".into());
    }
    // Field and operator names read as the TOML and JSON read them.
    let parse = |v: &str| serde_json::Value::String(v.trim().to_string());
    let mut conditions = Vec::new();
    for i in 1..=3 {
        let Some(field) = f.get(&format!("field{i}")) else { continue };
        let field: Field = serde_json::from_value(parse(field)).map_err(|e| format!("condition {i}: field: {e}"))?;
        let op: Operator = serde_json::from_value(parse(f.get(&format!("op{i}")).unwrap_or("")))
            .map_err(|e| format!("condition {i}: operator: {e}"))?;
        let header = f.get(&format!("header{i}")).map(str::to_string);
        let value = f.get(&format!("value{i}")).map(|v| match (field, v.parse::<f64>()) {
            (Field::Size | Field::Score, Ok(n)) => Value::Number(n),
            _ => Value::Text(v.to_string()),
        });
        let not = f.get(&format!("not{i}")).is_some();
        conditions.push(Condition {
            field,
            header: if field == Field::Header { header } else { None },
            op,
            value,
            not,
        });
    }
    let action = match f.get("action").unwrap_or("") {
        "allow" => RuleAction::Allow {},
        "quarantine" => RuleAction::Quarantine {},
        "reject" => RuleAction::Reject { message: None },
        "tag" => RuleAction::Tag {},
        "add_score" => RuleAction::AddScore {
            score: f.get("score").unwrap_or("").trim().parse().map_err(|_| "add score: give the score as a number")?,
        },
        other => return Err(format!("action {other:?}: allow, quarantine, reject, tag or add_score")),
    };
    Ok(FilterRule {
        name,
        enabled: true,
        direction: match f.get("direction").unwrap_or("inbound") {
            "outbound" => RuleDirection::Outbound,
            "both" => RuleDirection::Both,
            _ => RuleDirection::Inbound,
        },
        match_mode: if f.get("match") == Some("any") { MatchMode::Any } else { MatchMode::All },
        conditions,
        actions: vec![action],
        comment: Some("added from the console's rule form".into()),
    })
}

async fn lists_op(State(web): State<AppState>, page: Page, Path(op): Path<String>, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let db = web.db.clone();
    let p = page.principal.clone();
    let result: Result<String, ApiError> = match op.as_str() {
        "add" => {
            let req = api::ListRequest {
                list: f.get("list").unwrap_or("allow").to_string(),
                entry: serde_json::json!({
                    "sender": f.get("sender").unwrap_or(""),
                    "recipient": f.get("recipient"),
                    "comment": f.get("comment").map(String::from).unwrap_or_else(|| format!("added in the console by {}", p.name)),
                }),
            };
            match api::parse_list_entry(req) {
                Ok(entry) if service::may_manage_entry(&p, entry.recipient()) => {
                    blocking(move || db.list_add(entry).map_err(api::policy_error))
                        .await
                        .map(|id| format!("entry {id} added"))
                }
                Ok(_) => Err(ApiError::forbidden("give a recipient (address or domain) that you manage")),
                Err(e) => Err(e),
            }
        }
        "delete" => {
            let id: i64 = f.get("id").and_then(|i| i.parse().ok()).unwrap_or(-1);
            blocking(move || {
                let entry = db.list_entries().map_err(api::policy_error)?.into_iter().find(|e| e.id == id);
                match entry {
                    Some(e) if service::may_manage_entry(&p, e.entry.recipient()) => {
                        db.list_remove(id).map_err(api::policy_error)
                    }
                    _ => Err(ApiError::not_found(format!("no list entry {id} that you may change"))),
                }
            })
            .await
            .map(|_| format!("entry {id} removed"))
        }
        other => Err(ApiError::not_found(format!("no list operation {other:?}"))),
    };
    match result {
        Ok(done) => back("/console/policy", &done),
        Err(e) => policy_render(&web, &page, None, Some(e.message), None, None).await,
    }
}

fn split_list(s: Option<&str>) -> Vec<String> {
    s.unwrap_or("").split([',', ' ', '\n']).map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect()
}

async fn domain_save(State(web): State<AppState>, page: Page, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(name) = f.get("name").map(|n| n.to_ascii_lowercase()) else {
        return policy_render(&web, &page, None, Some("give the domain's name".into()), None, None).await;
    };
    // Start from the domain as it is (stored, or from the configuration), change what the form gives.
    let w = web.clone();
    let existing = blocking(move || Ok(service::all_domains(&w.gateway)?)).await.unwrap_or_default();
    let mut d =
        existing.into_iter().find(|(d, _)| d.name.eq_ignore_ascii_case(&name)).map(|(d, _)| d).unwrap_or_else(|| {
            serde_json::from_value(serde_json::json!({ "name": name })).expect("a domain from its name")
        });
    if let Some(h) = f.get("next_hop") {
        d.next_hop = Some(h.to_string());
    }
    if f.get("sending_servers").is_some() {
        d.sending_servers = split_list(f.get("sending_servers"));
    }
    let num =
        |k: &str| f.get(k).map(|v| v.parse::<f64>().map_err(|_| format!("{k}: {v:?} is not a number"))).transpose();
    match (num("tag"), num("quarantine"), num("reject")) {
        (Ok(Some(tag)), Ok(Some(quarantine)), Ok(Some(reject))) => {
            d.thresholds = Some(mailsift_engine::config::Thresholds { tag, quarantine, reject })
        }
        (Ok(None), Ok(None), Ok(None)) => {}
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return policy_render(&web, &page, None, Some(e), None, None).await
        }
        _ => {
            return policy_render(&web, &page, None, Some("give all three thresholds, or none".into()), None, None)
                .await
        }
    }
    if let Some(asf) = f.get("asf") {
        // Merged into the domain's overrides, as the CLI does: the options given change, the others stay;
        // `option=default` removes an override (the organisation's mode applies again).
        let known = mailsift_engine::config::AsfConfig::OPTIONS;
        let mut map = std::mem::take(&mut d.asf);
        for pair in split_list(Some(asf)) {
            let Some((k, v)) = pair.split_once('=') else {
                return policy_render(&web, &page, None, Some(format!("asf: {pair:?} is not option=mode")), None, None)
                    .await;
            };
            let k = k.trim();
            if !known.iter().any(|o| *o == k) {
                let msg = format!("asf: no such ASF option {k:?} (the options are listed at the end of this page)");
                return policy_render(&web, &page, None, Some(msg), None, None).await;
            }
            if v.trim() == "default" {
                map.remove(k);
                continue;
            }
            match serde_json::from_value(serde_json::Value::String(v.trim().to_string())) {
                Ok(mode) => {
                    map.insert(k.to_string(), mode);
                }
                Err(_) => {
                    return policy_render(
                        &web,
                        &page,
                        None,
                        Some(format!("asf: {v:?} is not on, off, test or default")),
                        None,
                        None,
                    )
                    .await
                }
            }
        }
        d.asf = map;
    }
    match service::store_domain(&web.gateway, &page.principal, d).await {
        Ok(()) => back("/console/policy", &format!("domain {name} saved; the gateway applies it within seconds")),
        Err(e) => policy_render(&web, &page, None, Some(e.message), None, None).await,
    }
}
