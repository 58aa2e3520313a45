//! Shared reputation in the gateway's PostgreSQL database (the `reputation` table, schema step
//! "reputation"), through the gateway store's own connection threads ([`PgStore`]).
//!
//! A batch is one upsert of arrays: the fold happens in the statement, on the row the statement has locked,
//! so two nodes adding to one identity at once both count (the second waits for the first's row and folds
//! onto it). Identities nobody added to for 16 half-lives are pruned, once an hour, by each node's writer.
//! The fold mirrors [`super::shared::Row`]'s merge: both sides decayed to the later time, added.

use super::shared::{Remote, Row, MAX_HALF_LIVES};
use super::{kind_from, Identity};
use crate::pg::PgStore;
use crate::StoreError;

/// `$6` is the half-life in seconds, `$7` the cap on half-lives (see [`MAX_HALF_LIVES`]).
const UPSERT: &str = "
INSERT INTO reputation AS r (kind, key, spam, ham, updated)
SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[], $5::int8[])
ON CONFLICT (kind, key) DO UPDATE SET
    spam = r.spam * power(0.5, least((greatest(r.updated, excluded.updated) - r.updated) / $6::float8, $7::float8))
         + excluded.spam
           * power(0.5, least((greatest(r.updated, excluded.updated) - excluded.updated) / $6::float8, $7::float8)),
    ham = r.ham * power(0.5, least((greatest(r.updated, excluded.updated) - r.updated) / $6::float8, $7::float8))
        + excluded.ham
          * power(0.5, least((greatest(r.updated, excluded.updated) - excluded.updated) / $6::float8, $7::float8)),
    updated = greatest(r.updated, excluded.updated)";

const FETCH: &str = "
SELECT k.i, r.spam, r.ham, r.updated
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k (kind, key, i)
JOIN reputation r ON r.kind = k.kind AND r.key = k.key";

pub(super) struct PgRemote {
    pg: PgStore,
    half_life_secs: f64,
    target: String,
    /// Until when lookups leave the server alone after it failed to answer (see [`RETRY_AFTER`]).
    resting_until: std::sync::Mutex<Option<std::time::Instant>>,
}

/// After a lookup finds the server unreachable, lookups answer neutral for this long without asking: a
/// database that is down or restarting costs one failed attempt a second, not one per message queued in
/// front of the store's other work (quarantine writes, the log).
pub const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl PgRemote {
    pub(super) fn new(pg: PgStore, half_life_secs: f64) -> PgRemote {
        let target = pg.target().to_string();
        PgRemote { pg, half_life_secs, target, resting_until: std::sync::Mutex::new(None) }
    }
}

fn split(keys: &[Identity]) -> (Vec<String>, Vec<String>) {
    keys.iter().map(|(kind, key)| (kind.as_str().to_string(), key.clone())).unzip()
}

impl Remote for PgRemote {
    fn target(&self) -> &str {
        &self.target
    }

    fn fetch(&self, keys: &[Identity]) -> Result<Vec<Option<Row>>, StoreError> {
        {
            let mut resting = self.resting_until.lock().unwrap_or_else(|p| p.into_inner());
            match *resting {
                Some(until) if std::time::Instant::now() < until => {
                    return Err(StoreError::Postgres {
                        target: self.target.clone(),
                        reason: format!("unreachable a moment ago; trying again within {RETRY_AFTER:?}"),
                        temporary: true,
                    })
                }
                Some(_) => *resting = None,
                None => {}
            }
        }
        let (kinds, names) = split(keys);
        let n = keys.len();
        let answer = self.pg.call(move |c| {
            let mut rows = vec![None; n];
            for r in c.query(FETCH, &[&kinds, &names])? {
                let i: i64 = r.get(0);
                if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| rows.get_mut(i)) {
                    *slot = Some(Row { spam: r.get(1), ham: r.get(2), updated: r.get(3) });
                }
            }
            Ok(rows)
        });
        if let Err(StoreError::Postgres { temporary: true, .. }) = &answer {
            *self.resting_until.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(std::time::Instant::now() + RETRY_AFTER);
        }
        answer
    }

    fn add(&self, additions: &[(Identity, Row)]) -> Result<(), StoreError> {
        let (kinds, names): (Vec<String>, Vec<String>) =
            additions.iter().map(|((kind, key), _)| (kind.as_str().to_string(), key.clone())).unzip();
        let spam: Vec<f64> = additions.iter().map(|(_, r)| r.spam).collect();
        let ham: Vec<f64> = additions.iter().map(|(_, r)| r.ham).collect();
        let updated: Vec<i64> = additions.iter().map(|(_, r)| r.updated).collect();
        let half_life = self.half_life_secs;
        // A transaction, not a plain call: an addition is not safe to run twice, and a transaction is never
        // retried once it reached COMMIT.
        self.pg.transaction(move |tx| {
            tx.execute(UPSERT, &[&kinds, &names, &spam, &ham, &updated, &half_life, &MAX_HALF_LIVES])?;
            Ok(())
        })
    }

    fn reset(&self, key: &str) -> Result<usize, StoreError> {
        let key = key.to_string();
        self.pg.call(move |c| Ok(c.execute("DELETE FROM reputation WHERE key = $1", &[&key])? as usize))
    }

    fn show(&self, key: &str) -> Result<Vec<(Identity, Row)>, StoreError> {
        let key = key.to_string();
        let rows = self.pg.call(move |c| {
            let rows = c.query("SELECT kind, key, spam, ham, updated FROM reputation WHERE key = $1", &[&key])?;
            Ok(rows
                .iter()
                .map(|r| {
                    let row = Row { spam: r.get(2), ham: r.get(3), updated: r.get(4) };
                    (r.get::<_, String>(0), r.get::<_, String>(1), row)
                })
                .collect::<Vec<_>>())
        })?;
        // A kind this build does not know (written by a newer one) is left out, as SQLite's show does.
        Ok(rows.into_iter().filter_map(|(kind, key, row)| Some(((kind_from(&kind)?, key), row))).collect())
    }

    /// One `DELETE` that reads the whole table (no index on `updated`, which every upsert changes): once
    /// an hour per node, off the message path, on the reputation writer.
    fn prune(&self, updated_before: i64) -> Result<u64, StoreError> {
        self.pg.call(move |c| c.execute("DELETE FROM reputation WHERE updated < $1", &[&updated_before]))
    }

    /// Neutral, as Redis: reputation is evidence, and a message waits for it no longer than one attempt.
    fn neutral_when_down(&self) -> bool {
        true
    }
}
