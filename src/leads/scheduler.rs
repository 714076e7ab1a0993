//! Wakes the lead book when a follow-up falls due, so a lead becomes
//! overdue (or escalates, or closes) at its due time and not at the next
//! mail event.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use super::book::LeadBook;

/// Longest sleep between checks (also bounds the effect of clock jumps).
const MAX_SLEEP: Duration = Duration::from_secs(60);

pub async fn run(book: Arc<LeadBook>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = book.subscribe();
    loop {
        let next = match book.tick().await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!("lead scheduler: {e}");
                None
            }
        };
        let wait = next
            .map(|at| Duration::from_secs(u64::try_from(at - book.now()).unwrap_or(0)))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        // Wake a moment after the due second so `due <= now` holds.
        let wait = if next.is_some() {
            wait + Duration::from_millis(20)
        } else {
            wait
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = changes.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}
