fn main() {
    for p in std::env::args().skip(1) {
        let raw = std::fs::read(&p).unwrap();
        let m = mailsift_engine::Message::parse(&raw, 1 << 24);
        let f = mailsift_engine::classify::features(&m);
        println!(
            "{p}: {} ids, {} singles, body {} bytes, subject {:?}",
            f.ids.len(),
            f.singles,
            m.body_text.len(),
            m.subject
        );
        println!("{}", &m.body_text[..m.body_text.len().min(600)]);
    }
}
