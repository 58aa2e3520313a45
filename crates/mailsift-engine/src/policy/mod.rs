//! The policy stage: the administrator's filter rules and allowed/blocked senders.
//!
//! [`model`] holds the data types (configuration, store and CLI share them); the compiled, evaluated
//! policy follows in this module.

pub mod model;

pub use model::{
    AllowEntry, BlockAction, BlockEntry, Condition, Field, FilterRule, Level, MatchMode, Operator, PolicyConfig,
    RuleAction, RuleDirection, Value,
};
