//! The CLI's side of the admin socket (blocking: the CLI has no runtime
//! until it needs one). [`call`] says whether the daemon answered, is not
//! there (then the CLI runs the command itself over the store), or could
//! not be asked (then the command must not run twice: the CLI reports it).

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

use super::{socket::EXEC_TIMEOUT, Response, WireRequest};

/// Largest response the CLI reads (a `lead list --all --json` of a big
/// team).
const MAX_RESPONSE: u64 = 512 * 1024 * 1024;

/// What became of a request.
#[derive(Debug)]
pub enum Reach {
    /// The daemon ran it (successfully or not).
    Answered(Response),
    /// Nobody listens there (no socket file, a stale one, or a daemon
    /// serving another store): run the command in-process.
    NotThere(String),
    /// The socket exists but cannot be used (permission denied, say): the
    /// daemon may well be running.
    Unreachable(String),
    /// The request was sent but no complete answer came: it may have run.
    Broken(String),
}

/// Sends one request to the daemon at `path` and reads its answer.
pub fn call(path: &Path, request: &WireRequest) -> Reach {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Reach::NotThere(format!("{}: {e}", path.display()))
        }
        Err(e) => return Reach::Unreachable(format!("{}: {e}", path.display())),
    };
    let mut line = match serde_json::to_vec(request) {
        Ok(l) => l,
        Err(e) => return Reach::Unreachable(format!("cannot encode the request: {e}")),
    };
    line.push(b'\n');
    let _ = stream.set_write_timeout(Some(super::socket::IO_TIMEOUT));
    let _ = stream.set_read_timeout(Some(EXEC_TIMEOUT + Duration::from_secs(30)));
    if let Err(e) = stream.write_all(&line).and_then(|()| stream.flush()) {
        // Nothing was read by then (one line is read whole before it runs).
        return Reach::Unreachable(format!("sending to {}: {e}", path.display()));
    }
    let mut reader = BufReader::new((&stream).take(MAX_RESPONSE));
    let mut answer = Vec::new();
    if let Err(e) = reader.read_until(b'\n', &mut answer) {
        return Reach::Broken(format!("no answer from {}: {e}", path.display()));
    }
    match serde_json::from_slice::<Response>(&answer) {
        Ok(r) if r.kind.as_deref() == Some("wrong-store") => {
            Reach::NotThere(r.error.unwrap_or_default())
        }
        Ok(r) => Reach::Answered(r),
        Err(_) if answer.is_empty() => {
            Reach::Broken(format!("{} closed without an answer", path.display()))
        }
        Err(e) => Reach::Broken(format!("unreadable answer from {}: {e}", path.display())),
    }
}
