//! LOGIN and AUTHENTICATE PLAIN against leadgate's own users. Refused
//! before TLS unless the listener is explicitly plaintext on loopback.

use crate::imap::session::{Authed, Io, Session, State};

impl<S: Io> Session<S> {
    pub(crate) fn refuse_cleartext_login(&mut self, tag: &str) {
        tracing::warn!(
            target: "leadgate::auth",
            "auth failed: user=- ip={} proto=imap reason=cleartext-login-refused",
            self.peer.ip()
        );
        self.no(
            tag,
            Some("PRIVACYREQUIRED"),
            "Login is disabled until TLS is active: use STARTTLS or the implicit-TLS port",
        );
    }

    pub(crate) async fn login(&mut self, tag: &str, user: &str, password: &str) {
        if !self.login_allowed() {
            tracing::warn!(
                target: "leadgate::auth",
                "auth failed: user={} ip={} proto=imap reason=cleartext-login-refused",
                crate::auth::sanitize_log(user),
                self.peer.ip()
            );
            self.no(
                tag,
                Some("PRIVACYREQUIRED"),
                "Login is disabled until TLS is active: use STARTTLS or the implicit-TLS port",
            );
            return;
        }
        match self
            .ctx
            .auth
            .login(user, password, self.peer.ip(), "imap")
            .await
        {
            Ok(principal) => {
                let seen = match self.ctx.index.user_seen(&principal.name).await {
                    Ok(seen) => seen,
                    Err(e) => {
                        tracing::error!(user = %principal.name, "read state: {e}");
                        self.no(
                            tag,
                            Some("UNAVAILABLE"),
                            "Your read state cannot be loaded now; try again later",
                        );
                        return;
                    }
                };
                self.ticket = Some(self.ctx.sessions.register(&principal.name));
                let folders = self.ctx.folder_map(&principal.name).await;
                if folders.is_none() {
                    tracing::warn!(user = %principal.name, "upstream unreachable at login: private folders unavailable for now");
                }
                self.state = State::Authenticated(Box::new(Authed {
                    user: principal,
                    seen,
                    folders,
                    selected: None,
                    condstore: false,
                    qresync: false,
                }));
                let caps = self.capabilities().join(" ");
                self.ok(tag, Some(&format!("CAPABILITY {caps}")), "Logged in");
            }
            Err(failure) => {
                self.failed_logins += 1;
                let code = match failure {
                    crate::auth::AuthFailure::Internal => "UNAVAILABLE",
                    crate::auth::AuthFailure::Disabled => "CONTACTADMIN",
                    _ => "AUTHENTICATIONFAILED",
                };
                self.no(tag, Some(code), failure.client_text());
            }
        }
    }

    /// SASL PLAIN: authzid NUL authcid NUL password. An authzid other than
    /// the user themself is refused (no proxy logins).
    pub(crate) async fn auth_plain(&mut self, tag: &str, data: Vec<u8>) {
        if !self.login_allowed() {
            self.refuse_cleartext_login(tag);
            return;
        }
        let mut parts = data.split(|&b| b == 0);
        let (Some(authz), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            self.bad(tag, "Malformed PLAIN credentials");
            return;
        };
        if !authz.is_empty() && authz != user {
            self.no(
                tag,
                Some("AUTHORIZATIONFAILED"),
                "Logging in as another user is not allowed",
            );
            return;
        }
        let user = String::from_utf8_lossy(user).into_owned();
        let pass = String::from_utf8_lossy(pass).into_owned();
        self.login(tag, &user, &pass).await;
    }
}
