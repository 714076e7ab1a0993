//! The folder names a user sees, and where each lives upstream. `INBOX` is
//! the shared mailbox's INBOX; lead folders and action folders are virtual
//! (see `views`); every other real folder is the user's own,
//! stored upstream under `<prefix><d><user><d>` so the shared account holds
//! all the mail while each person sees only their own Drafts/Sent/Trash.

use super::views::defs::{ActionFolder, ACTION_ROOTS, VIEW_ROOTS};

/// The client-side hierarchy delimiter.
pub const DELIM: char = '/';

/// Private folders every user gets, with their special-use attribute.
pub const DEFAULT_FOLDERS: [(&str, &str); 3] = [
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folder {
    /// The shared INBOX.
    Inbox,
    /// One of the user's own folders.
    Private { client: String, upstream: String },
    /// A virtual lead folder (`Leads/Mine`, `Review/Overdue`, ...).
    View { id: u32, name: String },
    /// A folder that is a command (`Assign to/bob`); always empty.
    Action { name: String, action: ActionFolder },
}

impl Folder {
    /// The upstream mailbox of a real folder.
    pub fn upstream(&self) -> Option<&str> {
        match self {
            Folder::Inbox => Some("INBOX"),
            Folder::Private { upstream, .. } => Some(upstream),
            Folder::View { .. } | Folder::Action { .. } => None,
        }
    }

    pub fn client_name(&self) -> &str {
        match self {
            Folder::Inbox => "INBOX",
            Folder::Private { client, .. } => client,
            Folder::View { name, .. } | Folder::Action { name, .. } => name,
        }
    }

    /// Whether its messages are the shared mailbox's (stamped, with lead
    /// keywords).
    pub fn is_shared(&self) -> bool {
        matches!(self, Folder::Inbox | Folder::View { .. })
    }
}

/// Top-level names leadgate keeps for its own folders.
pub fn is_reserved_root(name: &str) -> bool {
    let first = name.split(DELIM).next().unwrap_or_default();
    VIEW_ROOTS
        .iter()
        .chain(ACTION_ROOTS.iter())
        .any(|r| r.eq_ignore_ascii_case(first))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderError {
    Invalid(&'static str),
    Reserved,
    /// The user's name cannot be one upstream path segment.
    UnsafeUser,
}

/// The modified base64 of RFC 3501 5.1.3 (`,` for `/`, no padding).
const MUTF7: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &match base64::alphabet::Alphabet::new(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,",
    ) {
        Ok(a) => a,
        Err(_) => panic!("the modified base64 alphabet is valid"),
    },
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
);

/// Whether `name` is canonical modified UTF-7: every `&` opens `&-` or a
/// base64 run of UTF-16 that decodes and encodes nothing printable ASCII
/// could say itself. `&AEk-NBOX` (an encoded `I`) is refused: a name has
/// exactly one spelling, so no rule can be walked around with another.
fn canonical_mutf7(name: &str) -> bool {
    use base64::Engine;
    let mut rest = name;
    while let Some(amp) = rest.find('&') {
        let after = &rest[amp + 1..];
        let Some(end) = after.find('-') else {
            return false;
        };
        let run = &after[..end];
        rest = &after[end + 1..];
        if run.is_empty() {
            continue;
        }
        let Ok(bytes) = MUTF7.decode(run) else {
            return false;
        };
        if bytes.len() % 2 != 0 {
            return false;
        }
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        let Ok(text) = String::from_utf16(&units) else {
            return false;
        };
        if text.chars().any(|c| (' '..='~').contains(&c)) || MUTF7.encode(&bytes) != run {
            return false;
        }
    }
    true
}

/// A folder name as every decision sees it, made once at the edge: valid
/// modified UTF-7, trailing delimiters removed, `INBOX` in any case (or
/// `INBOX/`) spelled `INBOX`.
pub fn normalize(raw: &str) -> Result<String, FolderError> {
    if !canonical_mutf7(raw) {
        return Err(FolderError::Invalid("not valid modified UTF-7"));
    }
    let name = raw.trim_end_matches(DELIM);
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok("INBOX".into());
    }
    Ok(name.to_owned())
}

/// Whether a user name can be one segment of an upstream folder path.
pub fn safe_user_segment(user: &str, upstream_delim: char) -> bool {
    !user.is_empty()
        && user != "."
        && user != ".."
        && !user.contains(upstream_delim)
        && !user.contains(DELIM)
        && !user.contains('.')
        && !user.chars().any(|c| c.is_control() || c == '*' || c == '%')
}

impl std::fmt::Display for FolderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FolderError::Invalid(why) => write!(f, "invalid folder name: {why}"),
            FolderError::Reserved => f.write_str("that name is reserved by leadgate"),
            FolderError::UnsafeUser => f.write_str(
                "your user name cannot be mapped to upstream folders; ask your leadgate admin",
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FolderMap {
    root: String,
    upstream_delim: char,
}

impl FolderMap {
    /// The map of `user`'s folders; refused for a user name that is not a
    /// single safe path segment (checked again here, whatever `user add`
    /// let in before: `bob.x` under a `.` delimiter is `bob`'s folder `x`).
    pub fn new(prefix: &str, user: &str, upstream_delim: char) -> Result<Self, FolderError> {
        if !safe_user_segment(user, upstream_delim) {
            return Err(FolderError::UnsafeUser);
        }
        Ok(FolderMap {
            root: format!("{prefix}{upstream_delim}{user}"),
            upstream_delim,
        })
    }

    /// The upstream folder that holds this user's private folders.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Resolves a name a client sent. INBOX is case-insensitive.
    pub fn resolve(&self, client: &str) -> Result<Folder, FolderError> {
        let name = normalize(client)?;
        if name == "INBOX" {
            return Ok(Folder::Inbox);
        }
        let name = name.as_str();
        validate(name, self.upstream_delim)?;
        let first = name.split(DELIM).next().unwrap_or_default();
        if first.eq_ignore_ascii_case("INBOX") || is_reserved_root(name) {
            return Err(FolderError::Reserved);
        }
        let translated: String = name
            .chars()
            .map(|c| if c == DELIM { self.upstream_delim } else { c })
            .collect();
        Ok(Folder::Private {
            client: name.to_owned(),
            upstream: format!("{}{}{}", self.root, self.upstream_delim, translated),
        })
    }

    /// The client name of an upstream folder under this user's root.
    pub fn client_name(&self, upstream: &str) -> Option<String> {
        let rest = upstream
            .strip_prefix(&self.root)?
            .strip_prefix(self.upstream_delim)?;
        if rest.is_empty() {
            return None;
        }
        Some(
            rest.chars()
                .map(|c| if c == self.upstream_delim { DELIM } else { c })
                .collect(),
        )
    }
}

fn validate(name: &str, upstream_delim: char) -> Result<(), FolderError> {
    if name.is_empty() {
        return Err(FolderError::Invalid("empty"));
    }
    if name.len() > 255 {
        return Err(FolderError::Invalid("longer than 255 bytes"));
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return Err(FolderError::Invalid(
            "control characters, '*' and '%' are not allowed",
        ));
    }
    if upstream_delim != DELIM && name.contains(upstream_delim) {
        return Err(FolderError::Invalid(
            "contains the upstream's hierarchy delimiter",
        ));
    }
    if name
        .split(DELIM)
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(FolderError::Invalid("empty or dot path segment"));
    }
    Ok(())
}

/// IMAP LIST pattern matching: `*` matches anything, `%` anything but the
/// hierarchy delimiter. Case-sensitive, except that INBOX matches any case.
///
/// Matched by dynamic programming over the name's positions, linear in the
/// pattern's length: a pattern full of wildcards costs no more than any
/// other (plain backtracking is exponential in the number of `*`).
pub fn list_match(pattern: &str, name: &str) -> bool {
    if name == "INBOX" && pattern.eq_ignore_ascii_case("INBOX") {
        return true;
    }
    let n = name.as_bytes();
    // reach[j]: the pattern so far matches n[..j].
    let mut reach = vec![false; n.len() + 1];
    reach[0] = true;
    let mut next = vec![false; n.len() + 1];
    for &p in pattern.as_bytes() {
        match p {
            b'*' => {
                let mut any = false;
                for j in 0..=n.len() {
                    any |= reach[j];
                    next[j] = any;
                }
            }
            b'%' => {
                let mut any = false;
                for j in 0..=n.len() {
                    if j > 0 && n[j - 1] == DELIM as u8 {
                        any = false;
                    }
                    any |= reach[j];
                    next[j] = any;
                }
            }
            c => {
                next[0] = false;
                for j in 1..=n.len() {
                    next[j] = reach[j - 1] && n[j - 1] == c;
                }
            }
        }
        std::mem::swap(&mut reach, &mut next);
        if !reach.contains(&true) {
            return false;
        }
    }
    reach[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_folders_live_under_the_user_root() {
        let m = FolderMap::new("leadgate-users", "alice", '.').unwrap();
        assert_eq!(m.resolve("inbox").unwrap(), Folder::Inbox);
        let f = m.resolve("Archive/2024").unwrap();
        assert_eq!(f.upstream(), Some("leadgate-users.alice.Archive.2024"));
        assert_eq!(m.resolve("Leads/Mine"), Err(FolderError::Reserved));
        assert_eq!(m.resolve("assign to/x"), Err(FolderError::Reserved));
        assert_eq!(
            m.client_name("leadgate-users.alice.Archive.2024")
                .as_deref(),
            Some("Archive/2024")
        );
        assert_eq!(m.client_name("leadgate-users.bob.Sent"), None);
        assert!(m.resolve("a.b").is_err());
        assert!(m.resolve("a//b").is_err());
        assert!(m.resolve("../bob").is_err());
        assert!(m.resolve("INBOX/x").is_err());
        assert!(m.resolve("x*").is_err());
        assert_eq!(m.resolve("INBOX/").unwrap(), Folder::Inbox);
    }

    #[test]
    fn a_user_name_is_one_safe_segment() {
        assert!(FolderMap::new("p", "bob.x", '.').is_err());
        assert!(FolderMap::new("p", "bob.x", '/').is_err());
        assert!(FolderMap::new("p", "a/b", '.').is_err());
        assert!(FolderMap::new("p", "..", '/').is_err());
        assert!(FolderMap::new("p", "a\u{7}", '/').is_err());
        assert!(FolderMap::new("p", "bob-x_1", '.').is_ok());
    }

    #[test]
    fn names_are_normalised_once() {
        assert_eq!(normalize("inbox/").unwrap(), "INBOX");
        assert_eq!(normalize("InBoX//").unwrap(), "INBOX");
        assert_eq!(normalize("Leads/Mine/").unwrap(), "Leads/Mine");
        assert_eq!(normalize("Entw&APw-rfe").unwrap(), "Entw&APw-rfe");
        assert_eq!(normalize("A&-B").unwrap(), "A&-B");
        // An encoded printable ASCII letter: INBOX spelled another way.
        assert!(normalize("&AEk-NBOX").is_err());
        assert!(normalize("x&AEk").is_err());
        assert!(normalize("x&!!-").is_err());
        // Unpaired surrogate.
        assert!(normalize("&2D0-").is_err());
    }

    #[test]
    fn list_patterns() {
        assert!(list_match("*", "Archive/2024"));
        assert!(!list_match("%", "Archive/2024"));
        assert!(list_match("%", "Archive"));
        assert!(list_match("Archive/%", "Archive/2024"));
        assert!(list_match("inbox", "INBOX"));
        assert!(!list_match("Sen", "Sent"));
        assert!(list_match("S*t", "Sent"));
        assert!(list_match("Leads/%/%", "Leads/Review/Overdue"));
        assert!(!list_match("Leads/%", "Leads/Review/Overdue"));
        assert!(list_match("%/*e", "Leads/Review/Overdue"));
        // Thirty wildcards against a long name that does not match: answered
        // at once (backtracking would take years).
        let many = format!("{}x", "*%".repeat(30));
        assert!(!list_match(&many, &"a/".repeat(200)));
        assert!(list_match(&many, &format!("{}x", "a/".repeat(200))));
    }
}
