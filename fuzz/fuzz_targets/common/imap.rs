//! What the IMAP targets share: a store with one user, an index with a
//! selectable INBOX of five messages filed into leads, an upstream that
//! refuses connections (so every upstream-bound command takes its error
//! path), and a driver that runs one session over `tokio::io::duplex`.

use std::{net::SocketAddr, sync::Arc, sync::OnceLock};

use leadgate::{
    auth::{hash_password, Authenticator},
    config::{Config, ListenerTls},
    imap::{session, views::ViewSet, Ctx},
    index::{BodyCache, Index},
    leads::{
        book::{LeadBook, SystemClock},
        ingest::Ingester,
    },
    net::listener::Admission,
    store::{
        messages::{MessageMeta, MessageRecord, MessageWrite},
        users::{Role, User},
        Store,
    },
    upstream::{pool::Pool, sync::Health, Upstream},
};

pub struct World {
    rt: tokio::runtime::Runtime,
    ctx: Arc<Ctx>,
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
        let text = format!(
            r#"
[[imap.listener]]
addr = "127.0.0.1:0"
tls = "plaintext"
[upstream.imap]
host = "127.0.0.1"
port = 1
tls = "none"
username = "sales"
password = "x"
timeout_secs = 1
[store]
path = "{}/fuzz.redb"
[auth]
argon2_memory_kib = 8
argon2_iterations = 1
max_failures = 1000000
max_failures_per_source = 1000000
max_failures_per_user = 1000000
failure_delay_max_ms = 0
[limits]
max_literal_bytes = 65536
"#,
            dir.path().display()
        );
        let config = Arc::new(Config::parse(&text).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = Store::open(&config.store.path).unwrap();
        let ctx = rt.block_on(async {
            let now = 0;
            store
                .user_add(
                    "test",
                    User {
                        name: "fuzz".into(),
                        role: Role::Rep,
                        enabled: true,
                        password_hash: hash_password("fuzzpass", &config.auth).unwrap(),
                        email: None,
                        display_name: None,
                        created: now,
                        changed: now,
                    },
                )
                .await
                .unwrap()
                .unwrap();
            let index = Arc::new(
                Index::load(
                    store.clone(),
                    BodyCache {
                        budget: 1 << 20,
                        max_message: 1 << 16,
                    },
                )
                .unwrap(),
            );
            let rec = index.reset("INBOX", 7).await.unwrap();
            let writes = (1..=5)
                .map(|uid| MessageWrite::Put {
                    record: MessageRecord {
                        uid,
                        flags: vec!["\\Seen".into()],
                        modseq: 1,
                        meta: Arc::new(MessageMeta {
                            size: 100,
                            internal_date: "27-Nov-2026 21:33:58 +0000".into(),
                            envelope: b"(NIL \"s\" NIL NIL NIL NIL NIL NIL NIL NIL)"
                                .as_slice()
                                .into(),
                            bodystructure: b"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 3 1)"
                                .as_slice()
                                .into(),
                            message_id: None,
                            in_reply_to: None,
                            references: Box::new([]),
                        }),
                    },
                    header: Some(b"Subject: s\r\n\r\n".to_vec()),
                })
                .collect();
            let mut rec = rec;
            rec.uidnext = 6;
            index.apply(rec, writes).await.unwrap();
            let health = Arc::new(Health::default());
            let upstream = Arc::new(Upstream::new(
                config.upstream.imap.clone(),
                config.upstream.imap.resolve_password().unwrap(),
                leadgate::net::tls::client_config(None).unwrap(),
            ));
            let pool = Arc::new(Pool::new(upstream, health.clone()));
            let auth = Arc::new(Authenticator::new(store.clone(), config.auth.clone()));
            let book = Arc::new(
                LeadBook::load(
                    store.clone(),
                    Arc::new(config.leads.clone()),
                    Arc::new(SystemClock),
                )
                .unwrap(),
            );
            let folders = vec!["INBOX".to_owned()];
            let views = Arc::new(
                ViewSet::load(
                    index.clone(),
                    book.clone(),
                    config.views.clone(),
                    folders.clone(),
                )
                .unwrap(),
            );
            // File the fixture messages into leads, so stamps and views work.
            Ingester {
                index: index.clone(),
                book: book.clone(),
                folders,
            }
            .catch_up()
            .await;
            let metrics = Arc::new(leadgate::metrics::Metrics::new());
            let sessions = Arc::new(leadgate::net::sessions::SessionRegistry::default());
            Arc::new(Ctx::new(
                config.clone(),
                index,
                pool,
                auth,
                health,
                None,
                book,
                views,
                metrics,
                sessions,
            ))
        });
        drop(dir);
        World { rt, ctx }
    })
}

/// Runs one session fed `input`, to the end; panics if it hangs.
pub fn run_session(input: Vec<u8>) {
    let w = world();
    w.rt.block_on(crate::duplex::drive(input, |server| {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let ctx = w.ctx.clone();
        async move {
            // The stop sender lives as long as the session.
            let _keep = stop_tx;
            session::run(
                ctx,
                server,
                peer,
                ListenerTls::Plaintext,
                Admission::Accepted,
                stop,
            )
            .await
        }
    }));
}
