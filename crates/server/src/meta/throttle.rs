//! Failed logins in the store, for several server instances: each keeps its own throttle in
//! memory (`login.rs`) and, on a shared store, also counts here, so an attacker who spreads
//! guesses over the instances behind a load balancer meets one count.

use super::sql::{args, Sql};
use super::Meta;
use crate::Result;

/// What a failure is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKey<'a> {
    /// A user name's BLAKE3 hash (fixed size, whatever was sent).
    Name(&'a [u8]),
    /// A source address (an IPv4 address or an IPv6 /64), as text.
    Address(&'a [u8]),
}

impl FailureKey<'_> {
    fn parts(&self) -> (i64, &[u8]) {
        match self {
            FailureKey::Name(k) => (0, k),
            FailureKey::Address(k) => (1, k),
        }
    }
}

impl Meta {
    /// Counts a failure against each of `keys` at `now_ns`; a key whose last failure is older
    /// than `forget_ns` starts again at one. Rows nobody failed on for that long go.
    ///
    /// # Errors
    /// The store's.
    pub fn record_login_failure(
        &self,
        keys: &[FailureKey<'_>],
        now_ns: i64,
        forget_ns: i64,
    ) -> Result<()> {
        let what = "counting a failed login";
        let stale = now_ns.saturating_sub(forget_ns);
        self.write(what, |db| {
            for key in keys {
                let (kind, k) = key.parts();
                db.exec(
                    what,
                    "INSERT INTO login_failures(kind, key, count, last_ns) VALUES(?1, ?2, 1, ?3)
                     ON CONFLICT(kind, key) DO UPDATE SET
                     count=CASE WHEN login_failures.last_ns<?4 THEN 1 ELSE login_failures.count+1 END,
                     last_ns=excluded.last_ns",
                    args![kind, k, now_ns, stale],
                )?;
            }
            forget(db, what, stale)
        })
    }

    /// Each key's failures (count, last time), `None` for one without a recent failure.
    ///
    /// # Errors
    /// The store's.
    pub fn login_failures(
        &self,
        keys: &[FailureKey<'_>],
        now_ns: i64,
        forget_ns: i64,
    ) -> Result<Vec<Option<(u32, i64)>>> {
        let what = "reading failed logins";
        let stale = now_ns.saturating_sub(forget_ns);
        self.read(|db| {
            keys.iter()
                .map(|key| {
                    let (kind, k) = key.parts();
                    db.opt(
                        what,
                        "SELECT count, last_ns FROM login_failures
                         WHERE kind=?1 AND key=?2 AND last_ns>=?3",
                        args![kind, k, stale],
                        |r| {
                            let count = r.get::<i64>(0)?.clamp(0, i64::from(u32::MAX));
                            Ok((count as u32, r.get::<i64>(1)?))
                        },
                    )
                })
                .collect()
        })
    }

    /// Forgets `key`'s failures (a user name that just logged in).
    ///
    /// # Errors
    /// The store's.
    pub fn clear_login_failures(&self, key: FailureKey<'_>) -> Result<()> {
        let what = "clearing failed logins";
        let (kind, k) = key.parts();
        self.write(what, |db| {
            db.exec(
                what,
                "DELETE FROM login_failures WHERE kind=?1 AND key=?2",
                args![kind, k],
            )
            .map(drop)
        })
    }
}

fn forget(db: &dyn Sql, what: &str, before_ns: i64) -> Result<()> {
    db.exec(
        what,
        "DELETE FROM login_failures WHERE last_ns<?1",
        args![before_ns],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORGET: i64 = 900_000_000_000;

    #[test]
    fn failures_count_up_start_again_when_forgotten_and_clear() {
        let dir = tempfile::tempdir().expect("temp dir");
        let m = Meta::open(&dir.path().join("meta.sqlite")).expect("open");
        let (name, addr) = (
            FailureKey::Name(b"hash-of-bob"),
            FailureKey::Address(b"192.0.2.1"),
        );
        let t0 = 10 * FORGET;
        assert_eq!(
            m.login_failures(&[name, addr], t0, FORGET).expect("read"),
            [None, None]
        );
        m.record_login_failure(&[name, addr], t0, FORGET)
            .expect("fail");
        m.record_login_failure(&[name], t0 + 1, FORGET)
            .expect("fail");
        assert_eq!(
            m.login_failures(&[name, addr], t0 + 2, FORGET)
                .expect("read"),
            [Some((2, t0 + 1)), Some((1, t0))]
        );
        // Long after: forgotten when read, and counting starts again.
        let later = t0 + FORGET + 10;
        assert_eq!(
            m.login_failures(&[name], later, FORGET).expect("read"),
            [None]
        );
        m.record_login_failure(&[name], later, FORGET)
            .expect("fail");
        assert_eq!(
            m.login_failures(&[name], later, FORGET).expect("read"),
            [Some((1, later))]
        );
        m.clear_login_failures(name).expect("clear");
        assert_eq!(
            m.login_failures(&[name], later, FORGET).expect("read"),
            [None]
        );
    }
}
