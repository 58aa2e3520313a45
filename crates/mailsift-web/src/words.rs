//! Plain words for people who are not mail administrators: why a message was held, what its authentication
//! says ("this message claims to come from acme.test but was not sent by acme.test's servers"), shown in the
//! quarantine, the digest and a message's page.
