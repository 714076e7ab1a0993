//! Delivery to the recipients' own mail servers (`delivery = "direct"`).
//! For one recipient domain: the MX records (hickory, with the configured
//! nameservers), or the domain's own address when it has none (RFC 5321
//! §5.1), a null MX (RFC 7505) as "accepts no mail"; then the hosts in
//! preference order (equal preferences shuffled), EHLO, STARTTLS when
//! offered (or required), and the transaction with mail-send. The answer
//! is per recipient: delivered, or a failure that is temporary (retry) or
//! permanent (bounce).
//!
//! TLS: with `require_tls` the certificate must be valid for the MX host
//! name (web PKI roots); otherwise STARTTLS is used whenever offered but the
//! certificate is not checked (an MX name from plain DNS proves nothing, as
//! in Postfix's "may" level), and a failed handshake is retried once
//! without TLS.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use hickory_resolver::{
    config::{ConnectionConfig, NameServerConfig, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
    proto::rr::{Name, RData},
    Resolver, TokioResolver,
};
use mail_send::{smtp::message::Parameters, SmtpClient};
use rand::seq::SliceRandom;
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use serde::{Deserialize, Serialize};
use smtp_proto::{EhloResponse, Response, EXT_START_TLS};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use super::{
    config::DirectConfig,
    relay::{enhanced, mail_params, reply_text, send_data},
};

/// MX hosts tried per delivery, and connections made in all.
const MAX_HOSTS: usize = 5;
const MAX_ADDRESSES_PER_HOST: usize = 2;
const MAX_CONNECTIONS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum MxError {
    #[error("cannot read the system's nameservers from {path}: {reason}")]
    SystemConfig { path: String, reason: String },
    #[error("DNS resolver: {0}")]
    Resolver(String),
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Why a recipient was not delivered. Kept in the queue entry and quoted
/// in the bounce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFailure {
    /// Enhanced status (RFC 3463); class 5 is permanent.
    pub status: (u8, u16, u16),
    /// The remote server's reply (`550 5.1.1 No such user`), when the
    /// failure was its answer.
    pub reply: Option<String>,
    /// What happened, naming the host.
    pub text: String,
}

impl DeliveryFailure {
    pub fn temporary(status: (u8, u16, u16), text: impl Into<String>) -> Self {
        DeliveryFailure {
            status: (4, status.1, status.2),
            reply: None,
            text: text.into(),
        }
    }

    pub fn permanent(status: (u8, u16, u16), text: impl Into<String>) -> Self {
        DeliveryFailure {
            status: (5, status.1, status.2),
            reply: None,
            text: text.into(),
        }
    }

    /// A 4xx or 5xx reply from `target`. Anything else (a 2xx or 3xx where
    /// it did not belong) counts as temporary.
    fn from_reply(r: &Response<String>, target: &str) -> Self {
        let class = if (500..600).contains(&r.code) { 5 } else { 4 };
        let status = match enhanced(r) {
            Some((c, s, d)) if c == class => (c, s, d),
            _ => (class, 0, 0),
        };
        let reply = reply_text(r);
        DeliveryFailure {
            status,
            text: format!("{target} said: {reply}"),
            reply: Some(reply),
        }
    }

    /// A client-side failure talking to `target` (connection, TLS, timeout).
    fn from_error(e: mail_send::Error, target: &str) -> Self {
        use mail_send::Error as E;
        match e {
            E::UnexpectedReply(r) | E::AuthenticationFailed(r) => Self::from_reply(&r, target),
            E::Timeout => Self::temporary((4, 4, 2), format!("{target} did not answer in time")),
            E::Io(e) => Self::temporary((4, 4, 2), format!("connection to {target} failed: {e}")),
            E::UnparseableReply => Self::temporary(
                (4, 4, 2),
                format!("{target} closed the connection or sent an unreadable reply"),
            ),
            E::Tls(e) => Self::temporary((4, 7, 0), format!("TLS with {target} failed: {e}")),
            other => Self::temporary((4, 4, 0), format!("{target}: {other}")),
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.status.0 == 5
    }
}

impl std::fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (c, s, d) = self.status;
        write!(f, "{c}.{s}.{d} {}", self.text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    /// The host (`mx.example.com[192.0.2.1]:25`) answered 250 to the data.
    Delivered {
        host: String,
    },
    Failed(DeliveryFailure),
}

/// One MX host of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    /// Without the trailing dot.
    pub name: String,
}

/// Looks up MX hosts and delivers to them.
pub struct MxClient {
    resolver: TokioResolver,
    port: u16,
    helo: String,
    require_tls: bool,
    timeout: Duration,
    verified: TlsConnector,
    unverified: TlsConnector,
}

impl std::fmt::Debug for MxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MxClient")
            .field("port", &self.port)
            .field("helo", &self.helo)
            .field("require_tls", &self.require_tls)
            .finish()
    }
}

impl MxClient {
    /// `hostname` (`server.hostname`) is the EHLO name unless
    /// `direct.helo_name` is set.
    pub fn new(config: &DirectConfig, hostname: &str) -> Result<MxClient, MxError> {
        let nameservers = if config.nameservers.is_empty() {
            system_nameservers(std::path::Path::new("/etc/resolv.conf"))?
        } else {
            config.nameservers.clone()
        };
        let servers = nameservers
            .iter()
            .map(|a| {
                let mut udp = ConnectionConfig::udp();
                udp.port = a.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = a.port();
                NameServerConfig::new(a.ip(), true, vec![udp, tcp])
            })
            .collect();
        let mut builder = Resolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        );
        let opts = builder.options_mut();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        let resolver = builder
            .build()
            .map_err(|e| MxError::Resolver(e.to_string()))?;
        let verified =
            crate::net::tls::client_config(None).map_err(|e| MxError::Tls(e.to_string()))?;
        Ok(MxClient {
            resolver,
            port: config.port,
            helo: config
                .helo_name
                .clone()
                .unwrap_or_else(|| hostname.to_owned()),
            require_tls: config.require_tls,
            timeout: Duration::from_secs(config.timeout_secs.max(1)),
            verified: TlsConnector::from(verified),
            unverified: TlsConnector::from(unverified_config()?),
        })
    }

    /// The hosts to try for `domain`, best first. A permanent failure for a
    /// domain that does not exist or has a null MX; temporary when DNS
    /// cannot answer.
    pub async fn mx_hosts(&self, domain: &str) -> Result<Vec<MxHost>, DeliveryFailure> {
        let fqdn = fqdn(domain);
        match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut mx: Vec<(u16, Name)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
                        _ => None,
                    })
                    .collect();
                if mx.len() == 1 && mx[0].1.is_root() {
                    return Err(DeliveryFailure::permanent(
                        (5, 1, 10),
                        format!("{domain} accepts no mail (null MX)"),
                    ));
                }
                mx.retain(|(_, n)| !n.is_root());
                if mx.is_empty() {
                    return Ok(vec![implicit_mx(domain)]);
                }
                mx.shuffle(&mut rand::thread_rng());
                mx.sort_by_key(|(p, _)| *p);
                Ok(mx
                    .into_iter()
                    .map(|(preference, name)| MxHost {
                        preference,
                        name: name.to_ascii().trim_end_matches('.').to_owned(),
                    })
                    .collect())
            }
            Err(e) if e.is_nx_domain() => Err(DeliveryFailure::permanent(
                (5, 1, 2),
                format!("domain {domain} does not exist"),
            )),
            Err(e) if e.is_no_records_found() => Ok(vec![implicit_mx(domain)]),
            Err(e) => Err(DeliveryFailure::temporary(
                (4, 4, 3),
                format!("DNS lookup of {domain} MX failed: {e}"),
            )),
        }
    }

    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DeliveryFailure> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        match self.resolver.lookup_ip(fqdn(host).as_str()).await {
            Ok(ips) => {
                let ips: Vec<IpAddr> = ips.iter().take(MAX_ADDRESSES_PER_HOST).collect();
                if ips.is_empty() {
                    Err(DeliveryFailure::temporary(
                        (4, 4, 4),
                        format!("mail host {host} has no address"),
                    ))
                } else {
                    Ok(ips)
                }
            }
            Err(e) if e.is_no_records_found() => Err(DeliveryFailure::temporary(
                (4, 4, 4),
                format!("mail host {host} has no address"),
            )),
            Err(e) => Err(DeliveryFailure::temporary(
                (4, 4, 3),
                format!("DNS lookup of {host} failed: {e}"),
            )),
        }
    }

    /// Delivers one message to the recipients of one domain; one outcome
    /// per recipient, in order.
    pub async fn deliver(
        &self,
        domain: &str,
        from: &str,
        rcpts: &[String],
        body: &[u8],
    ) -> Vec<RcptOutcome> {
        let all = |f: DeliveryFailure| vec![RcptOutcome::Failed(f); rcpts.len()];
        let hosts = match address_literal(domain) {
            Some(Ok(ip)) => vec![MxHost {
                preference: 0,
                name: ip.to_string(),
            }],
            Some(Err(())) => {
                return all(DeliveryFailure::permanent(
                    (5, 1, 2),
                    format!("bad address literal {domain}"),
                ))
            }
            None => match self.mx_hosts(domain).await {
                Ok(hosts) => hosts,
                Err(f) => return all(f),
            },
        };
        let mut last = DeliveryFailure::temporary(
            (4, 4, 1),
            format!("no mail host of {domain} could be reached"),
        );
        let mut connections = 0;
        'hosts: for host in hosts.iter().take(MAX_HOSTS) {
            let ips = match self.addresses(&host.name).await {
                Ok(ips) => ips,
                Err(f) => {
                    last = f;
                    continue;
                }
            };
            for ip in ips {
                if connections == MAX_CONNECTIONS {
                    break 'hosts;
                }
                connections += 1;
                match self.session(&host.name, ip, from, rcpts, body).await {
                    Ok(outcomes) => return outcomes,
                    Err(f) => {
                        tracing::debug!("mx: {domain}: {f}");
                        last = f;
                    }
                }
            }
        }
        all(last)
    }

    /// One host. `Ok` once the host answered about the message (even with
    /// refusals); `Err` when it never got that far, so the next host is
    /// tried.
    async fn session(
        &self,
        host: &str,
        ip: IpAddr,
        from: &str,
        rcpts: &[String],
        body: &[u8],
    ) -> Result<Vec<RcptOutcome>, DeliveryFailure> {
        let addr = SocketAddr::new(ip, self.port);
        let target = format!("{host}[{ip}]:{}", self.port);
        let mut try_tls = true;
        loop {
            let mut client = self.open(addr, &target).await?;
            let ehlo = client
                .ehlo(&self.helo)
                .await
                .map_err(|e| DeliveryFailure::from_error(e, &target))?;
            if !ehlo.has_capability(EXT_START_TLS) || !try_tls {
                if self.require_tls {
                    return Err(DeliveryFailure::temporary(
                        (4, 7, 10),
                        format!(
                            "{target} does not offer STARTTLS and smtp.direct.require_tls is set"
                        ),
                    ));
                }
                return transaction(&mut client, &ehlo, &target, from, rcpts, body).await;
            }
            let connector = if self.require_tls {
                &self.verified
            } else {
                &self.unverified
            };
            match client.start_tls(connector, host).await {
                Ok(mut tls) => {
                    let ehlo = tls
                        .ehlo(&self.helo)
                        .await
                        .map_err(|e| DeliveryFailure::from_error(e, &target))?;
                    return transaction(&mut tls, &ehlo, &target, from, rcpts, body).await;
                }
                Err(e) if self.require_tls => {
                    return Err(DeliveryFailure::from_error(e, &target));
                }
                Err(e) => {
                    tracing::info!("mx: STARTTLS with {target} failed ({e}); retrying without TLS");
                    try_tls = false;
                }
            }
        }
    }

    /// Connects and reads a positive greeting.
    async fn open(
        &self,
        addr: SocketAddr,
        target: &str,
    ) -> Result<SmtpClient<tokio::net::TcpStream>, DeliveryFailure> {
        let mut client = SmtpClient::connect(addr, self.timeout)
            .await
            .map_err(|e| match e {
                mail_send::Error::Timeout => {
                    DeliveryFailure::temporary((4, 4, 1), format!("no answer from {target}"))
                }
                e => DeliveryFailure::temporary(
                    (4, 4, 1),
                    format!("cannot connect to {target}: {e}"),
                ),
            })?;
        let greeting = tokio::time::timeout(self.timeout, client.read())
            .await
            .map_err(|_| {
                DeliveryFailure::temporary((4, 4, 2), format!("no greeting from {target}"))
            })?
            .map_err(|e| DeliveryFailure::from_error(e, target))?;
        if !(200..300).contains(&greeting.code) {
            return Err(DeliveryFailure::from_reply(&greeting, target));
        }
        Ok(client)
    }
}

/// MAIL, RCPT per recipient, DATA. Errors before any recipient got an
/// answer are `Err` (try another host); after that, every recipient has
/// its outcome.
async fn transaction<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    ehlo: &EhloResponse<String>,
    target: &str,
    from: &str,
    rcpts: &[String],
    body: &[u8],
) -> Result<Vec<RcptOutcome>, DeliveryFailure> {
    let result = transaction_inner(client, ehlo, target, from, rcpts, body).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), client.cmd(b"QUIT\r\n")).await;
    result
}

async fn transaction_inner<T: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<T>,
    ehlo: &EhloResponse<String>,
    target: &str,
    from: &str,
    rcpts: &[String],
    body: &[u8],
) -> Result<Vec<RcptOutcome>, DeliveryFailure> {
    let all = |f: DeliveryFailure| vec![RcptOutcome::Failed(f); rcpts.len()];
    if ehlo.size > 0 && body.len() > ehlo.size {
        return Ok(all(DeliveryFailure::permanent(
            (5, 3, 4),
            format!(
                "message of {} bytes is larger than {target} accepts ({} bytes)",
                body.len(),
                ehlo.size
            ),
        )));
    }
    let params = mail_params(ehlo, body);
    match client.mail_from(from, &params).await {
        Ok(()) => {}
        // A 5xx to MAIL FROM is this host's answer about the message.
        Err(mail_send::Error::UnexpectedReply(r)) if (500..600).contains(&r.code) => {
            return Ok(all(DeliveryFailure::from_reply(&r, target)))
        }
        Err(e) => return Err(DeliveryFailure::from_error(e, target)),
    }
    let mut outcomes: Vec<Option<RcptOutcome>> = vec![None; rcpts.len()];
    let mut accepted = Vec::new();
    for (i, rcpt) in rcpts.iter().enumerate() {
        match client.rcpt_to(rcpt, &Parameters::new()).await {
            Ok(()) => accepted.push(i),
            Err(mail_send::Error::UnexpectedReply(r)) => {
                outcomes[i] = Some(RcptOutcome::Failed(DeliveryFailure::from_reply(&r, target)))
            }
            Err(e) => return Err(DeliveryFailure::from_error(e, target)),
        }
    }
    if !accepted.is_empty() {
        let outcome = match send_data(client, body).await {
            Ok(_) => RcptOutcome::Delivered {
                host: target.to_owned(),
            },
            // No answer after the data: the host may have the message. It
            // stays queued (a possible duplicate, never a loss).
            Err(e) => RcptOutcome::Failed(DeliveryFailure::from_error(e, target)),
        };
        for i in accepted {
            outcomes[i] = Some(outcome.clone());
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                RcptOutcome::Failed(DeliveryFailure::temporary((4, 0, 0), "no answer"))
            })
        })
        .collect())
}

/// A domain with no MX records is its own mail host (RFC 5321 §5.1).
fn implicit_mx(domain: &str) -> MxHost {
    MxHost {
        preference: 0,
        name: domain.trim_end_matches('.').to_owned(),
    }
}

/// `domain.` so no search domain is ever appended.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]`: `None` for a domain name.
fn address_literal(domain: &str) -> Option<Result<IpAddr, ()>> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    Some(inner.parse().map_err(|_| ()))
}

/// The `nameserver` lines of resolv.conf, on port 53.
pub fn system_nameservers(path: &std::path::Path) -> Result<Vec<SocketAddr>, MxError> {
    let err = |reason: String| MxError::SystemConfig {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let servers: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|ip| ip.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if servers.is_empty() {
        return Err(err(
            "no nameserver lines; set smtp.direct.nameservers".into()
        ));
    }
    Ok(servers)
}

/// Opportunistic STARTTLS: encryption without authentication. Handshake
/// signatures are still checked, so the session is bound to the key the
/// server presented.
fn unverified_config() -> Result<Arc<ClientConfig>, MxError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| MxError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_literals_are_recognised() {
        assert_eq!(
            address_literal("[192.0.2.1]"),
            Some(Ok("192.0.2.1".parse().unwrap()))
        );
        assert_eq!(
            address_literal("[IPv6:2001:db8::1]"),
            Some(Ok("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(address_literal("[nonsense]"), Some(Err(())));
        assert_eq!(address_literal("example.com"), None);
    }

    #[test]
    fn resolv_conf_nameservers_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "# comment\nsearch example.com\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\noptions ndots:2\n",
        )
        .unwrap();
        let servers = system_nameservers(&path).unwrap();
        assert_eq!(
            servers,
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
        std::fs::write(&path, "search example.com\n").unwrap();
        assert!(system_nameservers(&path).is_err());
    }

    #[test]
    fn replies_become_failures_of_their_class() {
        let r = Response {
            code: 550,
            esc: [5, 1, 1],
            message: "No such user".to_string(),
        };
        let f = DeliveryFailure::from_reply(&r, "mx.example.com[192.0.2.1]:25");
        assert!(f.is_permanent());
        assert_eq!(f.status, (5, 1, 1));
        assert_eq!(f.reply.as_deref(), Some("550 5.1.1 No such user"));
        let r = Response {
            code: 451,
            esc: [5, 0, 0],
            message: "Later".to_string(),
        };
        let f = DeliveryFailure::from_reply(&r, "x");
        assert!(!f.is_permanent());
        assert_eq!(
            f.status,
            (4, 0, 0),
            "a mismatched enhanced class is ignored"
        );
    }
}
