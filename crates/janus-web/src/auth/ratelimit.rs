//! Failed logins per client address, limited with `governor` (GCRA), per web replica.
//!
//! Only failures use the budget, and the budget holds under any concurrency: a login takes one cell
//! *before* its password is checked ([`LoginThrottle::reserve`], refused with 429 when none is left),
//! and gives it back when the check succeeds ([`LoginThrottle::refund`]). So at any moment failed plus
//! in-flight checks of one address stay within its budget, however many it sends at once. How many
//! password checks an account sees is bounded exactly, across replicas, by the reservations in the
//! database (see `janus_store::LoginGate`); this limiter slows one address spraying many accounts.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::DefaultClock;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use crate::auth::client_ip::LimitKey;

/// Keys beyond which [`LoginThrottle::reserve`] forgets addresses whose budget is full again.
const RETAIN_ABOVE: usize = 10_000;

/// governor's keyed in-memory state, by address, shared with [`LoginThrottle`] for refunds.
#[derive(Default, Clone)]
struct FailureStore(Arc<DashMap<LimitKey, InMemoryState>>);

impl StateStore for FailureStore {
    type Key = LimitKey;

    fn measure_and_replace<T, F, E>(&self, key: &LimitKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(state) = self.0.get(key) {
            // The common case for an address seen before: no write lock on the map.
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        let state = self.0.entry(key.clone()).or_default();
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<LimitKey> for FailureStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain(|_, state| {
            let tat = state.measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>);
            matches!(tat, Err(Some(t)) if t > drop_below)
        });
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Failed logins per client address: `max` per `window`, refilled evenly.
pub struct LoginThrottle {
    limiter: RateLimiter<LimitKey, FailureStore, DefaultClock>,
    store: FailureStore,
    /// The time one cell stands for (GCRA's emission interval).
    cell: Nanos,
}

impl LoginThrottle {
    /// Allows `max` failures per `window` and address (at least one of each).
    pub fn new(max: u32, window: Duration) -> Self {
        let max = NonZeroU32::new(max).unwrap_or(NonZeroU32::MIN);
        let period = (window / max.get()).max(Duration::from_millis(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(max);
        let store = FailureStore::default();
        Self {
            cell: Nanos::from(quota.replenish_interval()),
            limiter: RateLimiter::new(quota, store.clone(), DefaultClock::default()),
            store,
        }
    }

    /// Takes one cell of `key`'s budget for a login about to be checked; false (nothing taken) when
    /// none is left. Keep it when the login fails; give it back with [`Self::refund`] when it succeeds.
    pub fn reserve(&self, key: &LimitKey) -> bool {
        if self.limiter.len() > RETAIN_ABOVE {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(key).is_ok()
    }

    /// Gives back the cell [`Self::reserve`] took for a login that succeeded.
    pub fn refund(&self, key: &LimitKey) {
        let Some(state) = self.store.0.get(key) else {
            return;
        };
        // GCRA keeps the time at which the budget is full again: a cell given back moves it one cell
        // earlier. (A time in the past means a full budget however far back it is.)
        let cell = self.cell;
        let _ = state.measure_and_replace(&NotKeyed::NonKey, |tat| match tat {
            Some(t) => Ok::<_, ()>(((), t.saturating_sub(cell))),
            None => Err(()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> LimitKey {
        LimitKey::Net(s.parse().unwrap())
    }

    #[test]
    fn failures_use_the_budget_and_successes_give_it_back() {
        let l = LoginThrottle::new(2, Duration::from_secs(60));
        let a = key("192.0.2.1/32");
        // Successful logins, however many.
        for _ in 0..10 {
            assert!(l.reserve(&a));
            l.refund(&a);
        }
        assert!(l.reserve(&a), "a failure");
        assert!(l.reserve(&a), "a second failure");
        assert!(!l.reserve(&a), "over budget");
        assert!(l.reserve(&key("192.0.2.2/32")), "per address");
        assert!(l.reserve(&LimitKey::Unparsed("unknown".into())), "per unparsed entry");
    }

    #[test]
    fn checks_in_flight_count_against_the_budget() {
        let l = LoginThrottle::new(3, Duration::from_secs(60));
        let a = key("192.0.2.1/32");
        // Many logins at once: only three may be checked, whatever their outcome turns out to be.
        let taken = (0..100).filter(|_| l.reserve(&a)).count();
        assert_eq!(taken, 3);
        // One of them succeeds: its cell is free again, and only that one.
        l.refund(&a);
        assert!(l.reserve(&a));
        assert!(!l.reserve(&a));
    }

    #[test]
    fn parallel_reservations_never_exceed_the_budget() {
        let l = Arc::new(LoginThrottle::new(5, Duration::from_secs(60)));
        let a = key("192.0.2.1/32");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (l, a) = (l.clone(), a.clone());
                std::thread::spawn(move || (0..50).filter(|_| l.reserve(&a)).count())
            })
            .collect();
        let taken: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(taken, 5);
    }

    #[test]
    fn the_budget_refills() {
        let l = LoginThrottle::new(2, Duration::from_millis(200));
        let a = key("192.0.2.1/32");
        assert!(l.reserve(&a) && l.reserve(&a) && !l.reserve(&a));
        std::thread::sleep(Duration::from_millis(150));
        assert!(l.reserve(&a), "one failure is forgotten after window / max");
    }

    #[test]
    fn a_refund_never_adds_to_a_full_budget() {
        let l = LoginThrottle::new(2, Duration::from_secs(60));
        let a = key("192.0.2.1/32");
        assert!(l.reserve(&a));
        l.refund(&a);
        l.refund(&a);
        l.refund(&a);
        assert!(l.reserve(&a) && l.reserve(&a) && !l.reserve(&a));
    }

    #[test]
    fn forgotten_addresses_are_dropped() {
        let l = LoginThrottle::new(1, Duration::from_millis(1));
        for i in 0..=RETAIN_ABOVE as u32 {
            l.reserve(&LimitKey::Net(ipnet::IpNet::from(std::net::IpAddr::from(
                i.to_be_bytes(),
            ))));
        }
        std::thread::sleep(Duration::from_millis(5));
        l.reserve(&key("192.0.2.1/32"));
        assert!(l.limiter.len() < 10, "{}", l.limiter.len());
    }
}
