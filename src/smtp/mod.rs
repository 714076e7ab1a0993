//! The SMTP submission server the team's mail clients send through. The
//! session speaks the protocol (smtp-proto receivers, AUTH, limits, sender
//! ownership); what happens to a message — the lead policy, the relay, the
//! lead update — is behind [`SubmissionHandler`], so the protocol machine
//! can be tested and fuzzed without an upstream.

/// `[smtp]` belongs to the config tree (it composes every section).
pub mod config;
pub mod forward;
pub mod gateway;
pub mod held;
pub mod mx;
pub mod notices;
pub mod queue;
pub mod relay;
pub mod session;
#[cfg(test)]
mod tests;

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc};

use tokio_rustls::TlsAcceptor;

use crate::{auth::Authenticator, auth::Principal};

pub use config::SmtpConfig;
pub use session::run;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The envelope of one message, as the client gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Always the user's own address or the shared address.
    pub mail_from: String,
    /// In the order given, without duplicates.
    pub rcpt_to: Vec<String>,
    /// The client's `SIZE=` declaration, if it made one.
    pub size_hint: Option<usize>,
    /// `BODY=8BITMIME` was given.
    pub body_8bit: bool,
}

/// A complete message from an authenticated user.
#[derive(Clone)]
pub struct Submission {
    pub user: Principal,
    pub peer: SocketAddr,
    pub envelope: Envelope,
    /// After DATA: dot-unstuffed, ending with the CRLF before the final
    /// dot. After BDAT: the chunks concatenated exactly as sent.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("user", &self.user.name)
            .field("peer", &self.peer)
            .field("envelope", &self.envelope)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// An SMTP reply with an enhanced status code (RFC 3463). `text` may hold
/// several lines separated by `\n`; each becomes its own reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: (u8, u16, u16),
    pub text: String,
}

/// Reply lines are kept well under RFC 5321's 512-octet limit.
const MAX_REPLY_TEXT: usize = 480;

impl Reply {
    pub fn new(code: u16, status: (u8, u16, u16), text: impl Into<String>) -> Reply {
        Reply {
            code,
            status,
            text: text.into(),
        }
    }

    /// `250 2.0.0 <text>`.
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply::new(250, (2, 0, 0), text)
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// Appends the reply in wire form. A code outside 200..=599 (a handler
    /// bug) becomes a temporary failure; the status class always follows the
    /// code; control characters in the text become spaces, so no text can
    /// forge a reply line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let (code, (_, subject, detail)) = if (200..600).contains(&self.code) {
            (self.code, self.status)
        } else {
            tracing::error!("invalid SMTP reply code {} from handler", self.code);
            (451, (4, 3, 0))
        };
        let class = code / 100;
        let lines: Vec<String> = self
            .text
            .trim_end_matches(['\r', '\n'])
            .split('\n')
            .map(|l| clean_line(l.trim_end_matches('\r')))
            .collect();
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let head = format!("{code}{sep}{class}.{subject}.{detail}");
            out.extend_from_slice(head.as_bytes());
            if !line.is_empty() {
                out.push(b' ');
                out.extend_from_slice(line.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn clean_line(line: &str) -> String {
    let mut s = String::with_capacity(line.len().min(MAX_REPLY_TEXT));
    for c in line.chars() {
        if s.len() + c.len_utf8() > MAX_REPLY_TEXT {
            break;
        }
        s.push(if c.is_control() { ' ' } else { c });
    }
    s
}

/// What the gateway does with submissions. Object-safe, so the session
/// holds an `Arc<dyn SubmissionHandler>`.
pub trait SubmissionHandler: Send + Sync + 'static {
    /// Called per RCPT so a refusal can come early (e.g. an unknown notes
    /// address). The default accepts every recipient.
    fn check_recipient<'a>(
        &'a self,
        user: &'a Principal,
        rcpt: &'a str,
    ) -> BoxFuture<'a, Result<(), Reply>> {
        let _ = (user, rcpt);
        Box::pin(async { Ok(()) })
    }

    /// Called once the whole message is received; the reply is what the
    /// client gets. A 250 must only be given once the message is safely
    /// relayed or durably queued.
    fn submit<'a>(&'a self, sub: Submission) -> BoxFuture<'a, Reply>;
}

/// What every SMTP session shares.
pub struct SmtpCtx {
    /// Name in the greeting and EHLO reply (`server.hostname`).
    pub hostname: String,
    pub config: Arc<SmtpConfig>,
    pub auth: Arc<Authenticator>,
    /// Needed for implicit-TLS and STARTTLS listeners.
    pub tls: Option<TlsAcceptor>,
    pub handler: Arc<dyn SubmissionHandler>,
    /// Logged-in sessions register here so an admin can end them.
    pub sessions: Option<Arc<crate::net::sessions::SessionRegistry>>,
}
