//! Heuristics that pointed the wrong way (fired on legitimate mail at least as often as on spam), each
//! checked on a real message where it must not fire and a real spam where it must. Messages from
//! `../shared/testdata/messages` (see its README for where each came from).

use std::path::PathBuf;

use mailsift_engine::{Engine, EngineConfig, Envelope, Evidence};

fn testdata(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/messages").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn symbols(raw: &str) -> Vec<String> {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let v = engine.scan(raw.as_bytes(), &Envelope::default(), &Evidence::default());
    v.symbols.iter().map(|s| s.name.clone()).collect()
}

/// A real Mailman post (the Wine announcement list) whose author writes from a free-mail address: the list
/// keeps only its own Received lines, so the provider never shows. Not a forgery.
#[test]
fn forged_freemail_received_leaves_mailing_list_posts_alone() {
    let post = testdata("sa_ham_mailman.eml");
    let from = post.lines().find(|l| l.starts_with("From: ")).expect("a From line").to_string();
    let freemail = post.replacen(&from, "From: Alexandre Julliard <ajulliard@hotmail.com>", 1);
    let syms = symbols(&freemail);
    assert!(!syms.iter().any(|s| s == "FORGED_FREEMAIL_RCVD"), "{syms:?}");
    // The same post without its list headers is what the rule is for: a free-mail From that never passed
    // through the provider.
    let unlisted: String = freemail
        .split_inclusive('\n')
        .filter(|l| {
            !["List-Id:", "List-Post:", "X-BeenThere:", "Mailing-List:"]
                .iter()
                .any(|h| l.to_ascii_lowercase().starts_with(&h.to_ascii_lowercase()))
        })
        .collect();
    assert!(symbols(&unlisted).iter().any(|s| s == "FORGED_FREEMAIL_RCVD"), "{:?}", symbols(&unlisted));
    // A real spam with a forged free-mail From still gets it.
    let spam = symbols(&testdata("sa_spam_001.eml"));
    assert!(spam.iter().any(|s| s == "FORGED_FREEMAIL_RCVD"), "{spam:?}");
}
