//! Device claims: which running agent holds a computer's identity (user, device). A second
//! live agent with the same identity is a copied configuration folder posing as another
//! computer. The claims are rows, not one process's memory, so behind a load balancer every
//! server instance sees the same holder.

use super::sql::{args, Sql};
use super::Meta;
use crate::Result;

/// How a claim went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The identity is this instance's (or free, for a probe).
    Held,
    /// Another instance was heard from this many nanoseconds ago.
    Taken { seen_ago_ns: i64 },
}

impl Meta {
    /// Claims `device` of `user_id` for agent `instance` at `now_ns`, unless another instance
    /// was heard from within `live_ns`. A `probe` only looks. Claims not heard from for a long
    /// while are dropped on the way, so the table holds about the live agents.
    ///
    /// # Errors
    /// The store's.
    pub fn claim_device(
        &self,
        user_id: i64,
        device: &str,
        instance: &str,
        (now_ns, live_ns): (i64, i64),
        probe: bool,
    ) -> Result<Claim> {
        let what = "claiming a computer's identity";
        self.write(what, |db| {
            if !probe {
                // One statement, so two instances claiming at once cannot both win.
                let won = db.exec(
                    what,
                    "INSERT INTO agent_claims(user_id, device, instance, seen_ns) VALUES(?1, ?2, ?3, ?4)
                     ON CONFLICT(user_id, device) DO UPDATE
                     SET instance=excluded.instance, seen_ns=excluded.seen_ns
                     WHERE agent_claims.instance=excluded.instance OR agent_claims.seen_ns<?5",
                    args![user_id, device, instance, now_ns, now_ns.saturating_sub(live_ns)],
                )?;
                if won == 1 {
                    forget_stale(db, what, now_ns.saturating_sub(live_ns.saturating_mul(4)))?;
                    return Ok(Claim::Held);
                }
            }
            let held = db.opt(
                what,
                "SELECT instance, seen_ns FROM agent_claims WHERE user_id=?1 AND device=?2",
                args![user_id, device],
                |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)),
            )?;
            Ok(match held {
                Some((other, seen)) if other != instance && now_ns - seen < live_ns => {
                    Claim::Taken {
                        seen_ago_ns: (now_ns - seen).max(0),
                    }
                }
                _ => Claim::Held,
            })
        })
    }

    /// Gives up `instance`'s claim (its agent stopped); another instance's stays.
    ///
    /// # Errors
    /// The store's.
    pub fn release_device(&self, user_id: i64, device: &str, instance: &str) -> Result<()> {
        let what = "releasing a computer's identity";
        self.write(what, |db| {
            db.exec(
                what,
                "DELETE FROM agent_claims WHERE user_id=?1 AND device=?2 AND instance=?3",
                args![user_id, device, instance],
            )
            .map(drop)
        })
    }
}

fn forget_stale(db: &dyn Sql, what: &str, before_ns: i64) -> Result<()> {
    db.exec(
        what,
        "DELETE FROM agent_claims WHERE seen_ns<?1",
        args![before_ns],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: i64 = 90_000_000_000;

    #[test]
    fn a_live_claim_keeps_others_out_until_it_ages_or_is_released() {
        let dir = tempfile::tempdir().expect("temp dir");
        let m = Meta::open(&dir.path().join("meta.sqlite")).expect("open");
        let t0 = 1_000 * LIVE;
        assert_eq!(
            m.claim_device(1, "d", "a", (t0, LIVE), false)
                .expect("claim"),
            Claim::Held
        );
        // The holder renews; another instance is refused, and a probe is told the same.
        assert_eq!(
            m.claim_device(1, "d", "a", (t0 + 5, LIVE), false)
                .expect("renew"),
            Claim::Held
        );
        assert_eq!(
            m.claim_device(1, "d", "b", (t0 + 10, LIVE), false)
                .expect("claim"),
            Claim::Taken { seen_ago_ns: 5 }
        );
        assert!(matches!(
            m.claim_device(1, "d", "b", (t0 + 10, LIVE), true)
                .expect("probe"),
            Claim::Taken { .. }
        ));
        // Another user's device of the same name, or another device, is its own.
        assert_eq!(
            m.claim_device(2, "d", "b", (t0, LIVE), false)
                .expect("claim"),
            Claim::Held
        );
        assert_eq!(
            m.claim_device(1, "e", "b", (t0, LIVE), false)
                .expect("claim"),
            Claim::Held
        );
        // A probe records nothing: the holder is still the holder.
        assert_eq!(
            m.claim_device(1, "f", "p", (t0, LIVE), true)
                .expect("probe"),
            Claim::Held
        );
        assert_eq!(
            m.claim_device(1, "f", "q", (t0, LIVE), false)
                .expect("claim"),
            Claim::Held
        );
        // Released: free at once. Another instance's release changes nothing.
        m.release_device(1, "d", "b").expect("not b's");
        assert!(matches!(
            m.claim_device(1, "d", "b", (t0 + 20, LIVE), false)
                .expect("claim"),
            Claim::Taken { .. }
        ));
        m.release_device(1, "d", "a").expect("release");
        assert_eq!(
            m.claim_device(1, "d", "b", (t0 + 30, LIVE), false)
                .expect("claim"),
            Claim::Held
        );
        // Aged out: free.
        let later = t0 + 30 + LIVE;
        assert_eq!(
            m.claim_device(1, "d", "c", (later, LIVE), false)
                .expect("claim"),
            Claim::Held
        );
    }
}
