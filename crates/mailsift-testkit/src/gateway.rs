//! Starting and stopping a real `mailsift serve` from a test. The binary's path comes in with the command
//! (`env!("CARGO_BIN_EXE_mailsift")` only resolves in the binary crate's own tests).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use crate::Proc;

/// Runs `cmd` (a `mailsift` command with its global options) as `serve` on loopback ports chosen by the
/// system, and returns it with its inbound SMTP address, the first address serve announces. The rest of its
/// standard output is drained in the background.
pub fn serve(mut cmd: Command) -> (Proc, SocketAddr) {
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
    let mut child = Proc(cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start mailsift serve"));
    let mut out = BufReader::new(child.0.stdout.take().expect("serve's standard output"));
    let mut line = String::new();
    out.read_line(&mut line).expect("serve's first line");
    let addr =
        line.rsplit(' ').next().unwrap_or("").trim().parse().unwrap_or_else(|_| panic!("no address in {line:?}"));
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    (child, addr)
}

/// Stops a gateway as its service manager would (SIGTERM: drain, then exit) and waits for it.
pub fn stop(mut p: Proc) {
    let term = Command::new("kill").args(["-TERM", &p.0.id().to_string()]).status().expect("run kill");
    assert!(term.success(), "kill -TERM {}", p.0.id());
    p.0.wait().expect("wait for serve");
}
