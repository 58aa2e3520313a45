//! A page per sender domain: what it sent, how it authenticates, what we did with it, what users said.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
}
