//! Failed logins per client address, limited with `governor` (GCRA), per web replica.
//!
//! Only failures are counted: a login first asks whether the address may try ([`LoginThrottle::allows`],
//! which changes nothing), and only a failed check takes a cell ([`LoginThrottle::failed`]). governor has
//! no "peek", so the state store below runs governor's own decision without storing it when asked to.
//! How many password checks an account sees is bounded exactly, across replicas, by the reservations in
//! the database (see `janus_store::LoginGate`); this limiter slows one address spraying many accounts.

use std::num::NonZeroU32;
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::DefaultClock;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use ipnet::IpNet;

/// Keys beyond which [`LoginThrottle::failed`] forgets addresses whose budget is full again.
const RETAIN_ABOVE: usize = 10_000;

/// A key of the store: the address, and whether the decision is to be stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Probe {
    key: IpNet,
    commit: bool,
}

/// governor's keyed in-memory state, by address, that can also answer without recording.
#[derive(Default)]
struct FailureStore(DashMap<IpNet, InMemoryState>);

impl StateStore for FailureStore {
    type Key = Probe;

    fn measure_and_replace<T, F, E>(&self, key: &Probe, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if key.commit {
            let state = self.0.entry(key.key).or_default();
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        let Some(state) = self.0.get(&key.key) else {
            return f(None).map(|(t, _)| t);
        };
        // Turning governor's "allowed" into an error keeps the state from being replaced.
        let peek = state.measure_and_replace(&NotKeyed::NonKey, |prev| match f(prev) {
            Ok((t, _)) => Err::<(std::convert::Infallible, Nanos), _>(Ok(t)),
            Err(e) => Err(Err(e)),
        });
        match peek {
            Ok(never) => match never {},
            Err(decision) => decision,
        }
    }
}

impl ShrinkableKeyedStateStore<Probe> for FailureStore {
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
    limiter: RateLimiter<Probe, FailureStore, DefaultClock>,
}

impl LoginThrottle {
    /// Allows `max` failures per `window` and address (at least one of each).
    pub fn new(max: u32, window: Duration) -> Self {
        let max = NonZeroU32::new(max).unwrap_or(NonZeroU32::MIN);
        let period = (window / max.get()).max(Duration::from_millis(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(max);
        Self {
            limiter: RateLimiter::new(quota, FailureStore::default(), DefaultClock::default()),
        }
    }

    /// Whether `key` may try to log in now (one more failure would still be within its budget).
    pub fn allows(&self, key: IpNet) -> bool {
        self.limiter.check_key(&Probe { key, commit: false }).is_ok()
    }

    /// Counts a failed login of `key`; false when it was over its budget.
    pub fn failed(&self, key: IpNet) -> bool {
        if self.limiter.len() > RETAIN_ABOVE {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&Probe { key, commit: true }).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn only_failures_use_the_budget() {
        let l = LoginThrottle::new(2, Duration::from_secs(60));
        let a = net("192.0.2.1/32");
        // Asking is free, however often.
        for _ in 0..10 {
            assert!(l.allows(a));
        }
        assert!(l.failed(a) && l.allows(a));
        assert!(l.failed(a) && !l.allows(a));
        assert!(!l.failed(a), "over budget");
        assert!(l.allows(net("192.0.2.2/32")), "per address");
    }

    #[test]
    fn the_budget_refills() {
        let l = LoginThrottle::new(2, Duration::from_millis(200));
        let a = net("192.0.2.1/32");
        assert!(l.failed(a) && l.failed(a) && !l.allows(a));
        std::thread::sleep(Duration::from_millis(150));
        assert!(l.allows(a), "one failure is forgotten after window / max");
    }

    #[test]
    fn forgotten_addresses_are_dropped() {
        let l = LoginThrottle::new(1, Duration::from_millis(1));
        for i in 0..=RETAIN_ABOVE as u32 {
            l.failed(IpNet::from(std::net::IpAddr::from(i.to_be_bytes())));
        }
        std::thread::sleep(Duration::from_millis(5));
        l.failed(net("192.0.2.1/32"));
        assert!(l.limiter.len() < 10, "{}", l.limiter.len());
    }
}
