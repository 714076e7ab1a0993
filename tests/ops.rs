//! Operations: the systemd unit passes `systemd-analyze verify` and rates
//! "OK" in `systemd-analyze security`, `scripts/install` stages a complete
//! install under DESTDIR, the fail2ban filter catches failed logins (and
//! only those), and the Grafana dashboard only asks for metrics leadgate
//! exports.
//!
//! `systemd-analyze` comes with Debian's `systemd` package; the fail2ban
//! check runs when `fail2ban-regex` is on PATH (or named by
//! `$LEADGATE_FAIL2BAN_REGEX`) and is skipped with a note otherwise.

use std::{
    collections::BTreeSet,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use leadgate::metrics::{LeadCount, LeadSnapshot, Metrics, Proto, RelayResult};

const UNIT: &str = "systemd/leadgate.service";
/// `systemd-analyze security` rates 0 (locked down) to 10 (exposed); up to
/// 2.0 is its "OK" band.
const MAX_EXPOSURE: f64 = 2.0;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Output {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion, killing it after `timeout`.
fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        ok: status.success(),
        code: status.code(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// The full path of `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn systemd_analyze() -> PathBuf {
    which("systemd-analyze").unwrap_or_else(|| {
        panic!(
            "systemd-analyze is not installed: `apt-get install -y systemd` \
             (scripts/install-deps should install it); PID 1 need not be systemd"
        )
    })
}

/// Writes `unit` to `<dir>/leadgate.service` with the binary path replaced
/// by `binary`, which exists, so `verify` checks every other line honestly.
fn unit_for_binary(unit: &str, dir: &Path, binary: &Path) -> PathBuf {
    assert!(
        unit.contains("/usr/local/bin/leadgate"),
        "the unit should run /usr/local/bin/leadgate"
    );
    let text = unit.replace("/usr/local/bin/leadgate", &binary.display().to_string());
    let path = dir.join("leadgate.service");
    std::fs::write(&path, text).unwrap();
    path
}

/// `systemd-analyze verify` exits 0 even for unknown keys (it only warns),
/// so anything it prints is a failure.
fn assert_verifies(analyze: &Path, unit: &Path) {
    let out = run(
        Command::new(analyze)
            .arg("verify")
            .arg("--man=no")
            .arg(unit),
        Duration::from_secs(60),
    );
    assert!(
        out.ok && out.stderr.trim().is_empty() && out.stdout.trim().is_empty(),
        "systemd-analyze verify {} (exit {:?}):\n{}{}",
        unit.display(),
        out.code,
        out.stdout,
        out.stderr
    );
}

/// The number in "Overall exposure level for leadgate.service: 1.4 OK".
fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let (_, rest) = line.rsplit_once(": ")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn systemd_unit_verifies_and_rates_2_or_better() {
    let analyze = systemd_analyze();
    let unit = std::fs::read_to_string(repo().join(UNIT)).unwrap();
    for needed in [
        "Type=notify",
        "NotifyAccess=main",
        "DynamicUser=yes",
        "LoadCredential=upstream-password:",
        "LoadCredential=tls-key:",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
        "SystemCallFilter=@system-service",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "check-config",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = unit_for_binary(&unit, dir.path(), Path::new(env!("CARGO_BIN_EXE_leadgate")));
    assert_verifies(&analyze, &path);

    // --threshold makes the command itself fail above 2.0 (it counts in
    // tenths); the printed number is checked too.
    let out = run(
        Command::new(&analyze)
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(&path)
            .env("SYSTEMD_COLORS", "0"),
        Duration::from_secs(60),
    );
    let score = exposure(&out.stdout).unwrap_or_else(|| {
        panic!(
            "no exposure level in the report:\n{}{}",
            out.stdout, out.stderr
        )
    });
    println!("systemd-analyze security: overall exposure level {score}");
    assert!(
        out.ok && score <= MAX_EXPOSURE,
        "exposure {score} is above {MAX_EXPOSURE} (exit {:?}):\n{}",
        out.code,
        out.stdout
    );
}

#[test]
fn exposure_line_is_parsed() {
    let report =
        "✗ PrivateNetwork= ...  0.5\n\n→ Overall exposure level for leadgate.service: 1.4 OK 🙂\n";
    assert_eq!(exposure(report), Some(1.4));
    assert_eq!(exposure("nothing here"), None);
}

fn install(destdir: &Path, extra: &[&str]) -> Output {
    let out = run(
        Command::new(repo().join("scripts/install"))
            .args(["--binary", env!("CARGO_BIN_EXE_leadgate")])
            .args(extra)
            .env("DESTDIR", destdir)
            .env_remove("PREFIX"),
        Duration::from_secs(60),
    );
    assert!(
        out.ok,
        "scripts/install failed (exit {:?}):\n{}{}",
        out.code, out.stdout, out.stderr
    );
    out
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn install_script_stages_everything_under_destdir_and_keeps_an_existing_config() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let out = install(root, &[]);

    let bin = root.join("usr/local/bin/leadgate");
    let unit = root.join("etc/systemd/system/leadgate.service");
    let config = root.join("etc/leadgate/leadgate.toml");
    let doc = root.join("usr/local/share/doc/leadgate");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(mode(&config), 0o644);
    assert!(root.join("etc/leadgate/tls").is_dir());
    for f in [
        "README.md",
        "leadgate.example.toml",
        "grafana-dashboard.json",
        "fail2ban/filter.d/leadgate.conf",
        "fail2ban/jail.d/leadgate.conf",
    ] {
        assert!(doc.join(f).is_file(), "{f} not installed");
    }
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_leadgate")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        std::fs::read_to_string(repo().join("config/leadgate.example.toml")).unwrap()
    );
    for step in [
        "/etc/leadgate/upstream-password",
        "0600",
        "check-config",
        "leadgate user add",
        "systemctl daemon-reload && systemctl enable --now leadgate",
    ] {
        assert!(
            out.stdout.contains(step),
            "next steps lack {step:?}:\n{}",
            out.stdout
        );
    }
    // The staged unit runs the staged binary, and is a valid unit.
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(unit_text
        .contains("ExecStart=/usr/local/bin/leadgate --config /etc/leadgate/leadgate.toml serve"));
    if let Some(analyze) = which("systemd-analyze") {
        let check = tempfile::tempdir().unwrap();
        assert_verifies(&analyze, &unit_for_binary(&unit_text, check.path(), &bin));
    }

    // A second run keeps the admin's config.
    std::fs::write(&config, "# edited by the admin\n").unwrap();
    let out = install(root, &[]);
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "# edited by the admin\n"
    );
    assert!(out.stdout.contains("kept as it is"), "{}", out.stdout);
}

#[test]
fn install_script_prefix_moves_the_binary_and_the_unit_follows() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), &["--prefix", "/opt/leadgate"]);
    assert!(dir.path().join("opt/leadgate/bin/leadgate").is_file());
    let unit =
        std::fs::read_to_string(dir.path().join("etc/systemd/system/leadgate.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/opt/leadgate/bin/leadgate --config"),
        "{unit}"
    );
    assert!(
        unit.contains("ExecStartPre=/opt/leadgate/bin/leadgate --config"),
        "{unit}"
    );
    let settings: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(settings.iter().all(|l| !l.contains("/usr/local")), "{unit}");
    assert!(
        settings.contains(&"Documentation=file:///opt/leadgate/share/doc/leadgate/README.md"),
        "{unit}"
    );
}

#[test]
fn install_script_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = install(dir.path(), &["--dry-run"]);
    assert!(out.stdout.contains("would run"), "{}", out.stdout);
    assert!(out.stdout.contains("nothing was changed"), "{}", out.stdout);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// `fail2ban-regex` from `$LEADGATE_FAIL2BAN_REGEX` or PATH.
fn fail2ban_regex() -> Option<PathBuf> {
    std::env::var_os("LEADGATE_FAIL2BAN_REGEX")
        .map(PathBuf::from)
        .or_else(|| which("fail2ban-regex"))
}

/// The addresses fail2ban would count for `line`.
fn banned(tool: &Path, filter: &Path, line: &str, date_pattern: Option<&str>) -> Vec<String> {
    let mut cmd = Command::new(tool);
    cmd.arg("-v");
    if let Some(p) = date_pattern {
        cmd.args(["-d", p]);
    }
    let out = run(cmd.arg(line).arg(filter), Duration::from_secs(60));
    assert!(
        out.ok,
        "fail2ban-regex failed (exit {:?}):\n{}{}",
        out.code, out.stdout, out.stderr
    );
    let matched = out
        .stdout
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("Lines: ")?;
            let (_, m) = rest.split_once(" ignored, ")?;
            m.split_whitespace().next()?.parse::<usize>().ok()
        })
        .unwrap_or_else(|| panic!("no summary in:\n{}", out.stdout));
    // With -v, each hit is listed under the regex as "|      <ip>  <time>".
    let ips: Vec<String> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("|      "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert_eq!(ips.len(), matched, "{}", out.stdout);
    ips
}

#[test]
fn fail2ban_filter_matches_failed_logins_and_nothing_else() {
    let filter = repo().join("config/fail2ban/filter.d/leadgate.conf");
    let jail =
        std::fs::read_to_string(repo().join("config/fail2ban/jail.d/leadgate.conf")).unwrap();
    for needed in [
        "[leadgate]",
        "filter   = leadgate",
        "backend  = systemd",
        "journalmatch = _SYSTEMD_UNIT=leadgate.service",
    ] {
        assert!(jail.contains(needed), "the jail lacks {needed:?}");
    }
    let Some(tool) = fail2ban_regex() else {
        println!(
            "NOTE: fail2ban-regex not found; filter not checked \
             (scripts/install-deps should install fail2ban)"
        );
        return;
    };

    const ESC: &str = "\x1b";
    let caught: Vec<(String, &str)> = vec![
        (
            "2026-11-27T22:01:49.629902Z  WARN leadgate::auth: auth failed: user=alice ip=127.0.0.1 proto=imap reason=bad-credentials".into(),
            "127.0.0.1",
        ),
        (
            "2026-11-27T22:01:50.100000Z  WARN imap{peer=198.51.100.7:50312 user=\"x y\"}:login: leadgate::auth: auth failed: user=- ip=198.51.100.7 proto=smtp reason=locked-out".into(),
            "198.51.100.7",
        ),
        (
            "2026-11-27T22:01:51.000001Z  WARN leadgate::auth: auth failed: user=bob ip=2001:db8::5 proto=imap reason=disabled".into(),
            "2001:db8::5",
        ),
        // A user name that looks like an address does not fool it.
        (
            "2026-11-27T22:01:52.000001Z  WARN leadgate::auth: auth failed: user=ip=10.9.9.9 ip=203.0.113.9 proto=imap reason=bad-credentials".into(),
            "203.0.113.9",
        ),
        // tracing's colours when writing to a terminal.
        (
            format!(
                "{ESC}[2m2026-11-27T22:01:53.629902Z{ESC}[0m {ESC}[33m WARN{ESC}[0m {ESC}[1mimap{ESC}[0m{ESC}[1m{{{ESC}[0m{ESC}[3mpeer{ESC}[0m{ESC}[2m={ESC}[0m203.0.113.11:1 {ESC}[1m}}{ESC}[0m{ESC}[2m:{ESC}[0m {ESC}[2mleadgate::auth{ESC}[0m{ESC}[2m:{ESC}[0m auth failed: user=dave ip=203.0.113.11 proto=smtp reason=bad-credentials"
            ),
            "203.0.113.11",
        ),
    ];
    let ignored = [
        // No password was checked, or the fault is leadgate's.
        "2026-11-27T22:02:00.000000Z  WARN leadgate::auth: auth failed: user=- ip=192.0.2.1 proto=imap reason=cleartext-login-refused",
        "2026-11-27T22:02:01.000000Z  WARN leadgate::auth: auth failed: user=carol ip=192.0.2.2 proto=imap reason=internal-error",
        "2026-11-27T22:02:02.000000Z  INFO leadgate::auth: auth ok: user=alice ip=192.0.2.3 proto=imap",
        // Client text logged by another target cannot forge a failure.
        "2026-11-27T22:02:03.000000Z  WARN imap{peer=192.0.2.4:1}: leadgate::imap: unknown command: x leadgate::auth: auth failed: user=x ip=192.0.2.66 proto=imap reason=bad-credentials",
        "2026-11-27T22:02:04.000000Z  INFO leadgate::imap: said: WARN leadgate::auth: auth failed: user=x ip=192.0.2.67 proto=imap reason=bad-credentials",
        "2026-11-27T22:02:05.000000Z  WARN leadgate::auth: auth failed: user=x ip=192.0.2.68 proto=imap reason=bad-credentials and more",
    ];
    for (line, ip) in &caught {
        assert_eq!(
            banned(&tool, &filter, line, None),
            vec![ip.to_string()],
            "{line}"
        );
    }
    for line in ignored {
        assert!(banned(&tool, &filter, line, None).is_empty(), "{line}");
    }
    // As the journal backend formats it: "host ident[pid]: message", with
    // the time from the journal.
    let journal = "mail1 leadgate[4242]: 2026-11-27T22:01:49.629902Z  WARN leadgate::auth: auth failed: user=alice ip=198.51.100.20 proto=imap reason=bad-credentials";
    assert_eq!(
        banned(&tool, &filter, journal, Some("{NONE}")),
        vec!["198.51.100.20".to_string()]
    );
    println!("fail2ban filter checked with {}", tool.display());
}

/// Every `leadgate_*` name in `text`.
fn metric_names(text: &str, into: &mut BTreeSet<String>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("leadgate_") {
        let start = i + pos;
        let boundary = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        let end = start
            + text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(text.len() - start);
        if boundary {
            into.insert(text[start..end].to_owned());
        }
        i = end;
    }
}

fn walk<'a>(v: &'a serde_json::Value, key: &str, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) if k == key => out.push(s),
                    _ => walk(v, key, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, key, out)),
        _ => {}
    }
}

#[test]
fn grafana_dashboard_uses_only_exported_metrics() {
    let text = std::fs::read_to_string(repo().join("config/grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is valid JSON");
    assert!(dash["schemaVersion"].as_u64().unwrap_or(0) >= 36);
    assert_eq!(dash["uid"], "leadgate");

    // Touch every metric once so each appears in the output.
    let m = Metrics::new();
    let _conn = m.connection(Proto::Imap);
    m.login(Proto::Imap, true);
    m.login(Proto::Imap, false);
    m.command(Proto::Smtp, "EHLO");
    m.set_upstream_up(true);
    m.first_response("alice", Duration::from_secs(3600));
    m.reply_blocked("alice");
    m.relay(RelayResult::Ok, Duration::from_millis(300));
    m.set_lead_source(|| LeadSnapshot {
        counts: vec![LeadCount {
            status: "new".into(),
            owner: "-".into(),
            count: 1,
        }],
        overdue: 0,
    });
    let exported: BTreeSet<String> = m
        .encode()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();

    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id"
        );
        if p["type"] != "row" {
            assert!(
                p["targets"].as_array().is_some_and(|t| !t.is_empty()),
                "panel {} has no query",
                p["title"]
            );
        }
    }

    let mut exprs = Vec::new();
    walk(&dash, "expr", &mut exprs);
    walk(&dash, "definition", &mut exprs);
    let mut used = BTreeSet::new();
    for e in &exprs {
        metric_names(e, &mut used);
    }
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard asks for metrics leadgate does not export: {unknown:?}\nexported: {exported:?}"
    );
    for family in [
        "leadgate_logins_total",
        "leadgate_connections_active",
        "leadgate_upstream_up",
        "leadgate_upstream_sync_lag_seconds",
        "leadgate_leads",
        "leadgate_leads_overdue",
        "leadgate_first_response_seconds_bucket",
        "leadgate_replies_blocked_total",
        "leadgate_relay_seconds_bucket",
    ] {
        assert!(used.contains(family), "no panel shows {family}");
    }
}
