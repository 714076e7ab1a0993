//! The driver every session target shares: a session on one end of an
//! in-memory pipe, `input` written to the other end and half-closed, and
//! all the session says read back. Panics if the session hangs for 20 s or
//! its task panics.

use std::{future::Future, time::Duration};

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

pub async fn drive<F>(input: Vec<u8>, session: impl FnOnce(DuplexStream) -> F) -> Vec<u8>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (client, server) = tokio::io::duplex(1 << 20);
    let task = tokio::spawn(session(server));
    let (mut rd, mut wr) = tokio::io::split(client);
    let writer = async move {
        let _ = wr.write_all(&input).await;
        let _ = wr.shutdown().await;
    };
    let reader = async move {
        let mut sink = Vec::new();
        let _ = rd.read_to_end(&mut sink).await;
        sink
    };
    let (out, joined) = tokio::time::timeout(Duration::from_secs(20), async {
        let ((), out) = tokio::join!(writer, reader);
        (out, task.await)
    })
    .await
    .expect("session hung");
    joined.expect("session task failed");
    out
}
