//! The outbound queue as the API shows it: list, retry, remove.
