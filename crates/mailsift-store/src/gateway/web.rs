//! The web console's shared state, so that several nodes on one PostgreSQL database act as one installation:
//! console sessions, the failed-login counts, and (on PostgreSQL) the key that signs links and API tokens.
//!
//! - **Sessions** are rows keyed by a hash of the session id that the caller computes (the web crate uses
//!   SHA-256): the cookie's value is never stored, so someone who can read the database cannot log in with
//!   what is in it. A row holds the account name (to end all of an account's sessions), the caller's
//!   identity as the web serialized it (opaque here), the CSRF token and the expiry in Unix seconds. Expired
//!   rows are refused when read and deleted whenever a session starts.
//! - **Failed-login counts** are fixed windows per key (the web crate's keys: a client address, an account
//!   name): a count starts at the first failure and lapses `window` seconds later. Taking an attempt is one
//!   transaction (SQLite's writer, a row lock on PostgreSQL), so attempts sent to several nodes at the same
//!   moment are counted one after another and cannot all slip under the limit. Lapsed rows are deleted as
//!   attempts are taken, so the table holds at most the keys seen in one window.
//! - **The signing key**, on PostgreSQL only: the first node to ask stores its candidate, every node reads
//!   back the one stored, so all agree. On SQLite there is one machine and the web keeps its key in a file
//!   of the data directory (`web.key`) as before. Whoever can read this table can sign tokens: the database
//!   credentials guard it as they guard the accounts.
//!
//! What it is not: authentication (passwords, CSRF checks, token formats are the web crate's) nor the
//! policy of how many failures are too many (the caller passes its limit and window).

use rusqlite::{params, OptionalExtension};

use super::Database;
use crate::StoreError;

/// A console session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// The account's name as the web keys it (lowercased here); what [`Database::web_sessions_remove_account`]
    /// matches.
    pub account: String,
    /// The caller's identity, serialized by the web crate; opaque to the store.
    pub principal: String,
    pub csrf: String,
    /// Unix seconds after which the session is refused.
    pub expires: i64,
}

/// What [`Database::web_throttle_take`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleTake {
    /// The attempt was counted; this many are counted in the current window now.
    Counted(u32),
    /// The key had used up its attempts; nothing counted. Its window started at this Unix second.
    Full { since: i64 },
}

/// The row name of the link and API token signing key in `web_secrets`.
pub(crate) const SIGNING_KEY: &str = "signing key";

fn account_key(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

impl Database {
    // ---- sessions ----

    /// Stores a new session under `id_hash` (a hash of its id; never the id itself), deleting expired ones.
    pub fn web_session_create(&self, id_hash: &str, session: &WebSession, now: i64) -> Result<(), StoreError> {
        let id_hash = id_hash.to_string();
        let s = WebSession { account: account_key(&session.account), ..session.clone() };
        if let Some(pg) = &self.pg {
            return pg.transaction(move |tx| {
                tx.execute("DELETE FROM web_sessions WHERE expires <= $1", &[&now])?;
                tx.execute(
                    "INSERT INTO web_sessions (id_hash, account, principal, csrf, expires) VALUES ($1, $2, $3, $4, $5)",
                    &[&id_hash, &s.account, &s.principal, &s.csrf, &s.expires],
                )?;
                Ok(())
            });
        }
        self.write(move |c| {
            c.execute("DELETE FROM web_sessions WHERE expires <= ?1", [now])?;
            c.execute(
                "INSERT INTO web_sessions (id_hash, account, principal, csrf, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id_hash, s.account, s.principal, s.csrf, s.expires],
            )?;
            Ok(())
        })
    }

    /// The session stored under `id_hash`, if it has not expired at `now`.
    pub fn web_session_get(&self, id_hash: &str, now: i64) -> Result<Option<WebSession>, StoreError> {
        let id_hash = id_hash.to_string();
        const SQL: &str =
            "SELECT account, principal, csrf, expires FROM web_sessions WHERE id_hash = $1 AND expires > $2";
        if let Some(pg) = &self.pg {
            return pg.call(move |c| {
                c.query_opt(SQL, &[&id_hash, &now])?
                    .map(|r| {
                        Ok(WebSession {
                            account: r.try_get(0)?,
                            principal: r.try_get(1)?,
                            csrf: r.try_get(2)?,
                            expires: r.try_get(3)?,
                        })
                    })
                    .transpose()
            });
        }
        self.read(move |c| {
            c.prepare_cached(&SQL.replace('$', "?"))?
                .query_row(params![id_hash, now], |r| {
                    Ok(WebSession { account: r.get(0)?, principal: r.get(1)?, csrf: r.get(2)?, expires: r.get(3)? })
                })
                .optional()
        })
    }

    /// Ends one session (a logout); false when there was none.
    pub fn web_session_remove(&self, id_hash: &str) -> Result<bool, StoreError> {
        let id_hash = id_hash.to_string();
        if let Some(pg) = &self.pg {
            return pg.call(move |c| Ok(c.execute("DELETE FROM web_sessions WHERE id_hash = $1", &[&id_hash])? > 0));
        }
        self.write(move |c| Ok(c.execute("DELETE FROM web_sessions WHERE id_hash = ?1", [id_hash])? > 0))
    }

    /// Ends every session of an account (its name ignoring ASCII case), after a password change or a
    /// removal; returns how many ended.
    pub fn web_sessions_remove_account(&self, name: &str) -> Result<usize, StoreError> {
        let account = account_key(name);
        if let Some(pg) = &self.pg {
            return pg
                .call(move |c| Ok(c.execute("DELETE FROM web_sessions WHERE account = $1", &[&account])? as usize));
        }
        self.write(move |c| c.execute("DELETE FROM web_sessions WHERE account = ?1", [account]))
    }

    // ---- failed-login counts ----

    /// Counts one attempt for `key` unless it has `limit` counted in its live window already. A window
    /// lapses `window` seconds after its first count; a lapsed one starts again at `now`.
    pub fn web_throttle_take(&self, key: &str, limit: u32, window: i64, now: i64) -> Result<ThrottleTake, StoreError> {
        let key = key.to_string();
        let limit = i64::from(limit);
        let lapsed = now - window;
        if let Some(pg) = &self.pg {
            return pg.transaction(move |tx| {
                tx.execute("DELETE FROM web_login_failures WHERE since <= $1", &[&lapsed])?;
                // The row first (if new), then its lock: a second node taking the same key waits here.
                tx.execute(
                    "INSERT INTO web_login_failures (key, since, count) VALUES ($1, $2, 0) ON CONFLICT (key) DO NOTHING",
                    &[&key, &now],
                )?;
                let row = tx.query_one("SELECT since, count FROM web_login_failures WHERE key = $1 FOR UPDATE", &[&key])?;
                let (since, count): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                if count >= limit {
                    return Ok(ThrottleTake::Full { since });
                }
                tx.execute("UPDATE web_login_failures SET count = count + 1 WHERE key = $1", &[&key])?;
                Ok(ThrottleTake::Counted((count + 1) as u32))
            });
        }
        self.write(move |c| {
            c.execute("DELETE FROM web_login_failures WHERE since <= ?1", [lapsed])?;
            c.execute(
                "INSERT INTO web_login_failures (key, since, count) VALUES (?1, ?2, 0) ON CONFLICT (key) DO NOTHING",
                params![key, now],
            )?;
            let (since, count): (i64, i64) =
                c.query_row("SELECT since, count FROM web_login_failures WHERE key = ?1", [&key], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            if count >= limit {
                return Ok(ThrottleTake::Full { since });
            }
            c.execute("UPDATE web_login_failures SET count = count + 1 WHERE key = ?1", [&key])?;
            Ok(ThrottleTake::Counted((count + 1) as u32))
        })
    }

    /// The attempts counted for `key` in its live window (0 when none or lapsed).
    pub fn web_throttle_count(&self, key: &str, window: i64, now: i64) -> Result<u32, StoreError> {
        let key = key.to_string();
        let lapsed = now - window;
        if let Some(pg) = &self.pg {
            return pg.call(move |c| {
                let row = c.query_opt(
                    "SELECT count FROM web_login_failures WHERE key = $1 AND since > $2",
                    &[&key, &lapsed],
                )?;
                Ok(row.map(|r| r.try_get::<_, i64>(0)).transpose()?.unwrap_or(0) as u32)
            });
        }
        self.read(move |c| {
            let n: Option<i64> = c
                .prepare_cached("SELECT count FROM web_login_failures WHERE key = ?1 AND since > ?2")?
                .query_row(params![key, lapsed], |r| r.get(0))
                .optional()?;
            Ok(n.unwrap_or(0) as u32)
        })
    }

    /// Gives back one attempt counted for `key` (a login that succeeded), never below zero.
    pub fn web_throttle_give_back(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        const SQL: &str = "UPDATE web_login_failures SET count = count - 1 WHERE key = $1 AND count > 0";
        if let Some(pg) = &self.pg {
            return pg.transaction(move |tx| tx.execute(SQL, &[&key]).map(|_| ()));
        }
        self.write(move |c| c.execute(&SQL.replace('$', "?"), [key]).map(|_| ()))
    }

    /// Forgets every attempt counted for `key`.
    pub fn web_throttle_clear(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        if let Some(pg) = &self.pg {
            return pg.call(move |c| c.execute("DELETE FROM web_login_failures WHERE key = $1", &[&key]).map(|_| ()));
        }
        self.write(move |c| c.execute("DELETE FROM web_login_failures WHERE key = ?1", [key]).map(|_| ()))
    }

    // ---- the signing key ----

    /// The installation's link and API token signing key, on PostgreSQL: `candidate` is stored if no node
    /// stored one before, and the stored key is returned, so every node gets the same. `None` on SQLite,
    /// where the web keeps its key in the data directory.
    pub fn web_signing_key(&self, candidate: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(pg) = &self.pg else { return Ok(None) };
        let candidate = candidate.to_vec();
        pg.call(move |c| {
            c.execute(
                "INSERT INTO web_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&SIGNING_KEY, &candidate],
            )?;
            c.query_one("SELECT value FROM web_secrets WHERE name = $1", &[&SIGNING_KEY])?.try_get(0)
        })
        .map(Some)
    }
}
