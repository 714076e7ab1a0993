//! Who is logged in where, so an admin action (disabling a user, revoking
//! an app password) can end that user's open sessions at once, IMAP and
//! SMTP alike.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use tokio::sync::watch;

/// A user's open sessions: (session id, its kick switch).
type Sessions = Vec<(u64, watch::Sender<bool>)>;

#[derive(Default)]
pub struct SessionRegistry {
    by_user: Mutex<HashMap<String, Sessions>>,

    next: AtomicU64,
}

/// Held by a logged-in session; unregisters on drop. `kicked` turns true
/// when the session must end.
pub struct SessionTicket {
    registry: Arc<SessionRegistry>,
    user: String,
    id: u64,
    pub kicked: watch::Receiver<bool>,
}

impl Drop for SessionTicket {
    fn drop(&mut self) {
        let mut map = self
            .registry
            .by_user
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(list) = map.get_mut(&self.user) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                map.remove(&self.user);
            }
        }
    }
}

/// Resolves when an admin ends the session holding `ticket` (never while
/// there is no ticket, i.e. before login).
pub async fn kicked(ticket: &mut Option<SessionTicket>) {
    match ticket {
        Some(t) => {
            let _ = t.kicked.wait_for(|k| *k).await;
        }
        None => std::future::pending().await,
    }
}

impl SessionRegistry {
    pub fn register(self: &Arc<Self>, user: &str) -> SessionTicket {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(false);
        self.by_user
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user.to_owned())
            .or_default()
            .push((id, tx));
        SessionTicket {
            registry: self.clone(),
            user: user.to_owned(),
            id,
            kicked: rx,
        }
    }

    /// Ends every open session of `user`; returns how many there were.
    pub fn kick(&self, user: &str) -> usize {
        let map = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = map.get(user) else { return 0 };
        for (_, tx) in list {
            tx.send_replace(true);
        }
        list.len()
    }

    /// Open sessions of `user`.
    pub fn count(&self, user: &str) -> usize {
        let map = self.by_user.lock().unwrap_or_else(|e| e.into_inner());
        map.get(user).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kicking_reaches_every_session_of_the_user_only() {
        let reg = Arc::new(SessionRegistry::default());
        let a1 = reg.register("alice");
        let a2 = reg.register("alice");
        let b = reg.register("bob");
        assert_eq!(reg.kick("alice"), 2);
        assert!(*a1.kicked.borrow() && *a2.kicked.borrow() && !*b.kicked.borrow());
        drop(a1);
        assert_eq!(reg.count("alice"), 1);
        drop(a2);
        assert_eq!(reg.kick("alice"), 0);
    }
}
