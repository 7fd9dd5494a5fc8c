//! Admission of login attempts, so that guessing passwords costs a stranger much and the server
//! little: [`LoginGate`] decides whether an attempt may run its password verification, and
//! [`LoginThrottle`] remembers failures, and which addresses logged in.
//!
//! The login handler calls [`LoginGate::admit`], runs the verification with the [`Ticket`] it
//! gets on the blocking pool, then reports [`LoginGate::failed`] or [`LoginGate::succeeded`].
//! Invariants callers rely on:
//! - At most `login_concurrency` Argon2id verifications run at once (~19 MiB each): the permit
//!   travels inside the ticket into the blocking task, so a client that hangs up does not free
//!   it while the verification still runs. Their working memory is pooled and reused, so the
//!   server holds at most `login_concurrency` of it, whatever threads ran them.
//! - Unknown users are verified against a real hash made at start with the same parameters, so
//!   they cost the same time and memory as known ones.
//! - An attempt from a user name or source address that failed recently, one that finds the
//!   queue full, and one that waited `login_wait` in vain are answered 429 with Retry-After
//!   before any verification work; refusing costs a hash-map lookup.
//! - A freed slot goes first to addresses where someone logged in recently and nothing failed
//!   since, then to addresses with no recent failure and no other attempt in progress, then to
//!   the rest ([`Priority`]). A flood's addresses fail at once and fall to the last queue, so
//!   a user at a familiar address waits for at most the verifications already running.
//! - The throttle's tables have a fixed maximum size; at the cap the entries that failed
//!   longest ago are forgotten first.
//!
//! The throttle is kept in memory and a restart forgets it: a stranger cannot restart the
//! server, and what a restart forgives is at most [`MAX_DELAY`] per key. On a store shared by
//! several instances (PostgreSQL) failures are also counted there (`meta/throttle.rs`) and
//! checked with the same delays, so guesses spread over the instances meet one count; a
//! single server does not pay a write per failed guess.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::auth;
use crate::limits::{Limits, SourceKey};
use crate::meta::FailureKey;
use crate::Result;

/// Delay after the first counted failure; each further failure doubles it up to [`MAX_DELAY`].
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
pub const MAX_DELAY: Duration = Duration::from_secs(8);
/// Failures an address may have before it is slowed: people behind one NAT mistype too.
pub const FREE_FAILURES_PER_ADDRESS: u32 = 16;
/// A key with no failure for this long starts again from nothing.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// A successful login makes its address [`Priority::Known`] for this long.
pub const KNOWN_FOR: Duration = Duration::from_secs(24 * 3600);
/// Retry-After of an attempt refused because every verification slot was taken.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Why an attempt was answered 429 without verifying anything.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Every verification slot is taken and the queue is full or moved too slowly.
    Busy { retry_after: Duration },
    /// The user name or the source address failed recently.
    Throttled { retry_after: Duration },
}

impl Refusal {
    pub fn retry_after(&self) -> Duration {
        match self {
            Refusal::Busy { retry_after } | Refusal::Throttled { retry_after } => *retry_after,
        }
    }

    /// Whole seconds for the Retry-After header, never 0 (a client would retry at once).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after().as_secs_f64().ceil().max(1.0) as u64
    }

    pub fn message(&self) -> &'static str {
        match self {
            Refusal::Busy { .. } => "the server is busy with other logins; try again shortly",
            Refusal::Throttled { .. } => {
                "too many failed logins for this user or from this address; try again later"
            }
        }
    }
}

/// Bounded, fair admission to password verification. See the module doc.
pub struct LoginGate {
    slots: Arc<Slots>,
    per_address: usize,
    /// Attempts running or waiting, per source address; an entry lives only while it is
    /// non-zero, so the map is never larger than the attempts in progress.
    in_progress: Arc<Mutex<HashMap<SourceKey, usize>>>,
    wait: Duration,
    /// Argon2 working memory of finished verifications, for the next ones.
    memory: Arc<Mutex<Vec<auth::HashMemory>>>,
    dummy_hash: Arc<str>,
    throttle: LoginThrottle,
    /// A store shared with other server instances: failures count there too.
    shared: std::sync::OnceLock<Arc<crate::meta::Meta>>,
    /// Logins refused for a wrong name or password, for the metrics.
    failures: std::sync::atomic::AtomicU64,
}

/// The right to run one verification, with the memory to run it in; consumed by
/// [`Ticket::verify`].
pub struct Ticket {
    _slot: SlotPermit,
    _address: AddressSlot,
    memory: Option<auth::HashMemory>,
    pool: Arc<Mutex<Vec<auth::HashMemory>>>,
    dummy_hash: Arc<str>,
}

impl Ticket {
    /// Verifies `password` against `hash`, or against the dummy hash when the user is unknown
    /// (same cost, always false). Blocking: call it on the blocking pool.
    pub fn verify(mut self, password: &str, hash: Option<&str>) -> bool {
        let mut memory = self.memory.take().unwrap_or_default();
        let ok = match hash {
            Some(h) => auth::verify_password_in(password, h, &mut memory),
            None => {
                auth::verify_password_in(password, &self.dummy_hash, &mut memory);
                false
            }
        };
        self.memory = Some(memory);
        ok
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // There are never more tickets than permits, so neither is the pool larger.
        if let Some(m) = self.memory.take() {
            lock(&self.pool).push(m);
        }
    }
}

/// One running or waiting attempt of a source address.
struct AddressSlot {
    map: Arc<Mutex<HashMap<SourceKey, usize>>>,
    key: SourceKey,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl LoginGate {
    /// # Errors
    /// Only if Argon2 refuses its default parameters (never in practice).
    pub fn new(limits: &Limits) -> Result<Self> {
        // Any password works: nobody can log in as an unknown user, the hash only has to cost
        // what a real one costs.
        let dummy_hash = auth::hash_password(&auth::random_password())?;
        Ok(LoginGate {
            slots: Slots::new(limits.login_concurrency, limits.login_queue),
            per_address: limits.login_per_address.max(1),
            in_progress: Arc::new(Mutex::new(HashMap::new())),
            wait: limits.login_wait,
            memory: Arc::new(Mutex::new(Vec::new())),
            dummy_hash: dummy_hash.into(),
            throttle: LoginThrottle::new(limits.login_throttle_entries),
            shared: std::sync::OnceLock::new(),
            failures: Default::default(),
        })
    }

    /// Counts failures in `meta` as well, which other server instances share (once; a
    /// second call changes nothing).
    pub fn share_through(&self, meta: Arc<crate::meta::Meta>) {
        let _ = self.shared.set(meta);
    }

    /// The longer wait the shared counts impose on `user` from `source`, if any. A store that
    /// cannot be read imposes none: this instance's own throttle still holds, and the login
    /// itself needs the store.
    fn shared_check(&self, user: &str, source: SourceKey) -> Result<(), Refusal> {
        let Some(meta) = self.shared.get() else {
            return Ok(());
        };
        let now = wall_ns();
        let read = with_keys(user, source, |keys| {
            meta.login_failures(keys, now, FORGET_AFTER.as_nanos() as i64)
        });
        let rows = match read {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the shared failed-login counts");
                return Ok(());
            }
        };
        let wait = rows
            .iter()
            .zip([0, FREE_FAILURES_PER_ADDRESS])
            .filter_map(|(row, free)| {
                let (count, last_ns) = (*row)?;
                let until = last_ns.saturating_add(delay_for(count, free)?.as_nanos() as i64);
                (until > now).then(|| Duration::from_nanos((until - now) as u64))
            })
            .max();
        match wait {
            Some(retry_after) => Err(Refusal::Throttled { retry_after }),
            None => Ok(()),
        }
    }

    /// Waits for the right to verify a password of `user` from `from`.
    ///
    /// # Errors
    /// A [`Refusal`] when the name or address is throttled, the address already has
    /// `login_per_address` attempts in progress, the queue is full, or no slot freed up within
    /// `login_wait`.
    pub async fn admit(&self, user: &str, from: IpAddr) -> Result<Ticket, Refusal> {
        let source = SourceKey::of(from);
        self.throttle.check(user, source)?;
        self.shared_check(user, source)?;
        let (address, alone) = self.address_slot(source)?;
        let mut priority = self.throttle.priority(source, Instant::now());
        if priority == Priority::Fresh && !alone {
            // One attempt per fresh address jumps the failing ones, not a burst of them.
            priority = Priority::Failing;
        }
        let slot = self
            .slots
            .acquire(priority, self.wait)
            .await
            .ok_or(Refusal::Busy {
                retry_after: BUSY_RETRY,
            })?;
        // The name or address may have failed while this attempt waited.
        self.throttle.check(user, source)?;
        self.shared_check(user, source)?;
        Ok(Ticket {
            _slot: slot,
            _address: address,
            memory: lock(&self.memory).pop(),
            pool: self.memory.clone(),
            dummy_hash: self.dummy_hash.clone(),
        })
    }

    /// Counts one more attempt of `key`; true if it is the address's only one.
    fn address_slot(&self, key: SourceKey) -> Result<(AddressSlot, bool), Refusal> {
        let mut map = self.in_progress.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= self.per_address {
            return Err(Refusal::Busy {
                retry_after: BUSY_RETRY,
            });
        }
        *n += 1;
        let slot = AddressSlot {
            map: self.in_progress.clone(),
            key,
        };
        Ok((slot, *n == 1))
    }

    pub fn failed(&self, user: &str, from: IpAddr) {
        self.failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.throttle.failed(user, SourceKey::of(from));
        if let Some(meta) = self.shared.get() {
            let forget = FORGET_AFTER.as_nanos() as i64;
            let recorded = with_keys(user, SourceKey::of(from), |keys| {
                meta.record_login_failure(keys, wall_ns(), forget)
            });
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "could not count a failed login in the shared store");
            }
        }
    }

    /// Logins refused for a wrong name or password since the start.
    pub fn failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Clears the user name's failures and makes the address known; the address keeps its
    /// failures, or one valid account would let its owner reset the count between guesses at
    /// others.
    pub fn succeeded(&self, user: &str, from: IpAddr) {
        self.throttle.succeeded(user, SourceKey::of(from));
        if let Some(meta) = self.shared.get() {
            let name = name_key(user);
            if let Err(e) = meta.clear_login_failures(FailureKey::Name(name.as_bytes())) {
                tracing::warn!(error = %e, "could not clear a name's failed logins");
            }
        }
    }
}

/// Which queue an attempt waits in, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Someone logged in from this address within [`KNOWN_FOR`], and nothing failed since.
    Known = 0,
    /// No failure from this address within [`FORGET_AFTER`].
    Fresh = 1,
    Failing = 2,
}

/// Failed logins per user name and per source address, and successful ones per address, each
/// in a table of bounded size.
///
/// Each counted failure blocks its key for a delay that doubles from [`FIRST_DELAY`] up to
/// [`MAX_DELAY`]; an address's first [`FREE_FAILURES_PER_ADDRESS`] failures are not counted.
/// User names are stored as BLAKE3 hashes, so an entry has a fixed size whatever was sent.
pub struct LoginThrottle {
    names: Mutex<Table<blake3::Hash>>,
    addresses: Mutex<Table<SourceKey>>,
    known: Mutex<Table<SourceKey>>,
}

impl LoginThrottle {
    pub fn new(max_entries: usize) -> Self {
        LoginThrottle {
            names: Mutex::new(Table::new(max_entries, 0, FORGET_AFTER)),
            addresses: Mutex::new(Table::new(
                max_entries,
                FREE_FAILURES_PER_ADDRESS,
                FORGET_AFTER,
            )),
            known: Mutex::new(Table::new(max_entries, 0, KNOWN_FOR)),
        }
    }

    /// # Errors
    /// [`Refusal::Throttled`] with the longer of the two remaining delays.
    pub fn check(&self, user: &str, from: SourceKey) -> Result<(), Refusal> {
        self.check_at(user, from, Instant::now())
    }

    fn check_at(&self, user: &str, from: SourceKey, now: Instant) -> Result<(), Refusal> {
        let name = lock(&self.names).blocked_for(&name_key(user), now);
        let address = lock(&self.addresses).blocked_for(&from, now);
        match name.max(address) {
            Some(retry_after) => Err(Refusal::Throttled { retry_after }),
            None => Ok(()),
        }
    }

    pub fn failed(&self, user: &str, from: SourceKey) {
        self.failed_at(user, from, Instant::now());
    }

    fn failed_at(&self, user: &str, from: SourceKey, now: Instant) {
        lock(&self.names).record(name_key(user), now);
        lock(&self.addresses).record(from, now);
    }

    pub fn succeeded(&self, user: &str, from: SourceKey) {
        self.succeeded_at(user, from, Instant::now());
    }

    fn succeeded_at(&self, user: &str, from: SourceKey, now: Instant) {
        lock(&self.names).entries.remove(&name_key(user));
        lock(&self.known).record(from, now);
    }

    pub fn priority(&self, from: SourceKey, now: Instant) -> Priority {
        let failed = lock(&self.addresses).last(&from, now);
        let succeeded = lock(&self.known).last(&from, now);
        match (succeeded, failed) {
            (Some(s), f) if f.is_none_or(|f| f < s) => Priority::Known,
            (_, None) => Priority::Fresh,
            _ => Priority::Failing,
        }
    }

    /// Entries held in the tables of names, failing addresses and known addresses.
    pub fn len(&self) -> (usize, usize, usize) {
        (
            lock(&self.names).entries.len(),
            lock(&self.addresses).entries.len(),
            lock(&self.known).entries.len(),
        )
    }
}

/// Verification slots with a queue per [`Priority`]: a freed slot goes to the best non-empty
/// queue, so a flood from addresses that keep failing does not keep everyone else waiting.
/// Each queue holds at most `queue` attempts.
struct Slots {
    state: Mutex<SlotState>,
    queue: usize,
}

struct SlotState {
    free: usize,
    queues: [VecDeque<oneshot::Sender<SlotPermit>>; 3],
}

/// One verification slot; dropping it hands the slot to the next waiter.
pub struct SlotPermit {
    slots: Option<Arc<Slots>>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release();
        }
    }
}

impl Slots {
    fn new(slots: usize, queue: usize) -> Arc<Self> {
        Arc::new(Slots {
            state: Mutex::new(SlotState {
                free: slots.max(1),
                queues: Default::default(),
            }),
            queue,
        })
    }

    /// A slot, or `None` when the queue is full or `wait` passed first.
    async fn acquire(self: &Arc<Self>, priority: Priority, wait: Duration) -> Option<SlotPermit> {
        let granted = {
            let mut st = lock(&self.state);
            // Free slots exist only while nobody waits: release hands them to waiters first.
            if st.free > 0 {
                st.free -= 1;
                return Some(SlotPermit {
                    slots: Some(self.clone()),
                });
            }
            let queue = &mut st.queues[priority as usize];
            if queue.len() >= self.queue {
                queue.retain(|tx| !tx.is_closed());
            }
            if queue.len() >= self.queue {
                return None;
            }
            let (tx, rx) = oneshot::channel();
            queue.push_back(tx);
            rx
        };
        // On timeout the receiver is dropped, and with it any slot sent meanwhile, which
        // releases it again.
        tokio::time::timeout(wait, granted).await.ok()?.ok()
    }

    fn release(self: &Arc<Self>) {
        let mut st = lock(&self.state);
        loop {
            let Some(tx) = st.queues.iter_mut().find_map(VecDeque::pop_front) else {
                st.free += 1;
                return;
            };
            let permit = SlotPermit {
                slots: Some(self.clone()),
            };
            match tx.send(permit) {
                Ok(()) => return,
                // That waiter gave up; disarm the permit it did not take (its drop would
                // release again under this lock) and try the next.
                Err(mut unused) => unused.slots = None,
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a key is refused after `count` failures of which the first `free` are not
/// counted: doubling from [`FIRST_DELAY`] up to [`MAX_DELAY`].
fn delay_for(count: u32, free: u32) -> Option<Duration> {
    let counted = count.checked_sub(free).filter(|c| *c > 0)?;
    let doubled = FIRST_DELAY.saturating_mul(1 << (counted - 1).min(16));
    Some(doubled.min(MAX_DELAY))
}

/// `f` with the shared store's keys of a login: the user name's hash and the address.
fn with_keys<T>(user: &str, source: SourceKey, f: impl FnOnce(&[FailureKey<'_>]) -> T) -> T {
    let (name, address) = (name_key(user), source.to_string());
    f(&[
        FailureKey::Name(name.as_bytes()),
        FailureKey::Address(address.as_bytes()),
    ])
}

fn wall_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn name_key(user: &str) -> blake3::Hash {
    blake3::hash(user.as_bytes())
}

struct Failures {
    count: u32,
    last: Instant,
}

/// Events (failures, or successes) per key, with their count and latest time.
struct Table<K> {
    entries: HashMap<K, Failures>,
    max: usize,
    free: u32,
    /// A key with no event for this long is as good as absent.
    forget_after: Duration,
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    fn new(max: usize, free: u32, forget_after: Duration) -> Self {
        Table {
            entries: HashMap::new(),
            max: max.max(1),
            free,
            forget_after,
        }
    }

    /// The time of `key`'s latest event, unless it is forgotten.
    fn last(&self, key: &K, now: Instant) -> Option<Instant> {
        let f = self.entries.get(key)?;
        (now.saturating_duration_since(f.last) < self.forget_after).then_some(f.last)
    }

    fn delay(&self, count: u32) -> Option<Duration> {
        delay_for(count, self.free)
    }

    fn blocked_for(&self, key: &K, now: Instant) -> Option<Duration> {
        let f = self.entries.get(key)?;
        let until = f.last + self.delay(f.count)?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    fn record(&mut self, key: K, now: Instant) {
        if let Some(f) = self.entries.get_mut(&key) {
            if now.saturating_duration_since(f.last) >= self.forget_after {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
            return;
        }
        if self.entries.len() >= self.max {
            self.make_room(now);
        }
        self.entries.insert(
            key,
            Failures {
                count: 1,
                last: now,
            },
        );
    }

    /// Drops forgotten entries; if that freed nothing, the tenth that failed longest ago (a
    /// batch, so a flood of new keys costs one scan per tenth of the table, not per key).
    fn make_room(&mut self, now: Instant) {
        self.entries
            .retain(|_, f| now.saturating_duration_since(f.last) < self.forget_after);
        if self.entries.len() < self.max {
            return;
        }
        let mut ages: Vec<Instant> = self.entries.values().map(|f| f.last).collect();
        let nth = (self.max / 10).max(1) - 1;
        let (_, cutoff, _) = ages.select_nth_unstable(nth);
        let cutoff = *cutoff;
        self.entries.retain(|_, f| f.last > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SourceKey {
        SourceKey::of(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn a_failed_name_is_refused_for_a_doubling_delay_until_it_succeeds() {
        let t = LoginThrottle::new(100);
        let now = Instant::now();
        assert_eq!(t.check_at("bob", addr(1), now), Ok(()));
        t.failed_at("bob", addr(1), now);
        let first = t
            .check_at("bob", addr(2), now)
            .expect_err("bob is throttled");
        assert_eq!(first.retry_after(), FIRST_DELAY);
        assert_eq!(first.retry_after_secs(), 1, "Retry-After is never 0");
        assert_eq!(t.check_at("bob", addr(2), now + FIRST_DELAY), Ok(()));
        t.failed_at("bob", addr(1), now);
        let second = t.check_at("bob", addr(2), now).expect_err("still");
        assert_eq!(second.retry_after(), FIRST_DELAY * 2);
        assert_eq!(
            t.check_at("carol", addr(2), now),
            Ok(()),
            "other names are free"
        );
        t.succeeded_at("bob", addr(1), now);
        assert_eq!(t.check_at("bob", addr(2), now), Ok(()));
    }

    #[test]
    fn an_address_is_slowed_after_its_free_failures_whatever_the_names() {
        let t = LoginThrottle::new(100);
        let now = Instant::now();
        for i in 0..FREE_FAILURES_PER_ADDRESS {
            t.failed_at(&format!("made-up-{i}"), addr(1), now);
        }
        assert_eq!(t.check_at("someone-new", addr(1), now), Ok(()));
        t.failed_at("one-more", addr(1), now);
        assert!(matches!(
            t.check_at("someone-new", addr(1), now),
            Err(Refusal::Throttled { .. })
        ));
        assert_eq!(t.check_at("someone-new", addr(2), now), Ok(()));
    }

    #[test]
    fn a_key_is_forgotten_after_a_quiet_while() {
        let t = LoginThrottle::new(100);
        let now = Instant::now();
        for _ in 0..10 {
            t.failed_at("bob", addr(1), now);
        }
        let later = now + FORGET_AFTER;
        t.failed_at("bob", addr(1), later);
        let again = t
            .check_at("bob", addr(1), later)
            .expect_err("one new failure");
        assert_eq!(again.retry_after(), FIRST_DELAY, "counting starts again");
    }

    #[test]
    fn the_tables_stay_bounded_under_a_flood_of_made_up_names() {
        let t = LoginThrottle::new(1000);
        let start = Instant::now();
        let mut now = start;
        for i in 0..100_000u32 {
            let [_, b, c, d] = i.to_be_bytes();
            now = start + Duration::from_millis(u64::from(i));
            let from = SourceKey::of(IpAddr::from([10, b, c, d]));
            t.failed_at(&format!("stranger-{i}"), from, now);
        }
        let (names, addresses, _) = t.len();
        assert!(names <= 1000 && addresses <= 1000, "{names} {addresses}");
        // What failed last is kept, what failed first made room.
        assert!(t.check_at("stranger-99999", addr(9), now).is_err());
        assert!(t.check_at("stranger-0", addr(9), now).is_ok());
    }

    #[test]
    fn delays_double_up_to_the_maximum() {
        let table: Table<u8> = Table::new(10, 2, FORGET_AFTER);
        assert_eq!(table.delay(1), None);
        assert_eq!(table.delay(2), None);
        assert_eq!(table.delay(3), Some(FIRST_DELAY));
        assert_eq!(table.delay(4), Some(FIRST_DELAY * 2));
        assert_eq!(table.delay(1000), Some(MAX_DELAY));
        assert_eq!(table.delay(u32::MAX), Some(MAX_DELAY));
    }

    #[tokio::test]
    async fn attempts_beyond_the_slots_and_queue_are_refused_busy() {
        let limits = Limits {
            login_concurrency: 1,
            login_queue: 0,
            login_per_address: 10,
            ..Limits::default()
        };
        let gate = LoginGate::new(&limits).expect("gate");
        let from = IpAddr::from([192, 0, 2, 1]);
        let held = gate.admit("a", from).await.expect("first slot");
        assert!(matches!(
            gate.admit("b", from).await,
            Err(Refusal::Busy { .. })
        ));
        drop(held);
        let ticket = gate.admit("c", from).await.expect("slot freed");
        assert!(
            !ticket.verify("anything", None),
            "unknown users never verify"
        );
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_best_queue_first() {
        let slots = Slots::new(1, 8);
        let held = slots.acquire(Priority::Known, MAX_DELAY).await;
        let held = held.expect("free slot");
        let waiting = |slots: &Arc<Slots>| -> Vec<usize> {
            lock(&slots.state)
                .queues
                .iter()
                .map(VecDeque::len)
                .collect()
        };
        let mut tasks = Vec::new();
        for p in [Priority::Failing, Priority::Fresh, Priority::Known] {
            let s = slots.clone();
            tasks.push(tokio::spawn(
                async move { s.acquire(p, MAX_DELAY * 100).await },
            ));
            while waiting(&slots).iter().sum::<usize>() < tasks.len() {
                tokio::task::yield_now().await;
            }
        }
        let [failing, fresh, known] = <[_; 3]>::try_from(tasks).ok().expect("three");
        drop(held);
        let got = known
            .await
            .expect("task")
            .expect("the known address goes first");
        assert_eq!(waiting(&slots), [0, 1, 1]);
        drop(got);
        let got = fresh.await.expect("task").expect("then the fresh one");
        assert_eq!(waiting(&slots), [0, 0, 1]);
        drop(got);
        assert!(
            failing.await.expect("task").is_some(),
            "then the failing one"
        );
        assert_eq!(lock(&slots.state).free, 1);
    }

    #[test]
    fn addresses_are_known_after_a_success_until_they_fail() {
        let t = LoginThrottle::new(100);
        let now = Instant::now();
        assert_eq!(t.priority(addr(1), now), Priority::Fresh);
        t.succeeded_at("bob", addr(1), now);
        let later = now + Duration::from_secs(1);
        assert_eq!(t.priority(addr(1), later), Priority::Known);
        t.failed_at("mallory", addr(1), later);
        assert_eq!(t.priority(addr(1), later), Priority::Failing);
        assert_eq!(t.priority(addr(2), later), Priority::Fresh);
        assert_eq!(t.priority(addr(1), later + FORGET_AFTER), Priority::Known);
        assert_eq!(t.priority(addr(1), now + KNOWN_FOR), Priority::Fresh);
    }

    #[tokio::test]
    async fn a_slot_sent_to_a_waiter_that_gave_up_is_not_lost() {
        let slots = Slots::new(1, 8);
        let held = slots.acquire(Priority::Fresh, MAX_DELAY).await;
        let held = held.expect("free slot");
        let (tx, rx) = oneshot::channel();
        lock(&slots.state).queues[0].push_back(tx);
        drop(rx);
        drop(held);
        assert_eq!(lock(&slots.state).free, 1);
        assert!(slots.acquire(Priority::Failing, MAX_DELAY).await.is_some());
    }

    #[tokio::test]
    async fn one_address_cannot_take_every_slot() {
        let limits = Limits {
            login_concurrency: 4,
            login_per_address: 1,
            ..Limits::default()
        };
        let gate = LoginGate::new(&limits).expect("gate");
        let held = gate.admit("a", IpAddr::from([192, 0, 2, 1])).await;
        assert!(held.is_ok());
        assert!(matches!(
            gate.admit("b", IpAddr::from([192, 0, 2, 1])).await,
            Err(Refusal::Busy { .. })
        ));
        assert!(gate.admit("b", IpAddr::from([192, 0, 2, 2])).await.is_ok());
    }
}
