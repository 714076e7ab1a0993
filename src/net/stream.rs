//! A connection that starts plain and may become TLS (STARTTLS), on either
//! side. All inner types are `Unpin`, so delegation needs no projection.
//! Hand-written rather than tokio-util's `Either`: the upgrade takes the
//! plain stream out in place (`Gone` while the handshake owns it).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub enum MaybeTls<P, T> {
    Plain(P),
    Tls(Box<T>),
    /// Only seen while a TLS handshake owns the plain stream.
    Gone,
}

impl<P, T> MaybeTls<P, T> {
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// Takes the plain stream out for a TLS handshake.
    pub fn take_plain(&mut self) -> Option<P> {
        match std::mem::replace(self, MaybeTls::Gone) {
            MaybeTls::Plain(p) => Some(p),
            other => {
                *self = other;
                None
            }
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream is being upgraded")
}

impl<P: AsyncRead + Unpin, T: AsyncRead + Unpin> AsyncRead for MaybeTls<P, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(p) => Pin::new(p).poll_read(cx, buf),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
            MaybeTls::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl<P: AsyncWrite + Unpin, T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<P, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(p) => Pin::new(p).poll_write(cx, buf),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
            MaybeTls::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(p) => Pin::new(p).poll_flush(cx),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
            MaybeTls::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(p) => Pin::new(p).poll_shutdown(cx),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
            MaybeTls::Gone => Poll::Ready(Err(gone())),
        }
    }
}
