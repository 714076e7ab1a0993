//! systemd's readiness protocol (`sd_notify`), through the `sd-notify`
//! crate: one datagram of `KEY=VALUE` lines to the socket named by
//! `$NOTIFY_SOCKET`. Without the variable (not started by systemd, or
//! `Type=simple`) every call is a no-op that returns `Ok(())`.

use std::{io, time::Duration};

use sd_notify::NotifyState;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// `READY=1`: startup is finished (listeners bound, first upstream sync done).
pub fn ready() -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Ready])
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Stopping])
}

/// `RELOADING=1`: a reload (SIGHUP) has begun; follow with [`ready`].
pub fn reloading() -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Reloading])
}

/// `STATUS=...`: one line shown by `systemctl status`. Newlines become
/// spaces so the text cannot smuggle in other assignments (the crate sends
/// the text as given).
pub fn status(text: &str) -> io::Result<()> {
    let line: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    sd_notify::notify(&[NotifyState::Status(&line)])
}

/// `EXTEND_TIMEOUT_USEC=...`: asks for `by` more time than `TimeoutStartSec`
/// (or `TimeoutStopSec`) allows, counted from now; at most about 71
/// minutes (the field is 32 bits of microseconds). Useful while a long
/// first sync is still making progress.
pub fn extend_timeout(by: Duration) -> io::Result<()> {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    sd_notify::notify(&[NotifyState::ExtendTimeoutUsec(usec)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{ffi::OsString, os::unix::net::UnixDatagram, sync::Mutex};

    /// The environment is process-global: tests that set `$NOTIFY_SOCKET`
    /// take this lock.
    static ENV: Mutex<()> = Mutex::new(());

    fn receive(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification arrives");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// Sets `$NOTIFY_SOCKET` for the life of the guard.
    struct EnvGuard<'a> {
        _lock: std::sync::MutexGuard<'a, ()>,
        old: Option<OsString>,
    }

    impl EnvGuard<'_> {
        fn set(value: Option<&std::ffi::OsStr>) -> Self {
            let lock = ENV.lock().unwrap_or_else(|e| e.into_inner());
            let old = std::env::var_os(NOTIFY_SOCKET);
            match value {
                Some(v) => std::env::set_var(NOTIFY_SOCKET, v),
                None => std::env::remove_var(NOTIFY_SOCKET),
            }
            EnvGuard { _lock: lock, old }
        }
    }

    impl Drop for EnvGuard<'_> {
        fn drop(&mut self) {
            match &self.old {
                Some(v) => std::env::set_var(NOTIFY_SOCKET, v),
                None => std::env::remove_var(NOTIFY_SOCKET),
            }
        }
    }

    #[test]
    fn notify_without_socket_is_a_no_op() {
        let _env = EnvGuard::set(None);
        ready().unwrap();
        status("serving").unwrap();
    }

    #[test]
    fn ready_stopping_and_status_reach_the_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let _env = EnvGuard::set(Some(path.as_os_str()));

        ready().unwrap();
        assert_eq!(receive(&server), "READY=1\n");
        status("synced 120 messages\nREADY=1").unwrap();
        assert_eq!(receive(&server), "STATUS=synced 120 messages READY=1\n");
        extend_timeout(Duration::from_secs(90)).unwrap();
        assert_eq!(receive(&server), "EXTEND_TIMEOUT_USEC=90000000\n");
        reloading().unwrap();
        assert_eq!(receive(&server), "RELOADING=1\n");
        stopping().unwrap();
        assert_eq!(receive(&server), "STOPPING=1\n");
    }

    #[test]
    fn missing_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.sock");
        let _env = EnvGuard::set(Some(path.as_os_str()));
        assert!(ready().is_err());
    }
}
