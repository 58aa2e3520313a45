//! Messages built for tests.

/// One of an organisation's messages as one mail program writes it: `spam` false a desktop client
/// (Thunderbird's header layout), true a spam program (Outlook Express's, with its `$`-separated Message-ID).
/// The words are drawn from the same list on both sides and vary with `n`, so only the form tells the two
/// apart: what the local head (`classify::tokens::local_features`) learns.
pub fn formed(spam: bool, n: usize, to: &str, subject: &str) -> String {
    let words = ["schedule", "report", "offer", "today", "update", "account", "review", "price", "week", "team"];
    let body: Vec<&str> = (0..30).map(|i| words[(n * 3 + i * 7) % words.len()]).collect();
    let head = if spam {
        format!(
            "Message-ID: <000a01c7{n:04x}$4f2b1e30$c0a8{:04x}@pc{n}>\r\nFrom: \"Bert\" <bert{n}@shop.example>\r\n\
             To: <{to}>\r\nSubject: {subject}\r\nDate: Mon, 2 Jun 2025 03:{:02}:00 -0800\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain;\r\n\tcharset=\"windows-1250\"\r\nContent-Transfer-Encoding: 7bit\r\n\
             X-Priority: 3\r\nX-MSMail-Priority: Normal\r\nX-Mailer: Microsoft Outlook Express 6.00.2900.2180\r\n\
             X-MimeOLE: Produced By Microsoft MimeOLE V6.00.2900.2180\r\n",
            n * 13,
            n % 60
        )
    } else {
        format!(
            "From: Alice Example <alice{n}@work.example>\r\nTo: {to}\r\nSubject: {subject}\r\n\
             Date: Mon, 2 Jun 2025 10:{:02}:00 +0200\r\nMessage-ID: <{n:08x}-aaaa-bbbb@work.example>\r\n\
             User-Agent: Mozilla Thunderbird\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=UTF-8; format=flowed\r\nContent-Transfer-Encoding: 7bit\r\n",
            n % 60
        )
    };
    format!("{head}\r\n{}\r\n", body.join(" "))
}
