//! What the console's insight pages read from the message log and the quarantine over a time range: the
//! figures of the dashboard, a sender domain's history, the reports users made and what came of them.

use super::Database;
