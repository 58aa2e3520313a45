//! Diagnosis over HTTP: the engine's `diagnose` (why a message was judged as it was, and the narrowest
//! fixes) for a logged or quarantined message or a posted one, with each fix tried on the message and,
//! when asked, replayed over the message log; and applying a fix. The message page of the console shows
//! the same report.
//!
//! The engine and policy are the running gateway's (the recipient domain's engine, the configuration's
//! policy followed by the stored one), so the diagnosis is of the gateway as it is now. Reading the store
//! and gathering evidence happen here; the engine's `diagnose` module does no I/O.

use mailsift_engine::diagnose::{self, Change, Diagnosis, Observed, Replay, Source, Subject};
use mailsift_engine::Evidence;
use mailsift_gateway::actions::{self, envelope_of_log, past_messages, rebuilt_from_log};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::{blocking, ApiError, AppState};
use crate::auth::Principal;
use crate::service::{self, ScanParams};

/// What to diagnose.
pub enum Target {
    Quarantine(i64),
    Log(String),
    /// A posted message: diagnosed from our headers when it has them, else scanned afresh.
    Raw(Vec<u8>, ScanParams),
}

#[derive(Serialize, ToSchema)]
pub struct FixReport {
    #[schema(value_type = Object)]
    pub fix: diagnose::Fix,
    /// This message judged with the fix in place (action, score, SCL, what decided), or why it cannot be tried.
    #[schema(value_type = Object)]
    pub with_fix: Option<serde_json::Value>,
    /// The fix held against the message log (when `replay_days` was given).
    #[schema(value_type = Object)]
    pub replay: Option<Replay>,
}

#[derive(Serialize, ToSchema)]
pub struct DiagnosisReport {
    #[schema(value_type = Object)]
    pub source: Source,
    /// Where the verdict was read: "scan", "headers" or "log".
    pub read_from: String,
    #[schema(value_type = Object)]
    pub diagnosis: Diagnosis,
    /// The diagnosis in words, as `mailsift diagnose` prints it.
    pub text: String,
    pub fixes: Vec<FixReport>,
}

/// Diagnoses a message the caller may see.
pub async fn diagnose_target(
    web: &AppState,
    p: &Principal,
    target: Target,
    replay_days: Option<u64>,
) -> Result<DiagnosisReport, ApiError> {
    if !p.is_manager() {
        return Err(ApiError::forbidden("diagnosis is for administrators"));
    }
    // Read what is known: the raw message, the log row, the envelope.
    let (source, raw, log, envelope, from_trace) = match target {
        Target::Quarantine(id) => {
            let (item, raw) = service::quarantine_item(&web.gateway, p, id).await?;
            let db = web.db.clone();
            let r = item.reference_id.clone();
            let log = blocking(move || Ok(db.log_get(&r)?)).await?;
            let mut env = log.as_ref().map(envelope_of_log).unwrap_or_default();
            if env.rcpt_to.is_empty() {
                env.rcpt_to = vec![item.recipient.clone()];
            }
            env.mail_from = env.mail_from.or(item.mail_from.clone());
            (Source::Quarantine(id), Some(raw), log, env, false)
        }
        Target::Log(reference) => {
            let detail = service::log_detail(&web.gateway, p, &reference).await?;
            let env = envelope_of_log(&detail.entry);
            match detail.quarantine.first() {
                Some(q) => {
                    let (_, raw) = service::quarantine_item(&web.gateway, p, q.id).await?;
                    (Source::Quarantine(q.id), Some(raw), Some(detail.entry), env, false)
                }
                None => (Source::Log(reference), None, Some(detail.entry), env, false),
            }
        }
        Target::Raw(raw, params) => {
            let env = params.envelope()?;
            (Source::File("posted message".into()), Some(raw), None, env, params.from_trace)
        }
    };
    let gateway = web.gateway.clone();
    let db = web.db.clone();
    // The message as judged now: without our headers.
    let g = gateway.clone();
    let (raw, clean) = blocking(move || {
        if let Err(e) = g.refresh_policy(false) {
            tracing::warn!(error = %e, "policy not reloaded for the diagnosis");
        }
        let clean = raw.as_deref().map(|r| mailsift_engine::verdict::strip_own_headers(r, None));
        Ok((raw, clean))
    })
    .await?;
    let state = gateway.state();
    let domain = envelope.rcpt_to.first().map(|r| crate::auth::domain_of(r).to_ascii_lowercase()).unwrap_or_default();
    // The evidence the gateway would judge it with, gathered as the gateway does (DNS awaited here).
    let (mut envelope, evidence, clean) = match clean {
        Some(clean) => {
            let (envelope, evidence, clean) = mailsift_gateway::judge::evidence(&state, envelope, clean, from_trace)
                .await
                .map_err(|e| ApiError::internal(format!("evidence for the diagnosis: {e}")))?;
            (envelope, evidence, Some(clean))
        }
        None => (envelope, Evidence::default(), None),
    };
    blocking(move || {
        // The diagnosis tries fixes by rebuilding the engine from its configuration: a domain with settings
        // of its own is diagnosed with an engine that has them in its configuration (same verdicts).
        let settings = state.settings_for(&domain);
        let engine = if settings.is_default() {
            state.engine.clone()
        } else {
            std::sync::Arc::new(actions::configured_with(&state.engine, settings).map_err(ApiError::internal)?)
        };
        let policy = actions::policy_in_force(&engine.config().policy, &db)?;
        let compiled = gateway.policy();
        let empty = log.as_ref().map(rebuilt_from_log).unwrap_or_default();
        let msg = engine.parse(clean.as_deref().unwrap_or(&empty));
        if from_trace {
            envelope.fill_from_trace(&msg);
        }
        let with_headers = raw.as_deref().map(|r| engine.parse(r)).and_then(|m| Observed::from_headers(&m));
        let observed = match (&log, with_headers) {
            (Some(e), _) => Observed::from_log(&e.reference_id, e.score.unwrap_or(0.0), &e.action, &e.symbols, e.reason.as_deref()),
            (None, Some(o)) => o,
            (None, None) => {
                Observed::from_verdict(&engine.judge_with_policy(&msg, &envelope, &evidence, &compiled))
            }
        };
        let subject =
            Subject { message: &msg, envelope: &envelope, evidence: &evidence, observed: &observed, source: source.clone() };
        let diagnosis = diagnose::diagnose(&engine, &policy, &subject);
        let past = match replay_days {
            Some(days) => past_messages(&db, mailsift_engine::unix_now() - days as i64 * 86_400)?,
            None => Vec::new(),
        };
        let fixes = diagnosis
            .fixes
            .iter()
            .map(|f| FixReport {
                fix: f.clone(),
                with_fix: clean.as_ref().map(|_| {
                    match diagnose::try_fix(&engine, &policy, &f.change, &msg, &envelope, &evidence) {
                        Ok(v) => serde_json::json!({ "action": v.action, "score": v.score, "scl": v.scl, "decided_by": v.decided_by }),
                        Err(e) => serde_json::json!({ "error": e.to_string() }),
                    }
                }),
                // The diagnosed message itself is not "other mail the fix would let through".
                replay: replay_days
                    .map(|_| diagnose::replay_excluding(&engine, &f.change, &past, observed.reference.as_deref())),
            })
            .collect();
        Ok(DiagnosisReport {
            source,
            read_from: observed.from.to_string(),
            text: diagnose::render(&diagnosis),
            diagnosis,
            fixes,
        })
    })
    .await
}

/// Makes a proposed change in the store (administrators only): the same changes `mailsift diagnose --apply`
/// makes, through the same `actions::apply_fix`. A report needs the message: give the quarantine item it came
/// from.
pub async fn apply_change(
    web: &AppState,
    p: &Principal,
    change: Change,
    quarantine_id: Option<i64>,
) -> Result<String, ApiError> {
    if !p.is_admin() {
        return Err(ApiError::forbidden("applying a fix needs an administrator"));
    }
    if let Change::Report { spam } = change {
        let id =
            quarantine_id.ok_or_else(|| ApiError::bad_request("a report needs the quarantine item (quarantine_id)"))?;
        let (_, raw) = service::quarantine_item(&web.gateway, p, id).await?;
        let side = if spam { mailsift_engine::classify::Side::Spam } else { mailsift_engine::classify::Side::Ham };
        let source = format!("diagnosis of quarantine item {id}");
        return Ok(service::report(&web.gateway, p, raw, side, source).await?.result);
    }
    let state = web.gateway.state();
    let db = web.db.clone();
    blocking(move || {
        let ctx = actions::FixContext { configured_domains: &state.config.domains, config: state.engine.config() };
        Ok(actions::apply_fix(&db, ctx, &change).map_err(service::ServiceError::from)?)
    })
    .await
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplayParams {
    /// Also replay each fix over this many days of the message log.
    pub replay_days: Option<u64>,
}

fn replay_days(p: &ReplayParams) -> Result<Option<u64>, ApiError> {
    match p.replay_days {
        Some(d) if d == 0 || d > 365 => Err(ApiError::bad_request("replay_days: 1 to 365")),
        d => Ok(d),
    }
}

#[utoipa::path(get, path = "/api/v1/log/{reference}/diagnosis", params(("reference" = String, Path), ReplayParams),
    responses((status = 200, body = DiagnosisReport), (status = 403), (status = 404)))]
pub async fn log_diagnosis(
    axum::extract::State(web): axum::extract::State<AppState>,
    caller: crate::Caller,
    axum::extract::Path(reference): axum::extract::Path<String>,
    axum::extract::Query(p): axum::extract::Query<ReplayParams>,
) -> Result<axum::Json<DiagnosisReport>, ApiError> {
    let days = replay_days(&p)?;
    Ok(axum::Json(diagnose_target(&web, &caller.principal, Target::Log(reference), days).await?))
}

#[utoipa::path(get, path = "/api/v1/quarantine/{id}/diagnosis", params(("id" = i64, Path), ReplayParams),
    responses((status = 200, body = DiagnosisReport), (status = 403), (status = 404)))]
pub async fn quarantine_diagnosis(
    axum::extract::State(web): axum::extract::State<AppState>,
    caller: crate::Caller,
    axum::extract::Path(id): axum::extract::Path<i64>,
    axum::extract::Query(p): axum::extract::Query<ReplayParams>,
) -> Result<axum::Json<DiagnosisReport>, ApiError> {
    let days = replay_days(&p)?;
    Ok(axum::Json(diagnose_target(&web, &caller.principal, Target::Quarantine(id), days).await?))
}

#[utoipa::path(post, path = "/api/v1/diagnose", params(ScanParams),
    request_body(content = Vec<u8>, content_type = "message/rfc822", description = "The raw message, with or without our headers"),
    responses((status = 200, body = DiagnosisReport), (status = 400), (status = 403)))]
pub async fn diagnose_posted(
    axum::extract::State(web): axum::extract::State<AppState>,
    caller: crate::Caller,
    axum::extract::Query(params): axum::extract::Query<ScanParams>,
    body: axum::body::Bytes,
) -> Result<axum::Json<DiagnosisReport>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("POST the raw message as the request body"));
    }
    Ok(axum::Json(diagnose_target(&web, &caller.principal, Target::Raw(body.to_vec(), params), None).await?))
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ApplyRequest {
    /// A fix's `change`, as a diagnosis gave it.
    #[schema(value_type = Object)]
    pub change: Change,
    /// For a report: the quarantined copy to learn.
    pub quarantine_id: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/diagnosis/apply", request_body = ApplyRequest,
    responses((status = 200, body = Object), (status = 400), (status = 403)))]
pub async fn apply(
    axum::extract::State(web): axum::extract::State<AppState>,
    caller: crate::Caller,
    axum::Json(req): axum::Json<ApplyRequest>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let result = apply_change(&web, &caller.principal, req.change, req.quarantine_id).await?;
    Ok(axum::Json(serde_json::json!({ "result": result })))
}
