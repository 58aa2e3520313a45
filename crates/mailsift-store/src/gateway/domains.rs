//! The organisation's domains and their settings, by name. The settings are stored as the JSON the gateway
//! gives (its `DomainConfig`); this crate does not read inside them. Every change bumps the policy version,
//! so a running gateway picks it up with the policy.

use rusqlite::{params, OptionalExtension};

use super::Database;
use crate::StoreError;

impl Database {
    /// Every stored domain: (name, settings JSON), by name.
    pub fn domains(&self) -> Result<Vec<(String, String)>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.call(|c| {
                Ok(c.query("SELECT name, settings FROM domains ORDER BY name", &[])?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect())
            });
        }
        self.read_rows(|c| {
            let mut stmt = c.prepare("SELECT name, settings FROM domains ORDER BY name")?;
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

    /// Removes a domain; false when there was none.
    pub fn domain_remove(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.trim().to_ascii_lowercase();
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
