//! The policy (filter rules, allowed and blocked senders) on PostgreSQL: the statements behind
//! `gateway/policy.rs`'s store, which plans every change the same way for both backends.
//!
//! A change is applied only if the policy is still at the version it was planned from: the version row is
//! locked (`FOR UPDATE`) first, so of two nodes changing the policy at once the second waits, finds the
//! version moved, and plans again; no change is lost and none applied twice.

use postgres::{GenericClient, Transaction};

use crate::gateway::policy::{Applied, Plan, RawEntry, RawRule, RuleWrite};

pub(crate) fn read_version(c: &mut impl GenericClient) -> Result<i64, postgres::Error> {
    Ok(c.query_one("SELECT version FROM policy_version WHERE id = 1", &[])?.get(0))
}

/// The version and every rule and entry, read in one snapshot so they agree.
pub(crate) fn read_raw(c: &mut postgres::Client) -> Result<(i64, Vec<RawRule>, Vec<RawEntry>), postgres::Error> {
    let mut tx =
        c.build_transaction().isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true).start()?;
    let version = read_version(&mut tx)?;
    let rules = tx
        .query("SELECT id, rule, created, updated, last_matched FROM policy_rules ORDER BY position, id", &[])?
        .iter()
        .map(|r| RawRule { id: r.get(0), json: r.get(1), created: r.get(2), updated: r.get(3), last_matched: r.get(4) })
        .collect();
    let entries = tx
        .query("SELECT id, list, entry, created, last_matched FROM policy_list_entries ORDER BY id", &[])?
        .iter()
        .map(|r| RawEntry { id: r.get(0), list: r.get(1), json: r.get(2), created: r.get(3), last_matched: r.get(4) })
        .collect();
    tx.commit()?;
    Ok((version, rules, entries))
}

/// One rule by its name key, with its position.
pub(crate) fn rule_get(c: &mut postgres::Client, key: &str) -> Result<Option<(RawRule, i64)>, postgres::Error> {
    Ok(c.query_opt(
        "SELECT id, rule, created, updated, last_matched, \
         (SELECT count(*) FROM policy_rules o WHERE o.position < r.position \
          OR (o.position = r.position AND o.id < r.id)) \
         FROM policy_rules r WHERE name_key = $1",
        &[&key],
    )?
    .map(|r| {
        (
            RawRule { id: r.get(0), json: r.get(1), created: r.get(2), updated: r.get(3), last_matched: r.get(4) },
            r.get::<_, i64>(5),
        )
    }))
}

/// Writes a planned change inside the caller's transaction, if the version is still the one planned from.
pub(crate) fn apply(tx: &mut Transaction<'_>, p: &Plan) -> Result<Applied, postgres::Error> {
    let version: i64 = tx.query_one("SELECT version FROM policy_version WHERE id = 1 FOR UPDATE", &[])?.get(0);
    if version != p.expect_version {
        return Ok(Applied::Stale);
    }
    if p.is_empty() {
        return Ok(Applied::Done { version, rule_ids: Vec::new(), entry_ids: Vec::new() });
    }
    if !p.delete_rules.is_empty() {
        tx.execute("DELETE FROM policy_rules WHERE id = ANY($1)", &[&p.delete_rules])?;
    }
    let mut rule_ids = Vec::new();
    for w in &p.rules {
        match w {
            RuleWrite::Insert { position, row } => {
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO policy_rules (position, name, name_key, enabled, direction, rule, created, updated) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
                        &[&(*position as i64), &row.name, &row.name_key, &row.enabled, &row.direction, &row.json, &p.now],
                    )?
                    .get(0);
                rule_ids.push(id);
            }
            RuleWrite::Update { id, position, row: Some(row) } => {
                tx.execute(
                    "UPDATE policy_rules SET position = $2, name = $3, name_key = $4, enabled = $5, direction = $6, \
                     rule = $7, updated = $8 WHERE id = $1",
                    &[
                        id,
                        &(*position as i64),
                        &row.name,
                        &row.name_key,
                        &row.enabled,
                        &row.direction,
                        &row.json,
                        &p.now,
                    ],
                )?;
            }
            RuleWrite::Update { id, position, row: None } => {
                tx.execute("UPDATE policy_rules SET position = $2 WHERE id = $1", &[id, &(*position as i64)])?;
            }
        }
    }
    if !p.delete_entries.is_empty() {
        tx.execute("DELETE FROM policy_list_entries WHERE id = ANY($1)", &[&p.delete_entries])?;
    }
    let mut entry_ids = Vec::new();
    for e in &p.insert_entries {
        let id: i64 = tx
            .query_one(
                "INSERT INTO policy_list_entries (list, level, recipient, sender, expires, entry, created) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[&e.list, &e.level, &e.recipient, &e.sender, &e.expires, &e.json, &p.now],
            )?
            .get(0);
        entry_ids.push(id);
    }
    tx.execute("UPDATE policy_version SET version = version + 1 WHERE id = 1", &[])?;
    Ok(Applied::Done { version: version + 1, rule_ids, entry_ids })
}

/// Records when rules and entries last matched (never moving a time backwards).
pub(crate) fn touch(
    c: &mut impl GenericClient,
    entries: &[i64],
    rules: &[String],
    now: i64,
) -> Result<(), postgres::Error> {
    if !entries.is_empty() {
        c.execute(
            "UPDATE policy_list_entries SET last_matched = $2 \
             WHERE id = ANY($1) AND (last_matched IS NULL OR last_matched < $2)",
            &[&entries, &now],
        )?;
    }
    if !rules.is_empty() {
        c.execute(
            "UPDATE policy_rules SET last_matched = $2 \
             WHERE name_key = ANY($1) AND (last_matched IS NULL OR last_matched < $2)",
            &[&rules, &now],
        )?;
    }
    Ok(())
}
