//! What the SMTP targets share: one store with one user, a plaintext
//! (loopback-style) submission context with small limits, a handler that
//! accepts every message after checking what the session promises about it,
//! and a driver that runs one session over `tokio::io::duplex`.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use base64::{engine::general_purpose::STANDARD, Engine};
use leadgate::{
    auth::{hash_password, Authenticator, Principal},
    config::{AuthConfig, ListenerTls},
    net::listener::Admission,
    smtp::{self, BoxFuture, Reply, SmtpConfig, SmtpCtx, Submission, SubmissionHandler},
    store::{
        users::{Role, User},
        Store,
    },
};

pub const USER: &str = "fuzz";
pub const PASSWORD: &str = "fuzzpass";
pub const OWN_ADDRESS: &str = "fuzz@example.com";
pub const SHARED: &str = "sales@example.com";
/// A recipient the handler refuses at RCPT time.
const REFUSED_RCPT: &str = "refused@example.com";
const MAX_MESSAGE: usize = 2048;
const MAX_RECIPIENTS: usize = 3;

/// Accepts every message after checking what the session promises about it.
struct Accept;

impl SubmissionHandler for Accept {
    fn check_recipient<'a>(
        &'a self,
        user: &'a Principal,
        rcpt: &'a str,
    ) -> BoxFuture<'a, Result<(), Reply>> {
        assert_eq!(user.name, USER, "RCPT before a login");
        let refused = rcpt.eq_ignore_ascii_case(REFUSED_RCPT);
        Box::pin(async move {
            if refused {
                Err(Reply::new(550, (5, 1, 1), "No such recipient"))
            } else {
                Ok(())
            }
        })
    }

    fn submit<'a>(&'a self, sub: Submission) -> BoxFuture<'a, Reply> {
        assert_eq!(sub.user.name, USER, "a submission without a login");
        let env = &sub.envelope;
        assert!(
            env.mail_from.eq_ignore_ascii_case(OWN_ADDRESS)
                || env.mail_from.eq_ignore_ascii_case(SHARED),
            "sender not the user's own: {:?}",
            env.mail_from
        );
        assert!(!env.rcpt_to.is_empty(), "a submission without recipients");
        assert!(
            env.rcpt_to.len() <= MAX_RECIPIENTS,
            "{} recipients",
            env.rcpt_to.len()
        );
        for (i, r) in env.rcpt_to.iter().enumerate() {
            assert!(!r.is_empty(), "empty recipient");
            assert!(
                !r.eq_ignore_ascii_case(REFUSED_RCPT),
                "a refused recipient was kept"
            );
            assert!(
                !env.rcpt_to[..i].iter().any(|o| o.eq_ignore_ascii_case(r)),
                "duplicate recipient {r:?}"
            );
        }
        assert!(
            sub.data.len() <= MAX_MESSAGE,
            "{} bytes over the limit",
            sub.data.len()
        );
        Box::pin(async { Reply::ok("Queued as F1") })
    }
}

pub struct World {
    pub rt: tokio::runtime::Runtime,
    pub ctx: Arc<SmtpCtx>,
    /// `EHLO` and a valid `AUTH PLAIN` for [`USER`].
    pub login: Vec<u8>,
    /// `FUZZ_SHOW_REPLIES=1`: print what the server said (to check seeds).
    pub show: bool,
}

/// The store commits durably (an fsync per login audit event): keep it in
/// memory-backed /dev/shm where there is one, or runs are disk-bound. The
/// directory is removed as soon as the store is open (statics are never
/// dropped, so it would outlive the process otherwise); the open file lives
/// on until the process exits.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let builder = tempfile::Builder::new()
        .prefix("leadgate-fuzz-")
        .tempdir_in(shm);
    builder.or_else(|_| tempfile::tempdir()).unwrap()
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = scratch_dir();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cfg = AuthConfig {
            argon2_memory_kib: 8,
            argon2_iterations: 1,
            max_failures: 1_000_000,
            max_failures_per_source: 1_000_000,
            max_failures_per_user: 1_000_000,
            failure_delay_max_ms: 0,
            ..Default::default()
        };
        let store = Store::open(&dir.path().join("fuzz.redb")).unwrap();
        rt.block_on(store.user_add(
            "test",
            User {
                name: USER.into(),
                role: Role::Rep,
                enabled: true,
                password_hash: hash_password(PASSWORD, &cfg).unwrap(),
                email: Some(OWN_ADDRESS.into()),
                display_name: None,
                created: 0,
                changed: 0,
            },
        ))
        .unwrap()
        .unwrap();
        drop(dir);
        let config = SmtpConfig {
            shared_address: SHARED.into(),
            max_message_bytes: MAX_MESSAGE,
            max_recipients: MAX_RECIPIENTS,
            max_errors: 20,
            ..Default::default()
        };
        let ctx = Arc::new(SmtpCtx {
            hostname: "mx.leadgate.test".into(),
            config: Arc::new(config),
            auth: Arc::new(Authenticator::new(store, cfg)),
            tls: None,
            handler: Arc::new(Accept),
            sessions: None,
        });
        let login = format!(
            "EHLO x\r\nAUTH PLAIN {}\r\n",
            STANDARD.encode(format!("\0{USER}\0{PASSWORD}"))
        );
        World {
            rt,
            ctx,
            login: login.into_bytes(),
            show: std::env::var_os("FUZZ_SHOW_REPLIES").is_some(),
        }
    })
}

/// Every reply line: three digits, then space or dash (or nothing), no
/// stray CR or LF, CRLF at the end, at most 512 octets (RFC 5321 §4.5.3.1.5).
fn check_replies(out: &[u8]) {
    let mut lines = out.split(|&b| b == b'\n');
    let unterminated = lines.next_back().unwrap_or_default();
    assert!(
        unterminated.is_empty(),
        "output does not end in CRLF: {:?}",
        String::from_utf8_lossy(out)
    );
    for line in lines {
        let text = String::from_utf8_lossy(line);
        let line = line
            .strip_suffix(b"\r")
            .unwrap_or_else(|| panic!("bare LF after {text:?}"));
        assert!(!line.contains(&b'\r'), "bare CR in reply line {text:?}");
        assert!(
            line.len() + 2 <= 512,
            "reply line of {} octets",
            line.len() + 2
        );
        assert!(
            line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit),
            "no reply code: {text:?}"
        );
        assert!(
            matches!(line.get(3), None | Some(b' ' | b'-')),
            "bad separator: {text:?}"
        );
    }
}

/// One session over an in-memory pipe: `data` is all the client sends
/// before it half-closes, after `EHLO` and a valid login if `after_login`.
/// Panics if the session panics, hangs for 20 s or says anything malformed.
pub fn run(data: &[u8], after_login: bool) {
    let w = world();
    let input = if after_login {
        [w.login.as_slice(), data].concat()
    } else {
        data.to_vec()
    };
    w.rt.block_on(async {
        let out = crate::duplex::drive(input, |server| {
            let (stop_tx, stop) = tokio::sync::watch::channel(false);
            let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
            let ctx = w.ctx.clone();
            async move {
                // The stop sender lives as long as the session.
                let _keep = stop_tx;
                smtp::run(
                    ctx,
                    server,
                    peer,
                    ListenerTls::Plaintext,
                    Admission::Accepted,
                    stop,
                )
                .await
            }
        })
        .await;
        if w.show {
            eprintln!("--- server said:\n{}", String::from_utf8_lossy(&out));
        }
        check_replies(&out);
    });
}
