//! DMARC aggregate reports received for our domains, summarised: which sources send as our domains and whether they pass.
