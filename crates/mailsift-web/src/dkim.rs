//! DKIM signing as the console and API show it: the keys, and whether each published record matches.
