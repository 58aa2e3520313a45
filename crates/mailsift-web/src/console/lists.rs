//! An end user's own allowed and blocked senders.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
}
