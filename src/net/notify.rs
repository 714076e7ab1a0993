//! systemd's readiness protocol (`sd_notify`) without libsystemd: one
//! datagram of `KEY=VALUE` lines to the socket named by `$NOTIFY_SOCKET`,
//! either a path or an abstract socket written `@name`. Without the
//! variable (not started by systemd, or `Type=simple`) every call is a
//! no-op that returns `Ok(false)`.

use std::{
    ffi::{OsStr, OsString},
    io,
    os::unix::{ffi::OsStrExt, net::UnixDatagram},
    time::Duration,
};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (newline-separated `KEY=VALUE` assignments) to the service
/// manager. `Ok(false)` when `$NOTIFY_SOCKET` is unset or empty.
pub fn notify(state: &str) -> io::Result<bool> {
    notify_socket(std::env::var_os(NOTIFY_SOCKET).as_deref(), state)
}

/// `READY=1`: startup is finished (listeners bound, first upstream sync done).
pub fn ready() -> io::Result<bool> {
    notify("READY=1")
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() -> io::Result<bool> {
    notify("STOPPING=1")
}

/// `RELOADING=1`: a reload (SIGHUP) has begun; follow with [`ready`].
pub fn reloading() -> io::Result<bool> {
    notify("RELOADING=1")
}

/// `STATUS=...`: one line shown by `systemctl status`. Newlines become
/// spaces so the text cannot smuggle in other assignments.
pub fn status(text: &str) -> io::Result<bool> {
    let line: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    notify(&format!("STATUS={line}"))
}

/// `EXTEND_TIMEOUT_USEC=...`: asks for `by` more time than `TimeoutStartSec`
/// (or `TimeoutStopSec`) allows, counted from now. Useful while a long first
/// sync is still making progress.
pub fn extend_timeout(by: Duration) -> io::Result<bool> {
    notify(&format!("EXTEND_TIMEOUT_USEC={}", by.as_micros()))
}

/// Sends `state` to `socket` (the value of `$NOTIFY_SOCKET`); `None` or an
/// empty value is not an error, just nothing to do.
pub fn notify_socket(socket: Option<&OsStr>, state: &str) -> io::Result<bool> {
    let Some(socket) = socket.filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    let sent = match bytes.first() {
        Some(b'@') => send_abstract(&sock, &bytes[1..], state.as_bytes())?,
        Some(b'/') => sock.send_to(state.as_bytes(), socket)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "${NOTIFY_SOCKET} is neither a path nor an abstract socket: {:?}",
                    OsString::from(socket)
                ),
            ))
        }
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification datagram was truncated",
        ));
    }
    Ok(true)
}

#[cfg(target_os = "linux")]
fn send_abstract(sock: &UnixDatagram, name: &[u8], data: &[u8]) -> io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(data, &addr)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_sock: &UnixDatagram, _name: &[u8], _data: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract notify sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

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
        fn set(value: Option<&OsStr>) -> Self {
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
        assert!(!ready().unwrap());
        assert!(!notify_socket(Some(OsStr::new("")), "READY=1").unwrap());
    }

    #[test]
    fn ready_stopping_and_status_reach_the_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let _env = EnvGuard::set(Some(path.as_os_str()));

        assert!(ready().unwrap());
        assert_eq!(receive(&server), "READY=1");
        assert!(status("synced 120 messages\nREADY=1").unwrap());
        assert_eq!(receive(&server), "STATUS=synced 120 messages READY=1");
        assert!(extend_timeout(Duration::from_secs(90)).unwrap());
        assert_eq!(receive(&server), "EXTEND_TIMEOUT_USEC=90000000");
        assert!(stopping().unwrap());
        assert_eq!(receive(&server), "STOPPING=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_socket_form_is_understood() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("leadgate-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let value = OsString::from(format!("@{name}"));
        let _env = EnvGuard::set(Some(&value));

        assert!(ready().unwrap());
        assert_eq!(receive(&server), "READY=1");
    }

    #[test]
    fn missing_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.sock");
        assert!(notify_socket(Some(path.as_os_str()), "READY=1").is_err());
        assert!(notify_socket(Some(OsStr::new("relative")), "READY=1").is_err());
    }
}
