//! The insight queries of `gateway/insights.rs` on PostgreSQL.
