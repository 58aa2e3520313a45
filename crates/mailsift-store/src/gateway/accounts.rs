//! Who may use the web console and the API, and the console's small key/value settings.
//!
//! Three roles: administrators see everything; domain administrators see the mail of their domains only (the web
//! layer passes [`Account::domains`] as the scope of its log and quarantine queries); users are end users who
//! reach their own quarantine, their login name being their address. Names are unique ignoring case.
//!
//! What it is not: authentication. The password arrives already hashed (a PHC string the web crate makes and
//! verifies); an empty hash means the account has no password login and gets in only through digest links.
//! Sessions, rate limits and tokens belong to the web crate.

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::filter::normalize_domains;
use super::Database;
use crate::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, every domain.
    Admin,
    /// The mail of [`Account::domains`] only.
    DomainAdmin,
    /// An end user: their own quarantine.
    User,
}

impl Role {
    /// The name stored and serialized: `admin`, `domain_admin`, `user`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::DomainAdmin => "domain_admin",
            Role::User => "user",
        }
    }

    /// The role named by [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "domain_admin" => Some(Role::DomainAdmin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Never reused, even after a removal.
    pub id: i64,
    /// The login name, as added (trimmed); for a [`Role::User`], their email address, lowercased.
    pub name: String,
    pub role: Role,
    /// A [`Role::DomainAdmin`]'s domains, lowercased (never empty for one); empty for the other roles.
    pub domains: Vec<String>,
    /// An opaque PHC string made by the caller; empty means no password login (digest links only). Never
    /// serialized, so an account can be sent to a browser as it is.
    #[serde(skip_serializing, default)]
    pub password_hash: String,
    /// Unix seconds.
    pub created: i64,
    pub disabled: bool,
}

const COLUMNS: &str = "id, name, role, domains, password_hash, created, disabled";

impl Database {
    /// Adds an account; returns its id. The name is trimmed (and lowercased for a user); a name that exists
    /// already, ignoring case, is refused with [`StoreError::Exists`]. A domain administrator needs at least
    /// one domain; the other roles take none, because a scope that is silently ignored is a trap.
    pub fn account_add(
        &self,
        name: &str,
        role: Role,
        domains: &[String],
        password_hash: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let name = account_name(name, role);
        let invalid = |reason: String| StoreError::Invalid { path: self.path().display().to_string(), reason };
        if name.is_empty() {
            return Err(invalid("an account needs a name".into()));
        }
        let domains = normalize_domains(domains);
        match role {
            Role::DomainAdmin if domains.is_empty() => {
                return Err(invalid(format!("domain administrator {name}: at least one domain is needed")))
            }
            Role::Admin | Role::User if !domains.is_empty() => {
                return Err(invalid(format!(
                    "account {name}: only a domain administrator has domains (this one is {})",
                    role.as_str()
                )))
            }
            _ => {}
        }
        let domains_json = serde_json::to_string(&domains).expect("strings serialize");
        let (key, hash, stored_name) = (name_key(&name), password_hash.to_string(), name.clone());
        let id = if let Some(pg) = &self.pg {
            // A transaction: an insert that committed is never run again to report a conflict with itself.
            pg.transaction(move |c| {
                let row = c.query_opt(
                    "INSERT INTO accounts (name, name_key, role, domains, password_hash, created, disabled) \
                     VALUES ($1, $2, $3, $4, $5, $6, FALSE) ON CONFLICT (name_key) DO NOTHING RETURNING id",
                    &[&stored_name, &key, &role.as_str(), &domains, &hash, &now],
                )?;
                Ok(row.map(|r| r.get::<_, i64>(0)))
            })?
        } else {
            self.write(move |c| {
                let n = c.execute(
                    "INSERT INTO accounts (name, name_key, role, domains, password_hash, created, disabled) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0) ON CONFLICT (name_key) DO NOTHING",
                    params![stored_name, key, role.as_str(), domains_json, hash, now],
                )?;
                Ok((n == 1).then(|| c.last_insert_rowid()))
            })?
        };
        id.ok_or_else(|| StoreError::Exists {
            path: self.path().display().to_string(),
            what: format!("an account named {name}"),
        })
    }

    /// The account with this name, ignoring case.
    pub fn account_get(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let key = name_key(name.trim());
        if let Some(pg) = &self.pg {
            let sql = format!("SELECT {COLUMNS} FROM accounts WHERE name_key = $1");
            return pg.call(move |c| c.query_opt(&sql, &[&key])?.map(|r| pg_account(&r)).transpose());
        }
        self.read_rows(move |c| {
            c.prepare_cached(&format!("SELECT {COLUMNS} FROM accounts WHERE name_key = ?1"))?
                .query_row([key], read_account)
                .optional()
        })
    }

    pub fn account_by_id(&self, id: i64) -> Result<Option<Account>, StoreError> {
        if let Some(pg) = &self.pg {
            let sql = format!("SELECT {COLUMNS} FROM accounts WHERE id = $1");
            return pg.call(move |c| c.query_opt(&sql, &[&id])?.map(|r| pg_account(&r)).transpose());
        }
        self.read_rows(move |c| {
            c.prepare_cached(&format!("SELECT {COLUMNS} FROM accounts WHERE id = ?1"))?
                .query_row([id], read_account)
                .optional()
        })
    }

    /// Every account, by name (ignoring case).
    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        if let Some(pg) = &self.pg {
            let sql = format!("SELECT {COLUMNS} FROM accounts ORDER BY name_key");
            return pg.call(move |c| c.query(&sql, &[])?.iter().map(pg_account).collect());
        }
        self.read_rows(|c| {
            let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM accounts ORDER BY name_key"))?;
            let rows = stmt.query_map([], read_account)?;
            rows.collect()
        })
    }

    /// Replaces the password hash (empty: no password login); false when there is no such account.
    pub fn account_set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        let (key, hash) = (name_key(name.trim()), password_hash.to_string());
        if let Some(pg) = &self.pg {
            return pg.call(move |c| {
                Ok(c.execute("UPDATE accounts SET password_hash = $2 WHERE name_key = $1", &[&key, &hash])? == 1)
            });
        }
        self.write(move |c| {
            Ok(c.execute("UPDATE accounts SET password_hash = ?2 WHERE name_key = ?1", params![key, hash])? == 1)
        })
    }

    /// Disables or re-enables an account; false when there is no such account.
    pub fn account_set_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError> {
        let key = name_key(name.trim());
        if let Some(pg) = &self.pg {
            return pg.call(move |c| {
                Ok(c.execute("UPDATE accounts SET disabled = $2 WHERE name_key = $1", &[&key, &disabled])? == 1)
            });
        }
        self.write(move |c| {
            Ok(c.execute("UPDATE accounts SET disabled = ?2 WHERE name_key = ?1", params![key, disabled])? == 1)
        })
    }

    /// Removes an account; false when there was none.
    pub fn account_remove(&self, name: &str) -> Result<bool, StoreError> {
        let key = name_key(name.trim());
        if let Some(pg) = &self.pg {
            return pg.call(move |c| Ok(c.execute("DELETE FROM accounts WHERE name_key = $1", &[&key])? == 1));
        }
        self.write(move |c| Ok(c.execute("DELETE FROM accounts WHERE name_key = ?1", [key])? == 1))
    }

    /// A value from the settings table.
    pub fn setting_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        if let Some(pg) = &self.pg {
            return pg.call(move |c| {
                Ok(c.query_opt("SELECT value FROM settings WHERE key = $1", &[&key])?.map(|r| r.get(0)))
            });
        }
        self.read_rows(move |c| {
            c.prepare_cached("SELECT value FROM settings WHERE key = ?1")?.query_row([key], |r| r.get(0)).optional()
        })
    }

    /// Sets a value in the settings table (adding or replacing it), durably.
    pub fn setting_put(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        if let Some(pg) = &self.pg {
            return pg.call(move |c| {
                c.execute(
                    "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[&key, &value],
                )
                .map(|_| ())
            });
        }
        self.write(move |c| {
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
    }
}

/// The name as stored: trimmed, and for a user (an address) lowercased.
fn account_name(name: &str, role: Role) -> String {
    match role {
        Role::User => name.trim().to_lowercase(),
        Role::Admin | Role::DomainAdmin => name.trim().to_string(),
    }
}

/// What names are compared by.
fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// An account row as PostgreSQL returns it (domains an array there).
fn pg_account(r: &postgres::Row) -> Result<Account, postgres::Error> {
    let role: String = r.try_get(2)?;
    Ok(Account {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        // A role this build does not know reads as the least privileged one rather than failing the listing.
        role: Role::parse(&role).unwrap_or(Role::User),
        domains: r.try_get(3)?,
        password_hash: r.try_get(4)?,
        created: r.try_get(5)?,
        disabled: r.try_get(6)?,
    })
}

fn read_account(r: &Row<'_>) -> rusqlite::Result<Account> {
    let role: String = r.get(2)?;
    let role = Role::parse(&role).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown role {role:?}").into(),
        )
    })?;
    let domains: String = r.get(3)?;
    let domains = serde_json::from_str(&domains)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into()))?;
    Ok(Account {
        id: r.get(0)?,
        name: r.get(1)?,
        role,
        domains,
        password_hash: r.get(4)?,
        created: r.get(5)?,
        disabled: r.get(6)?,
    })
}
