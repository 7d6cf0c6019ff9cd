//! Requests in flight to one Connector: slots handed out by flow priority (a `high` flow
//! waiting for a slot gets the next one before `normal` and `low` flows), under a limit
//! that finds what the target grants.
//!
//! Systems that govern concurrency (NetSuite shares its account's requests in flight
//! across every integration; Business Central queues a few and refuses the rest) refuse
//! the request that goes over, whatever the request rate. Pausing every sender on such a
//! refusal leaves the grant idle; instead the limit shrinks to what was in flight below
//! the refused request, which is what the target granted at that moment, and every other
//! sender carries on. Clean answers while the limit is used fully probe one slot up; a
//! probe the target refuses waits twice as long before the next one, so a target that
//! grants less than declared sees one refused request per few hundred.
//!
//! When other runners send to the same Connector, each priority of this runner has its
//! part of the declared concurrency (its share, possibly none: see [`super::shares`]);
//! the split already served the priorities in order, so a request waits only for its own
//! priority's slots (and the adaptive limit), first come first served.

use std::{
    cmp::Reverse,
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::oneshot;

use entrepot_api::resource::Priority;

use super::shares::index;

/// Clean answers at a fully used limit before probing one slot above it.
const PROBE_AFTER: u64 = 100;
/// A refused probe doubles the wait before the next, up to this many doublings.
const MAX_PROBE_DOUBLINGS: u32 = 6;

/// The requests in flight to one Connector and their adaptive limit.
#[derive(Debug)]
pub struct Concurrency {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// What the Connector declares; the limit never goes above it.
    declared: u32,
    /// Slots that may be in use now.
    limit: u32,
    /// This runner's part of the Connector's slots per priority (low, normal, high) when
    /// other runners share them; each may be 0 (then that priority's requests wait).
    share: Option<[u32; 3]>,
    in_use: u32,
    /// Slots in use per priority, and the most since they were last read.
    in_use_by: [u32; 3],
    peak_by: [u32; 3],
    /// Who waits for a slot, highest priority first, then first come.
    waiting: BTreeMap<(Reverse<Priority>, u64), oneshot::Sender<Slot>>,
    next_ticket: u64,
    /// Clean answers, since the limit last changed, to requests sent while it was used
    /// fully.
    clean: u64,
    /// What the target granted at its last refusal, raised by clean answers above it
    /// (0: it never refused): a refusal while the limit is above it is a failed probe.
    granted: u32,
    /// Refused probes in a row.
    failed_probes: u32,
}

/// One request in flight; dropping it hands the slot to the next waiter or frees it.
#[derive(Debug)]
pub struct Slot {
    /// `None` only for a slot that was never handed out (see `Inner::fill`).
    owner: Option<Arc<Concurrency>>,
    /// Requests in flight when this one took its slot, itself included.
    in_flight: u32,
    /// The priority it was taken at.
    priority: Priority,
}

impl Slot {
    /// Requests of the Connector in flight when this one took its slot, itself included:
    /// a refusal of this request says the target grants fewer.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// The priority the slot was taken at.
    pub fn priority(&self) -> Priority {
        self.priority
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            let mut inner = owner.lock();
            inner.release(self.priority);
            inner.fill(&owner);
        }
    }
}

impl Inner {
    /// Forgets waiters that stopped waiting (their future was dropped).
    fn purge(&mut self) {
        self.waiting.retain(|_, tx| !tx.is_closed());
    }

    /// Whether a caller of `priority` may take a slot without passing a waiter of the
    /// same or a higher priority (of the same priority, while shared).
    fn may_take(&self, priority: Priority) -> bool {
        let queued = match self.share {
            // Each priority has slots of its own: only its own waiters come first.
            Some(_) => self.waiting.keys().any(|(Reverse(waiting), _)| *waiting == priority),
            None => self.waiting.keys().next().is_some_and(|(Reverse(first), _)| *first >= priority),
        };
        self.has_room(priority) && !queued
    }

    /// Whether a request of `priority` fits under the limit (and its priority's share).
    fn has_room(&self, priority: Priority) -> bool {
        self.in_use < self.limit
            && self.share.is_none_or(|share| self.in_use_by[index(priority)] < share[index(priority)])
    }

    fn take(&mut self, owner: &Arc<Concurrency>, priority: Priority) -> Slot {
        self.in_use += 1;
        let i = index(priority);
        self.in_use_by[i] += 1;
        self.peak_by[i] = self.peak_by[i].max(self.in_use_by[i]);
        Slot { owner: Some(owner.clone()), in_flight: self.in_use, priority }
    }

    fn release(&mut self, priority: Priority) {
        self.in_use -= 1;
        self.in_use_by[index(priority)] -= 1;
    }

    /// The slots that may be in use now: the limit, within this runner's share.
    fn allowed(&self) -> u32 {
        self.share.map_or(self.limit, |share| share.iter().sum::<u32>().min(self.limit))
    }

    /// Hands free slots to the first waiters still waiting that fit (the first waiter,
    /// unless shared: a priority without room does not hold up the others).
    fn fill(&mut self, owner: &Arc<Concurrency>) {
        while let Some(key) = self.waiting.keys().find(|(Reverse(p), _)| self.has_room(*p)).copied() {
            let tx = self.waiting.remove(&key).expect("a key just found");
            let slot = self.take(owner, key.0.0);
            if let Err(mut unsent) = tx.send(slot) {
                // That waiter is gone: the slot was never handed out.
                unsent.owner = None;
                self.release(key.0.0);
            }
        }
    }

    fn set_limit(&mut self, limit: u32) {
        self.limit = limit.clamp(1, self.declared);
        self.clean = 0;
    }
}

impl Concurrency {
    /// `declared` requests in flight at most (at least one).
    pub fn new(declared: u32) -> Self {
        let declared = declared.max(1);
        Self {
            inner: Mutex::new(Inner {
                declared,
                limit: declared,
                share: None,
                in_use: 0,
                in_use_by: [0; 3],
                peak_by: [0; 3],
                waiting: BTreeMap::new(),
                next_ticket: 0,
                clean: 0,
                granted: 0,
                failed_probes: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests the Connector declares it may have in flight.
    pub fn declared(&self) -> u32 {
        self.lock().declared
    }

    /// Requests allowed in flight now, after adaptation (and within this runner's share).
    pub fn limit(&self) -> u32 {
        self.lock().allowed()
    }

    /// Requests in flight now, per priority (low, normal, high).
    pub fn in_use(&self) -> [u32; 3] {
        self.lock().in_use_by
    }

    /// The most requests in flight at once per priority since the last call.
    pub fn take_peaks(&self) -> [u32; 3] {
        let mut inner = self.lock();
        let in_use = inner.in_use_by;
        std::mem::replace(&mut inner.peak_by, in_use)
    }

    /// Per priority (low, normal, high): whether a request of it waits for a slot now.
    pub fn waiting(&self) -> [bool; 3] {
        let mut inner = self.lock();
        inner.purge();
        let mut out = [false; 3];
        for (Reverse(priority), _) in inner.waiting.keys() {
            out[index(*priority)] = true;
        }
        out
    }

    /// Caps each priority's slots at its `share` (`None`: no cap, this runner sends alone);
    /// raising it hands the new slots to waiters at once. Requests in flight above a
    /// lowered share finish; the next ones wait.
    pub fn set_share(self: &Arc<Self>, share: Option<[u32; 3]>) {
        let mut inner = self.lock();
        inner.share = share;
        inner.fill(self);
    }

    /// A slot, if one is free now and nobody of the same or a higher priority waits.
    pub fn try_slot(self: &Arc<Self>, priority: Priority) -> Option<Slot> {
        let mut inner = self.lock();
        inner.purge();
        inner.may_take(priority).then(|| inner.take(self, priority))
    }

    /// Waits for a slot, behind waiters of the same or a higher priority. Cancel-safe: a
    /// slot handed to a dropped waiter goes on to the next one.
    pub async fn slot(self: &Arc<Self>, priority: Priority) -> Slot {
        let rx = {
            let mut inner = self.lock();
            inner.purge();
            if inner.may_take(priority) {
                return inner.take(self, priority);
            }
            let (tx, rx) = oneshot::channel();
            let ticket = inner.next_ticket;
            inner.next_ticket += 1;
            inner.waiting.insert((Reverse(priority), ticket), tx);
            rx
        };
        rx.await.expect("a waiting slot is always answered while its quota lives")
    }

    /// The target refused a request for being one too many in flight; `held_slot`: the
    /// request holds one of these slots still (a request without one came on top).
    pub fn refused(&self, held_slot: bool) {
        let mut inner = self.lock();
        // It granted the others in flight when it refused: those still in flight now
        // (the refusal comes back at once, while granted requests are being served).
        // Not the count when the refused request took its slot: requests sent together
        // reach the target in any order.
        let granted = inner.in_use - u32::from(held_slot && inner.in_use > 0);
        if granted >= inner.limit {
            return;
        }
        if inner.granted > 0 && inner.limit > inner.granted {
            inner.failed_probes = (inner.failed_probes + 1).min(MAX_PROBE_DOUBLINGS);
        }
        inner.granted = granted.max(1);
        inner.set_limit(granted);
    }

    /// The target answered a request without refusing it. `in_flight`: the Connector's
    /// requests in flight when it took its slot, itself included ([`Slot::in_flight`];
    /// `None` for a request that held no slot: then it came on top of those in flight now).
    pub fn answered(self: &Arc<Self>, in_flight: Option<u32>) {
        let mut inner = self.lock();
        let in_flight = in_flight.unwrap_or(inner.in_use + 1);
        if inner.granted > 0 && in_flight > inner.granted {
            // A probe held: the target grants more now; climb on at the first pace.
            inner.granted = in_flight;
            inner.failed_probes = 0;
        }
        if inner.limit >= inner.declared || in_flight < inner.limit {
            return;
        }
        inner.clean += 1;
        if inner.clean >= PROBE_AFTER << inner.failed_probes {
            let probe = inner.limit + 1;
            inner.set_limit(probe);
            inner.fill(self);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(concurrency: &Arc<Concurrency>, n: usize) -> Vec<Slot> {
        (0..n).map(|_| concurrency.try_slot(Priority::Normal).expect("a free slot")).collect()
    }

    /// Refuses one of `n` requests in flight, as the target does when it grants `n - 1`.
    fn refuse_one_of(concurrency: &Arc<Concurrency>, n: usize) {
        let held = slots(concurrency, n);
        concurrency.refused(true);
        drop(held);
    }

    #[tokio::test]
    async fn a_refusal_shrinks_the_limit_to_the_others_in_flight() {
        let concurrency = Arc::new(Concurrency::new(4));
        let mut held = slots(&concurrency, 4);
        assert_eq!(held.iter().map(Slot::in_flight).collect::<Vec<_>>(), [1, 2, 3, 4]);
        // The target grants 2: two of the four are refused, each heard while the others
        // are still in flight.
        concurrency.refused(true);
        held.pop();
        assert_eq!(concurrency.limit(), 3);
        concurrency.refused(true);
        held.pop();
        assert_eq!(concurrency.limit(), 2);
        assert!(concurrency.try_slot(Priority::High).is_none(), "two in flight is the limit now");
        // A request that held no slot (a poll) refused on top of the two: nothing new.
        concurrency.refused(false);
        assert_eq!(concurrency.limit(), 2);
        drop(held);
        // Never below one.
        refuse_one_of(&concurrency, 1);
        assert_eq!(concurrency.limit(), 1);
    }

    #[tokio::test]
    async fn clean_answers_at_the_full_limit_probe_one_slot_up_and_a_refused_probe_waits_longer() {
        let concurrency = Arc::new(Concurrency::new(4));
        refuse_one_of(&concurrency, 3);
        assert_eq!(concurrency.limit(), 2);
        // Answers below the limit say nothing about a higher one.
        for _ in 0..PROBE_AFTER * 2 {
            concurrency.answered(Some(1));
        }
        assert_eq!(concurrency.limit(), 2);
        for _ in 0..PROBE_AFTER {
            concurrency.answered(Some(2));
        }
        assert_eq!(concurrency.limit(), 3, "probes one up");
        // The probe is refused: back to 2, and the next probe waits twice as long.
        refuse_one_of(&concurrency, 3);
        assert_eq!(concurrency.limit(), 2);
        for _ in 0..PROBE_AFTER {
            concurrency.answered(Some(2));
        }
        assert_eq!(concurrency.limit(), 2);
        for _ in 0..PROBE_AFTER {
            concurrency.answered(Some(2));
        }
        assert_eq!(concurrency.limit(), 3);
        // This time the target grants it: the pace goes back to the first one.
        concurrency.answered(Some(3));
        for _ in 0..PROBE_AFTER {
            concurrency.answered(Some(3));
        }
        assert_eq!(concurrency.limit(), 4);
        // Never above the declared limit.
        for _ in 0..PROBE_AFTER * 100 {
            concurrency.answered(Some(4));
        }
        assert_eq!(concurrency.limit(), 4);
    }

    #[tokio::test]
    async fn a_waiter_gets_a_slot_when_a_probe_raises_the_limit() {
        let concurrency = Arc::new(Concurrency::new(2));
        refuse_one_of(&concurrency, 2);
        let held = slots(&concurrency, 1);
        let waiter = tokio::spawn({
            let concurrency = concurrency.clone();
            async move { concurrency.slot(Priority::Normal).await.in_flight() }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        for _ in 0..PROBE_AFTER {
            concurrency.answered(Some(1));
        }
        assert_eq!(waiter.await.unwrap(), 2);
        drop(held);
    }

    #[tokio::test]
    async fn each_priority_has_its_share_of_the_slots_and_raising_it_serves_its_waiters() {
        let concurrency = Arc::new(Concurrency::new(4));
        concurrency.set_share(Some([0, 0, 2]));
        assert!(concurrency.try_slot(Priority::Low).is_none(), "no share: low requests wait");
        let waiter = tokio::spawn({
            let concurrency = concurrency.clone();
            async move { concurrency.slot(Priority::Low).await.priority() }
        });
        tokio::task::yield_now().await;
        assert_eq!(concurrency.waiting(), [true, false, false]);
        // A low waiter does not hold up the high priority's own slots.
        let mut high =
            vec![concurrency.try_slot(Priority::High).unwrap(), concurrency.try_slot(Priority::High).unwrap()];
        assert!(concurrency.try_slot(Priority::High).is_none(), "two: high's share");
        concurrency.set_share(Some([1, 0, 2]));
        assert_eq!(waiter.await.unwrap(), Priority::Low);
        assert_eq!(concurrency.in_use(), [0, 0, 2]);
        // A lowered share: slots in flight finish, the next request waits.
        concurrency.set_share(Some([1, 0, 1]));
        high.pop();
        assert!(concurrency.try_slot(Priority::High).is_none(), "one still in flight fills high's lowered share");
        assert_eq!(concurrency.limit(), 2);
        drop(high);
        concurrency.set_share(None);
        assert_eq!(concurrency.limit(), 4);
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_highest_priority_waiter_first() {
        let concurrency = Arc::new(Concurrency::new(1));
        let held = concurrency.try_slot(Priority::Normal).unwrap();
        let (order_tx, mut order_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for (name, priority) in [("low", Priority::Low), ("normal", Priority::Normal), ("high", Priority::High)] {
            let (concurrency, order_tx) = (concurrency.clone(), order_tx.clone());
            waiters.push(tokio::spawn(async move {
                let slot = concurrency.slot(priority).await;
                order_tx.send(name).unwrap();
                drop(slot);
            }));
            tokio::task::yield_now().await; // each waiter queues before the next
        }
        // A cancelled waiter does not swallow a slot.
        let cancelled = tokio::spawn({
            let concurrency = concurrency.clone();
            async move { concurrency.slot(Priority::High).await }
        });
        tokio::task::yield_now().await;
        cancelled.abort();
        let _ = cancelled.await;
        // A newcomer cannot take the slot past the waiters.
        assert!(concurrency.try_slot(Priority::Normal).is_none());
        drop(held);
        for w in waiters {
            w.await.unwrap();
        }
        let order: Vec<&str> = std::iter::from_fn(|| order_rx.try_recv().ok()).collect();
        assert_eq!(order, ["high", "normal", "low"]);
        assert!(concurrency.try_slot(Priority::Low).is_some(), "the slot is free again");
    }
}
