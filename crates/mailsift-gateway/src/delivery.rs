//! Handing a message to its [`Route`]: the next hop, the smarthost, the domain's MX, or the Maildir.

use std::sync::Arc;

use crate::relay::{Delivered, RelayError, Reply};
use crate::route::{maildir_deliver, Route};
use crate::state::{Gateway, GatewayState};

/// Hands a message to its route.
pub async fn deliver(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    route: &Route,
    mail_from: &str,
    rcpts: &[String],
    bytes: &[u8],
) -> Result<Delivered, RelayError> {
    let client = state.relay_client(gateway);
    match route {
        Route::NextHop(target) | Route::Smarthost(target) => client.deliver(target, mail_from, rcpts, bytes).await,
        Route::Mx(domain) => {
            let resolver = state.mx_resolver().map_err(RelayError::Temporary)?;
            let hosts = match resolver.mail_hosts(domain).await {
                Ok(h) => h,
                Err(true) => {
                    return Err(RelayError::Permanent(Reply {
                        code: 550,
                        text: format!("5.1.2 {domain} does not accept mail (no MX or address)"),
                    }))
                }
                Err(false) => return Err(RelayError::Temporary(format!("DNS lookup of {domain} failed"))),
            };
            let mut last = RelayError::Temporary(format!("no mail host of {domain} answered"));
            for ip in hosts.iter().take(5) {
                let target = std::net::SocketAddr::new(*ip, state.config.outbound.mx_port).to_string();
                match client.deliver(&target, mail_from, rcpts, bytes).await {
                    Ok(d) => return Ok(d),
                    // A permanent refusal is the domain's answer; a temporary one means try the next host.
                    Err(e @ RelayError::Permanent(_)) => return Err(e),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Route::Report(_) => {
            Err(RelayError::Permanent(Reply { code: 550, text: "5.1.1 Report addresses take reports only".into() }))
        }
        Route::Maildir => {
            let dir = gateway.data_dir.join("maildir");
            let rcpts = rcpts.to_vec();
            let bytes = bytes.to_vec();
            let written = tokio::task::spawn_blocking(move || {
                for r in &rcpts {
                    maildir_deliver(&dir, r, &bytes)?;
                }
                Ok::<_, std::io::Error>(rcpts)
            })
            .await;
            match written {
                Ok(Ok(rcpts)) => Ok(Delivered {
                    accepted: rcpts,
                    refused: Vec::new(),
                    reply: Reply { code: 250, text: "maildir".into() },
                }),
                Ok(Err(e)) => Err(RelayError::Local(format!("maildir write failed: {e}"))),
                Err(e) => Err(RelayError::Local(format!("maildir write failed: {e}"))),
            }
        }
    }
}
