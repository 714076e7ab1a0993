//! The admin socket of the running daemon: a unix socket, mode 0600, so
//! only the daemon's own user (and root) can connect, and a peer whose
//! `SO_PEERCRED` uid is neither is refused all the same; the directory it
//! lives in is the admin's to protect (the systemd unit's
//! `RuntimeDirectory=leadgate` makes /run/leadgate, mode 0750).
//!
//! Protocol: the client writes one JSON [`WireRequest`] line (at most
//! 64 KiB, within 10 seconds), the daemon runs it with [`execute`] and
//! answers one JSON [`Response`] line, then closes. The actor recorded in
//! the audit log is the peer's unix user from `SO_PEERCRED`
//! (`cli:<name>`, `cli:uid<N>` when the user database does not know it); for
//! root, the `sudo_user` the client names.
//!
//! The socket is bound in a private (0700) directory beside its path,
//! made 0600 there, then renamed into place, so it is never reachable with
//! looser permissions. A socket file left by a daemon that died is removed
//! at start; a socket that still answers, or a path that is not a socket,
//! is left alone and the daemon runs without an admin socket.

use std::{
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{watch, Semaphore},
};

use nix::unistd::{Uid, User};

use super::{execute, same_store, AdminCtx, Response, WireRequest};

/// Largest request line.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Time a client has to send its request, and to take the response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a command may run (disabling a user with thousands of leads
/// moves each one in its own audited transaction).
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(600);
/// Commands run at the same time; more connections wait.
const MAX_CONCURRENT: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("admin socket {path}: directory {dir} does not exist (systemd's RuntimeDirectory=leadgate makes /run/leadgate)")]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error("admin socket {path}: another process answers on it")]
    InUse { path: PathBuf },
    #[error("admin socket {path}: the path exists and is not a socket; not touching it")]
    NotASocket { path: PathBuf },
    #[error("admin socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A bound admin socket, ready for [`serve`].
pub struct AdminListener {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file, to remove only our own at exit.
    id: (u64, u64),
}

impl AdminListener {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Binds the admin socket at `path` (mode 0600). Call inside the runtime.
pub fn bind(path: &Path) -> Result<AdminListener, SocketError> {
    let io = |source| SocketError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(SocketError::NoDirectory {
            path: path.to_owned(),
            dir,
        });
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse {
                    path: path.to_owned(),
                });
            }
            tracing::info!("removing stale admin socket {}", path.display());
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(_) => {
            return Err(SocketError::NotASocket {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "admin.sock".into());
    let private = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io)?;
    let staged = private.join("s");
    let bound = (|| {
        let l = std::os::unix::net::UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        l.set_nonblocking(true)?;
        Ok(l)
    })();
    let _ = std::fs::remove_dir_all(&private);
    let std_listener = bound.map_err(io)?;
    let meta = std::fs::metadata(path).map_err(io)?;
    let listener = UnixListener::from_std(std_listener).map_err(io)?;
    Ok(AdminListener {
        listener,
        path: path.to_owned(),
        id: (meta.dev(), meta.ino()),
    })
}

/// Answers admin requests until `shutdown`, then removes the socket file
/// (if it is still this one).
pub async fn serve(
    listener: AdminListener,
    ctx: Arc<AdminCtx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT));
    tracing::info!("admin socket listening on {}", listener.path.display());
    loop {
        tokio::select! {
            accepted = listener.listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let ctx = ctx.clone();
                    let permits = permits.clone();
                    tokio::spawn(async move {
                        let Ok(_permit) = permits.acquire_owned().await else { return };
                        handle(stream, &ctx).await;
                    });
                }
                Err(e) => {
                    tracing::warn!("admin socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }
    let ours =
        std::fs::symlink_metadata(&listener.path).is_ok_and(|m| (m.dev(), m.ino()) == listener.id);
    if ours {
        let _ = std::fs::remove_file(&listener.path);
    }
}

/// Reads one line of at most `max` bytes (without its newline).
async fn read_line_capped(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    max: usize,
) -> Result<Vec<u8>, String> {
    let mut reader = BufReader::new(stream.take(max as u64 + 1));
    let mut line = Vec::new();
    reader
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| format!("reading the request: {e}"))?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > max {
            format!("request larger than {max} bytes")
        } else {
            "request not ended by a newline".into()
        });
    }
    line.pop();
    Ok(line)
}

/// Whether a peer may use the admin socket: root, or the daemon's own
/// user. File modes are the first fence; this one holds even if the
/// socket's directory or mode were loosened by hand.
pub fn peer_allowed(peer_uid: Option<u32>, own_uid: u32) -> bool {
    peer_uid.is_some_and(|u| u == 0 || u == own_uid)
}

async fn handle(mut stream: UnixStream, ctx: &AdminCtx) {
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let own = nix::unistd::geteuid().as_raw();
    if !peer_allowed(uid, own) {
        tracing::warn!(
            "admin socket: refused a peer with uid {}",
            uid.map_or("unknown".into(), |u| u.to_string())
        );
        let mut line = serde_json::to_vec(&Response::error(
            "permission denied: the admin socket serves root and the leadgate service user only",
        ))
        .unwrap_or_default();
        line.push(b'\n');
        let _ = tokio::time::timeout(IO_TIMEOUT, stream.write_all(&line)).await;
        return;
    }
    let response =
        match tokio::time::timeout(IO_TIMEOUT, read_line_capped(&mut stream, MAX_REQUEST)).await {
            Err(_) => Response::error("no request within 10 seconds"),
            Ok(Err(e)) => Response::error(e),
            Ok(Ok(line)) => match serde_json::from_slice::<WireRequest>(&line) {
                Err(e) => Response::error(format!("not a leadgate admin request: {e}")),
                Ok(wire) => run(ctx, uid, wire).await,
            },
        };
    let mut line = serde_json::to_vec(&response)
        .unwrap_or_else(|_| br#"{"ok":false,"error":"response could not be encoded"}"#.to_vec());
    line.push(b'\n');
    let _ = tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&line).await?;
        stream.shutdown().await
    })
    .await;
}

async fn run(ctx: &AdminCtx, uid: Option<u32>, wire: WireRequest) -> Response {
    if let Some(theirs) = &wire.store {
        if !same_store(theirs, &ctx.config.store.path) {
            let mut r = Response::error(format!(
                "this leadgate serves the store {}, not {}",
                ctx.config.store.path.display(),
                theirs.display()
            ));
            r.kind = Some("wrong-store".into());
            return r;
        }
    }
    let actor = peer_actor(uid, wire.sudo_user.as_deref());
    let what = wire.request.name();
    tracing::info!("admin: {actor} runs {what}");
    match tokio::time::timeout(EXEC_TIMEOUT, execute(ctx, &actor, wire.request)).await {
        Ok(Ok(output)) => Response::ok(output),
        Ok(Err(e)) => {
            tracing::info!("admin: {actor} {what} failed: {e}");
            Response::error(e.to_string())
        }
        Err(_) => Response::error(format!(
            "{what} did not finish within {} seconds; what it did so far is kept and audited",
            EXEC_TIMEOUT.as_secs()
        )),
    }
}

/// `cli:<user>` for the peer: its name from the system's user database
/// (getpwuid_r, so NSS sources count too), `uid<N>` when unknown; for root
/// the sudo user it names, if any.
pub fn peer_actor(uid: Option<u32>, sudo_user: Option<&str>) -> String {
    let Some(uid) = uid else {
        return "cli:unknown".into();
    };
    if uid == 0 {
        if let Some(s) = sudo_user.filter(|s| plausible_user_name(s)) {
            return format!("cli:{s}");
        }
    }
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(user)) if plausible_user_name(&user.name) => format!("cli:{}", user.name),
        _ => format!("cli:uid{uid}"),
    }
}

fn plausible_user_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-$@".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_and_the_service_user_are_served() {
        assert!(peer_allowed(Some(0), 998));
        assert!(peer_allowed(Some(998), 998));
        assert!(!peer_allowed(Some(1000), 998));
        assert!(!peer_allowed(None, 998));
    }

    #[test]
    fn peer_names_come_from_the_user_database() {
        assert_eq!(peer_actor(Some(0), None), "cli:root");
        assert_eq!(peer_actor(None, None), "cli:unknown");
        assert_eq!(peer_actor(Some(0), Some("alice")), "cli:alice");
        assert_eq!(peer_actor(Some(0), Some("a b\n")), "cli:root");
        assert_eq!(peer_actor(Some(4_000_000), None), "cli:uid4000000");
    }

    #[tokio::test]
    async fn a_request_line_is_capped() {
        let big = vec![b'x'; MAX_REQUEST + 10];
        let mut r = big.as_slice();
        let err = read_line_capped(&mut r, MAX_REQUEST).await.unwrap_err();
        assert!(err.contains("larger than"), "{err}");
        let mut r: &[u8] = b"{\"a\":1}\nrest";
        assert_eq!(
            read_line_capped(&mut r, MAX_REQUEST).await.unwrap(),
            b"{\"a\":1}"
        );
    }
}
