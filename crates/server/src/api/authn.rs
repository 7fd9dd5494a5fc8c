//! A user's name and password, checked one way for every door (the API's login, the web
//! page's, and any later one): the login gate admits the attempt or throttles it (429, noted
//! in the activity log once a minute), the password is verified off the runtime against the
//! user's hash (an unknown name against the gate's dummy hash: same time, same memory), and
//! the outcome is counted by the throttle and recorded in the activity log.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{blocking, login_event, ApiError, AppState};
use crate::login::Refusal;
use crate::meta::{EventKind, User};

/// Why a name and password did not let someone in.
pub(crate) enum Denied {
    /// Refused before any password work; says when to come back.
    Throttled(Refusal),
    /// A wrong name or password (which of the two is not said).
    Wrong,
    /// The password was right, but the account is disabled.
    Disabled(User),
    /// The metadata store failed.
    Failed(ApiError),
}

impl AppState {
    /// The user `name` is, if `password` is theirs and they may log in. `way` says which
    /// door (`api`, `web`) in the activity log.
    pub(crate) async fn authenticate(
        self: &Arc<Self>,
        name: &str,
        password: String,
        peer: SocketAddr,
        way: &'static str,
    ) -> Result<User, Denied> {
        let ticket = match self.login.admit(name, peer.ip()).await {
            Ok(t) => t,
            Err(refusal) => {
                self.note_throttled(EventKind::LoginThrottled, name.to_string(), peer, way)
                    .await;
                return Err(Denied::Throttled(refusal));
            }
        };
        let tried = name.to_string();
        let found = blocking(self, move |m| {
            let row = m.user_by_name(&tried)?;
            let ok = ticket.verify(&password, row.as_ref().map(|(_, hash)| hash.as_str()));
            Ok(row.filter(|_| ok).map(|(u, _)| u))
        })
        .await
        .map_err(Denied::Failed)?;
        login_event(self, name, found.as_ref(), peer, way).await;
        match found {
            Some(user) if !user.disabled => {
                self.login.succeeded(name, peer.ip());
                Ok(user)
            }
            // A disabled account's attempts count as failures too: it is no way around the
            // throttle.
            Some(user) => {
                self.login.failed(name, peer.ip());
                Err(Denied::Disabled(user))
            }
            None => {
                self.login.failed(name, peer.ip());
                Err(Denied::Wrong)
            }
        }
    }
}
