//! Reports: the false-positive and false-negative reports users made, each with its message and what came
//! of it.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
}
