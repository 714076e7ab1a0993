//! The benches' IMAP client (`#[path]`-included by each bench).
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

/// A blocking IMAP client that only frames responses (literals included)
/// and counts bytes, so both servers pay the same client cost.
pub struct Client {
    pub s: TcpStream,
    buf: Vec<u8>,
    tag: u32,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
        let mut c = Client::over(s);
        c.read_line().expect("greeting");
        c
    }

    /// A client on a connected stream, its greeting not read yet.
    pub fn over(s: TcpStream) -> Client {
        Client {
            s,
            buf: Vec::new(),
            tag: 0,
        }
    }

    pub fn fill(&mut self) -> std::io::Result<()> {
        let mut tmp = [0u8; 256 * 1024];
        let n = loop {
            match self.s.read(&mut tmp) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }

    /// Reads one line with its literals; returns (first line, total bytes).
    pub fn read_line(&mut self) -> std::io::Result<(String, usize)> {
        let mut total = 0;
        let mut first = None;
        loop {
            let pos = loop {
                if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                self.fill()?;
            };
            let line: Vec<u8> = self.buf.drain(..pos + 2).collect();
            total += line.len();
            let text = String::from_utf8_lossy(&line).into_owned();
            let lit = text
                .trim_end()
                .strip_suffix('}')
                .and_then(|t| t.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            first.get_or_insert(text);
            match lit {
                Some(n) => {
                    while self.buf.len() < n {
                        self.fill()?;
                    }
                    self.buf.drain(..n);
                    total += n;
                }
                None => return Ok((first.unwrap_or_default(), total)),
            }
        }
    }

    /// Runs a command; returns bytes received and the whole text of the
    /// untagged lines (first line of each) plus the tagged line.
    pub fn run(&mut self, cmd: &str) -> (usize, String) {
        self.tag += 1;
        let tag = format!("b{}", self.tag);
        self.s
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .unwrap();
        let mut bytes = 0;
        let mut text = String::new();
        loop {
            let (line, n) = self.read_line().expect("read response");
            bytes += n;
            if line.starts_with(&format!("{tag} ")) {
                assert!(line.contains(" OK "), "{cmd} failed: {line}");
                text.push_str(&line);
                return (bytes, text);
            }
            if text.len() < 64 * 1024 {
                text.push_str(&line);
            }
        }
    }

    pub fn login(port: u16, who: (&str, &str)) -> Client {
        let mut c = Client::connect(port);
        c.run(&format!("LOGIN {} {}", who.0, who.1));
        c
    }

    /// Starts IDLE and returns once the server said "+".
    pub fn idle(&mut self) {
        self.tag += 1;
        self.s
            .write_all(format!("b{} IDLE\r\n", self.tag).as_bytes())
            .unwrap();
        loop {
            let (line, _) = self.read_line().expect("IDLE");
            if line.starts_with('+') {
                return;
            }
        }
    }
}
