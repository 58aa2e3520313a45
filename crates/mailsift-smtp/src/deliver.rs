//! Where the end-of-data code used to live: it is the gateway core's now ([`mailsift_gateway::effects`],
//! [`mailsift_gateway::judge`], [`mailsift_gateway::route`], [`mailsift_gateway::log`]). Re-exported for
//! callers not yet switched.

pub use mailsift_gateway::delivery::deliver;
pub use mailsift_gateway::disposition::{answer, Answer};
pub use mailsift_gateway::effects::{process, quarantine};
pub use mailsift_gateway::headers::{find_header_end, hop_count, tag_subject};
pub use mailsift_gateway::judge::{judge, log_verdict, Judged, Meta};
pub use mailsift_gateway::log::{append_log, commit_log, direction_name, door_log_entry, relay_denied_entry};
pub use mailsift_gateway::route::{maildir_deliver, maildir_name, sweep_maildir_tmp, Route};
