//! The accept loop. A connection-limit permit is taken *before* `accept()`
//! and held for the whole session, so the limit also bounds memory; a
//! per-IP count is checked after accept and reported to the protocol
//! handler, which refuses in its own words (`* BYE` / `421`). Hand-written:
//! hyper-util and tower offer no accept loop with a permit taken before
//! `accept()` and a per-address count.

use std::{
    collections::HashMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
};

/// Whether a new connection is within the per-IP limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accepted,
    TooManyFromIp,
}

pub struct ConnLimits {
    max: usize,
    permits: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
}

/// Held by a session; releases its slots on drop.
pub struct ConnGuard {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut map = self.limits.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl ConnLimits {
    pub fn new(max: usize, max_per_ip: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max,
            permits: Arc::new(Semaphore::new(max)),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip,
        })
    }

    /// Open sessions right now.
    pub fn active(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// Waits until every session has ended, or `grace` has passed.
    pub async fn drained(&self, grace: Duration) -> bool {
        let max = u32::try_from(self.max).unwrap_or(u32::MAX);
        tokio::time::timeout(grace, self.permits.acquire_many(max))
            .await
            .is_ok()
    }
}

/// Accepts until `shutdown` turns true, handing each connection to `handle`.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limits: Arc<ConnLimits>,
    mut shutdown: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Admission, ConnGuard) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let permit = tokio::select! {
            p = limits.permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Counted per source: an IPv6 host has a whole /64 to pick from.
        let source = super::source_of(peer.ip());
        let admission = {
            let mut map = limits.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(source).or_insert(0);
            *n += 1;
            if *n > limits.max_per_ip {
                Admission::TooManyFromIp
            } else {
                Admission::Accepted
            }
        };
        let guard = ConnGuard {
            limits: limits.clone(),
            ip: source,
            _permit: permit,
        };
        // Answers are small and go out whole: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let fut = handle(stream, peer, admission, guard);
        tracing::debug!(bytes = std::mem::size_of_val(&fut), "session task size");
        tokio::spawn(fut);
    }
}
