//! One client connection, IMAP and SMTP alike. The sequence:
//!
//! 1. `listener::accept_loop` hands over an accepted stream and its
//!    admission (whether the per-address limit still had room);
//! 2. on an implicit-TLS listener, the TLS handshake: one that fails or
//!    times out ends the connection without a word;
//! 3. the protocol greets, or refuses in its own words (`* BYE`, `421`);
//! 4. the session loop: the protocol works through what it has received,
//!    its answers are flushed, and it waits for more (or for shutdown, an
//!    admin's kick, an index change). On STARTTLS the go-ahead is flushed,
//!    the plain stream is upgraded, and the protocol forgets what it
//!    learned in clear;
//! 5. what is still queued is flushed and the stream shut down.
//!
//! The protocol sits behind [`Protocol`]: its state machine and its reply
//! buffer. Every socket read and write goes through [`Conn`].

use std::{future::Future, io, net::SocketAddr, time::Duration};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use super::{listener::Admission, stream::MaybeTls};

/// A byte stream a session runs over: TCP, or a duplex pipe in tests and
/// fuzzing. `Sync` because sessions hold `&self` across awaits and the
/// driver's futures must be `Send`.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Io for T {}

pub type ServerTls<S> = tokio_rustls::server::TlsStream<S>;

/// A client that stops reading is dropped after this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// After a flush, an output buffer larger than this is given back (a big
/// FETCH must not pin its buffer in a session that then idles for hours).
const OUT_KEEP: usize = 16 * 1024;

/// What the session loop does next.
#[derive(Debug)]
pub enum Flow {
    Continue,
    /// End the session (whatever is queued still goes out).
    Close,
    /// The go-ahead for STARTTLS is queued: flush it, drop whatever else
    /// came in clear, and upgrade the stream.
    StartTls,
}

/// The client's stream, plain or TLS.
pub struct Conn<S: Io> {
    io: MaybeTls<S, ServerTls<S>>,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    peer: SocketAddr,
}

impl<S: Io> Conn<S> {
    /// `tls` is needed on implicit-TLS and STARTTLS listeners; a handshake
    /// must finish within `handshake_timeout`.
    pub fn new(
        stream: S,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
        handshake_timeout: Duration,
    ) -> Self {
        Conn {
            io: MaybeTls::Plain(stream),
            tls,
            handshake_timeout,
            peer,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.io.is_tls()
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.read(buf).await
    }

    /// Writes `out` and empties it; a client that does not take it within
    /// [`WRITE_TIMEOUT`] is an error.
    pub async fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let result = tokio::time::timeout(WRITE_TIMEOUT, async {
            self.io.write_all(out).await?;
            self.io.flush().await
        })
        .await;
        out.clear();
        if out.capacity() > OUT_KEEP {
            *out = Vec::new();
        }
        match result {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading",
            )),
        }
    }

    /// The TLS handshake on the plain stream. False if it failed, timed
    /// out, or there is nothing to upgrade.
    pub async fn start_tls(&mut self) -> bool {
        let Some(acceptor) = self.tls.clone() else {
            tracing::warn!("TLS listener without a TLS configuration");
            return false;
        };
        let Some(plain) = self.io.take_plain() else {
            return false;
        };
        match tokio::time::timeout(self.handshake_timeout, acceptor.accept(plain)).await {
            Ok(Ok(tls)) => {
                self.io = MaybeTls::Tls(Box::new(tls));
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, "TLS handshake failed: {e}");
                false
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                false
            }
        }
    }
}

/// A protocol's side of a connection.
pub trait Protocol: Send {
    type Stream: Io;

    /// The connection and the replies queued for it.
    fn io(&mut self) -> (&mut Conn<Self::Stream>, &mut Vec<u8>);

    /// Queues the greeting and returns `Continue`, or queues a refusal
    /// (too many connections from the address, shutting down) and returns
    /// `Close`.
    fn greet(&mut self, admission: Admission) -> Flow;

    /// Works through the input received so far; `Continue` when it needs
    /// more. May flush on its own (a continuation request, a big answer).
    fn advance(&mut self) -> impl Future<Output = io::Result<Flow>> + Send;

    /// Waits for input, or for an event the protocol watches; `Close` ends
    /// the session (its last words queued).
    fn wait(&mut self) -> impl Future<Output = io::Result<Flow>> + Send;

    /// The stream is TLS now: forget everything learned in clear.
    fn tls_started(&mut self);
}

/// Runs a connection through the sequence at the top of this file.
pub async fn drive<P: Protocol>(
    session: &mut P,
    implicit_tls: bool,
    admission: Admission,
) -> io::Result<()> {
    // The handshake's future is boxed: inline, its size would stay in
    // every idle session's task.
    if implicit_tls && !Box::pin(session.io().0.start_tls()).await {
        return Ok(());
    }
    if let Flow::Continue = session.greet(admission) {
        loop {
            match session.advance().await? {
                Flow::Continue => {}
                Flow::Close => break,
                Flow::StartTls => {
                    flush(session).await?;
                    if !Box::pin(session.io().0.start_tls()).await {
                        return Ok(());
                    }
                    session.tls_started();
                }
            }
            flush(session).await?;
            if let Flow::Close = session.wait().await? {
                break;
            }
        }
    }
    flush(session).await?;
    let _ = session.io().0.io.shutdown().await;
    Ok(())
}

async fn flush<P: Protocol>(session: &mut P) -> io::Result<()> {
    let (conn, out) = session.io();
    conn.flush(out).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    /// A line echo: greets, answers each line, says goodbye on EOF.
    struct Echo {
        conn: Conn<DuplexStream>,
        out: Vec<u8>,
        pending: Vec<u8>,
        buf: Vec<u8>,
    }

    impl Protocol for Echo {
        type Stream = DuplexStream;

        fn io(&mut self) -> (&mut Conn<DuplexStream>, &mut Vec<u8>) {
            (&mut self.conn, &mut self.out)
        }

        fn greet(&mut self, admission: Admission) -> Flow {
            if admission == Admission::TooManyFromIp {
                self.out.extend_from_slice(b"busy\n");
                return Flow::Close;
            }
            self.out.extend_from_slice(b"hello\n");
            Flow::Continue
        }

        async fn advance(&mut self) -> io::Result<Flow> {
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                if line == b"quit\n" {
                    return Ok(Flow::Close);
                }
                self.out.extend_from_slice(b"echo ");
                self.out.extend_from_slice(&line);
            }
            Ok(Flow::Continue)
        }

        async fn wait(&mut self) -> io::Result<Flow> {
            let n = self.conn.read(&mut self.buf).await?;
            if n == 0 {
                self.out.extend_from_slice(b"bye\n");
                return Ok(Flow::Close);
            }
            self.pending.extend_from_slice(&self.buf[..n]);
            Ok(Flow::Continue)
        }

        fn tls_started(&mut self) {
            self.pending.clear();
        }
    }

    async fn session(input: &[u8], admission: Admission) -> String {
        let (client, server) = tokio::io::duplex(4096);
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut echo = Echo {
            conn: Conn::new(server, peer, None, Duration::from_secs(1)),
            out: Vec::new(),
            pending: Vec::new(),
            buf: vec![0; 64],
        };
        let (mut rd, mut wr) = tokio::io::split(client);
        wr.write_all(input).await.unwrap();
        wr.shutdown().await.unwrap();
        let served = tokio::spawn(async move { drive(&mut echo, false, admission).await });
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), rd.read_to_string(&mut answer))
            .await
            .expect("the driver closes the stream")
            .unwrap();
        served.await.unwrap().unwrap();
        answer
    }

    #[tokio::test]
    async fn answers_are_flushed_in_order_and_last_words_go_out_on_close() {
        assert_eq!(
            session(b"a\nb\n", Admission::Accepted).await,
            "hello\necho a\necho b\nbye\n"
        );
        assert_eq!(
            session(b"a\nquit\nnever read\n", Admission::Accepted).await,
            "hello\necho a\n"
        );
    }

    #[tokio::test]
    async fn a_connection_over_the_limit_gets_the_refusal_only() {
        assert_eq!(session(b"a\n", Admission::TooManyFromIp).await, "busy\n");
    }

    #[tokio::test]
    async fn implicit_tls_that_cannot_start_ends_the_connection_silently() {
        let (mut client, server) = tokio::io::duplex(4096);
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut echo = Echo {
            conn: Conn::new(server, peer, None, Duration::from_secs(1)),
            out: Vec::new(),
            pending: Vec::new(),
            buf: vec![0; 64],
        };
        drive(&mut echo, true, Admission::Accepted).await.unwrap();
        drop(echo);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert!(answer.is_empty(), "{answer:?}");
    }
}
