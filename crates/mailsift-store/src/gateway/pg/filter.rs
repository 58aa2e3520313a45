//! The WHERE clause of the searches on PostgreSQL, built as `gateway/filter.rs` builds SQLite's: the same
//! conditions, PostgreSQL's placeholders (`$1`) and functions. Case folding is `lower()`, which folds beyond
//! ASCII when the database's character type is a UTF-8 locale (`mailsift store check` says when it is not).

use postgres::types::ToSql;

use crate::gateway::msglog::DEFAULT_LIMIT;

type Arg = Box<dyn ToSql + Sync + Send>;

/// A WHERE clause under construction, with its numbered arguments.
#[derive(Default)]
pub(crate) struct Filter {
    conditions: Vec<String>,
    args: Vec<Arg>,
}

impl Filter {
    /// Adds an argument; returns its placeholder.
    pub fn arg(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.args.push(Box::new(v));
        format!("${}", self.args.len())
    }

    pub fn and(&mut self, condition: String) {
        self.conditions.push(condition);
    }

    /// Case-insensitive substring of any of `columns`, when `filter` holds more than blanks.
    pub fn contains(&mut self, columns: &[&str], filter: &Option<String>) {
        let Some(needle) = filter.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_lowercase) else {
            return;
        };
        let a = self.arg(like_pattern(&needle));
        // LIKE on lower(column), which the trigram indexes serve (see the "search indexes" schema step).
        let any: Vec<String> = columns.iter().map(|c| format!("lower({c}) LIKE {a}::text")).collect();
        self.and(format!("({})", any.join(" OR ")));
    }

    /// `column` equals `value` exactly, when given.
    pub fn equals(&mut self, column: &str, value: &Option<String>) {
        if let Some(v) = value {
            let a = self.arg(v.clone());
            self.and(format!("{column} = {a}::text"));
        }
    }

    /// Message-log rows of these domains (none: no condition): a recipient ends with `@domain`, or the row is
    /// outbound and its envelope sender does, ignoring case.
    pub fn log_in_domains(&mut self, domains: &[String]) {
        if domains.is_empty() {
            return;
        }
        let domains = crate::gateway::filter::normalize_domains(domains);
        if domains.is_empty() {
            self.and("FALSE".into());
            return;
        }
        let suffixes = self.arg(domains.iter().map(|d| format!("@{d}")).collect::<Vec<String>>());
        self.and(format!(
            "(EXISTS (SELECT 1 FROM unnest(recipients) r, unnest({suffixes}::text[]) d \
               WHERE right(lower(r), char_length(d)) = d) \
             OR (direction = 'outbound' AND EXISTS (SELECT 1 FROM unnest({suffixes}::text[]) d \
               WHERE right(lower(mail_from), char_length(d)) = d)))"
        ));
    }

    /// `column` between `since` and `until`, both inclusive, each when given.
    pub fn time_range(&mut self, column: &str, since: Option<i64>, until: Option<i64>) {
        if let Some(since) = since {
            let a = self.arg(since);
            self.and(format!("{column} >= {a}"));
        }
        if let Some(until) = until {
            let a = self.arg(until);
            self.and(format!("{column} <= {a}"));
        }
    }

    /// Rows whose `column`, an address, ends with `@domain` for one of these domains, ignoring case (none: no
    /// condition; only blanks: nothing matches, an empty scope never widens to everything).
    pub fn address_in_domains(&mut self, column: &str, domains: &[String]) {
        if domains.is_empty() {
            return;
        }
        let domains = crate::gateway::filter::normalize_domains(domains);
        if domains.is_empty() {
            self.and("FALSE".into());
            return;
        }
        let any: Vec<String> = domains
            .iter()
            .map(|d| {
                let a = self.arg(format!("@{d}"));
                format!("right(lower({column}), char_length({a}::text)) = {a}::text")
            })
            .collect();
        self.and(format!("({})", any.join(" OR ")));
    }

    /// `column`, an address, equals `address` ignoring case, when given.
    pub fn address_is(&mut self, column: &str, address: &Option<String>) {
        let Some(address) = address.as_deref().map(str::trim) else { return };
        let a = self.arg(address.to_lowercase());
        self.and(format!("lower({column}) = {a}::text"));
    }

    pub fn clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }

    /// ` LIMIT ... OFFSET ...` for a page: `limit` 0 means the default page.
    pub fn page(&mut self, limit: usize, offset: usize) -> String {
        let limit = if limit == 0 { DEFAULT_LIMIT } else { limit };
        let l = self.arg(limit.min(i64::MAX as usize) as i64);
        let o = self.arg(offset.min(i64::MAX as usize) as i64);
        format!(" LIMIT {l} OFFSET {o}")
    }

    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

/// `%needle%` for LIKE, with LIKE's own characters in the needle taken literally (`\\` is LIKE's default
/// escape character).
pub(crate) fn like_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_take_the_needle_literally() {
        assert_eq!(super::like_pattern("anna."), "%anna.%");
        assert_eq!(super::like_pattern("50%_off\\x"), "%50\\%\\_off\\\\x%");
    }
}
