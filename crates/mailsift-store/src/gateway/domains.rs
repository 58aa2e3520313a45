//! The organisation's domains and their settings, by name. The settings are stored as the JSON the gateway
//! gives (its `DomainConfig`); this crate does not read inside them. Every change bumps the policy version,
//! so a running gateway picks it up with the policy.
//!
//! The organisation's own stored settings (the organisation-wide ASF modes set from the console or
//! `mailsift asf set`) are a row of the same table under the reserved name [`ORGANISATION_ROW`], which is
//! not a domain name: [`Database::domains`] never lists it, [`Database::organisation_settings`] reads it.

use rusqlite::{params, OptionalExtension};

use super::Database;
use crate::StoreError;

/// The reserved name of the organisation's own settings row (no domain name can be `*`).
pub const ORGANISATION_ROW: &str = "*";

impl Database {
    /// The organisation's stored settings JSON (what the gateway gives; this crate does not read it).
    pub fn organisation_settings(&self) -> Result<Option<String>, StoreError> {
        self.domain_get(ORGANISATION_ROW)
    }

    /// Replaces the organisation's stored settings, in one durable transaction that bumps the policy version.
    pub fn organisation_put(&self, settings_json: &str, now: i64) -> Result<(), StoreError> {
        self.domain_put(ORGANISATION_ROW, settings_json, now)
    }

    /// Every stored domain: (name, settings JSON), by name (never the organisation's row).
    pub fn domains(&self) -> Result<Vec<(String, String)>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.call(|c| {
                Ok(c.query("SELECT name, settings FROM domains WHERE name <> '*' ORDER BY name", &[])?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect())
            });
        }
        self.read_rows(|c| {
            let mut stmt = c.prepare("SELECT name, settings FROM domains WHERE name <> '*' ORDER BY name")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// One domain's settings JSON.
    pub fn domain_get(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.trim().to_ascii_lowercase();
        if let Some(pg) = &self.pg {
            return pg.call(move |c| {
                Ok(c.query_opt("SELECT settings FROM domains WHERE name = $1", &[&name])?.map(|r| r.get(0)))
            });
        }
        self.read_rows(move |c| {
            c.query_row("SELECT settings FROM domains WHERE name = ?1", [name], |r| r.get(0)).optional()
        })
    }

    /// Adds or replaces a domain's settings (the name lower-cased), in one durable transaction.
    pub fn domain_put(&self, name: &str, settings_json: &str, now: i64) -> Result<(), StoreError> {
        let (name, json) = (name.trim().to_ascii_lowercase(), settings_json.to_string());
        if let Some(pg) = &self.pg {
            return pg.transaction(move |tx| {
                tx.execute(
                    "INSERT INTO domains (name, settings, updated) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET settings = excluded.settings, updated = excluded.updated",
                    &[&name, &json, &now],
                )?;
                tx.execute("UPDATE policy_version SET version = version + 1 WHERE id = 1", &[])?;
                Ok(())
            });
        }
        self.write(move |c| {
            c.execute(
                "INSERT INTO domains (name, settings, updated) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(name) DO UPDATE SET settings = excluded.settings, updated = excluded.updated",
                params![name, json, now],
            )?;
            c.execute("UPDATE policy_version SET version = version + 1 WHERE id = 1", [])?;
            Ok(())
        })
    }

    /// Removes a domain; false when there was none (the organisation's row is not a domain).
    pub fn domain_remove(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.trim().to_ascii_lowercase();
        if name == ORGANISATION_ROW {
            return Ok(false);
        }
        if let Some(pg) = &self.pg {
            return pg.transaction(move |tx| {
                let n = tx.execute("DELETE FROM domains WHERE name = $1", &[&name])?;
                if n > 0 {
                    tx.execute("UPDATE policy_version SET version = version + 1 WHERE id = 1", &[])?;
                }
                Ok(n > 0)
            });
        }
        self.write(move |c| {
            let n = c.execute("DELETE FROM domains WHERE name = ?1", [name])?;
            if n > 0 {
                c.execute("UPDATE policy_version SET version = version + 1 WHERE id = 1", [])?;
            }
            Ok(n > 0)
        })
    }
}
