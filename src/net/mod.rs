//! Sockets: the accept loop with connection limits, the connection driver
//! IMAP and SMTP share (implicit TLS, session loop, STARTTLS, flush), TLS
//! configs, the plain-or-TLS stream type, sd_notify. Imports nothing of
//! the protocols.

pub mod config;
pub mod driver;
pub mod listener;
pub mod notify;
pub mod sessions;
pub mod stream;
pub mod tls;

use std::net::IpAddr;

/// Where a login comes from, as lockout and connection limits count it: an
/// IPv4 address, or the /64 of an IPv6 address (one host usually has a
/// whole /64 to pick from).
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(std::net::Ipv6Addr::from(seg))
            }
        },
    }
}
