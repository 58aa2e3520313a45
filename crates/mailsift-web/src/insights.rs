//! The service behind the console's insight pages (dashboard, sender domains, reports) and their API:
//! store queries scoped to the caller, shaped for a page, with no HTTP types.
