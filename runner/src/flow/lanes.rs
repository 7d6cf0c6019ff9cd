//! Per-key lanes: records with the same ordering key go one at a time, in arrival order;
//! a key whose head is in flight or waiting to retry holds back only its own lane.

use std::collections::{HashMap, HashSet, VecDeque};

/// The lanes of one target. Pure bookkeeping: the delivery worker does the I/O.
#[derive(Debug, Default)]
pub struct Lanes {
    lanes: HashMap<String, VecDeque<u64>>,
    ready: VecDeque<String>,
    busy: HashSet<String>,
    len: usize,
}

impl Lanes {
    /// Adds item `seq` at the back of `key`'s lane.
    pub fn push(&mut self, key: &str, seq: u64) {
        let lane = self.lanes.entry(key.to_string()).or_default();
        lane.push_back(seq);
        self.len += 1;
        if lane.len() == 1 && !self.busy.contains(key) {
            self.ready.push_back(key.to_string());
        }
    }

    /// The head of the next lane that can go, marking that lane busy.
    pub fn next(&mut self) -> Option<(String, u64)> {
        let key = self.ready.pop_front()?;
        let seq = *self.lanes.get(&key)?.front()?;
        self.busy.insert(key.clone());
        Some((key, seq))
    }

    /// The head of `key`'s lane is done (delivered, dead-lettered or stale): the next item
    /// of the lane may go.
    pub fn finish(&mut self, key: &str) {
        self.busy.remove(key);
        if let Some(lane) = self.lanes.get_mut(key) {
            lane.pop_front();
            self.len -= 1;
            if lane.is_empty() {
                self.lanes.remove(key);
            } else {
                self.ready.push_back(key.to_string());
            }
        }
    }

    /// The head of `key`'s lane may be attempted again (its retry is due); it goes before
    /// lanes that became ready since, as it has waited longest.
    pub fn release(&mut self, key: &str) {
        if self.busy.remove(key) && self.lanes.contains_key(key) {
            self.ready.push_front(key.to_string());
        }
    }

    /// The last item of `key`'s lane, when the lane holds more than its head.
    pub fn newest_behind(&self, key: &str) -> Option<u64> {
        self.lanes.get(key).filter(|lane| lane.len() > 1).and_then(|lane| lane.back().copied())
    }

    /// Whether `key`'s lane holds any item.
    pub fn holds(&self, key: &str) -> bool {
        self.lanes.contains_key(key)
    }

    /// Whether some lane can go now.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Items held, heads included.
    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_goes_in_order_one_at_a_time_while_others_pass() {
        let mut lanes = Lanes::default();
        for (key, seq) in [("A", 1), ("A", 2), ("B", 3), ("A", 4), ("C", 5)] {
            lanes.push(key, seq);
        }
        assert_eq!(lanes.next(), Some(("A".into(), 1)));
        // A is busy (say, retrying): B and C go; A's later items wait.
        assert_eq!(lanes.next(), Some(("B".into(), 3)));
        assert_eq!(lanes.next(), Some(("C".into(), 5)));
        assert_eq!(lanes.next(), None);
        lanes.release("A");
        assert_eq!(lanes.next(), Some(("A".into(), 1)), "a retry re-sends the same head");
        lanes.finish("A");
        lanes.finish("B");
        assert_eq!(lanes.next(), Some(("A".into(), 2)));
        lanes.finish("A");
        assert_eq!(lanes.next(), Some(("A".into(), 4)));
        assert_eq!(lanes.len(), 2);
        lanes.finish("A");
        lanes.finish("C");
        assert_eq!(lanes.len(), 0);
        assert_eq!(lanes.next(), None);
    }

    #[test]
    fn an_item_pushed_to_a_busy_lane_waits_for_its_head() {
        let mut lanes = Lanes::default();
        lanes.push("A", 1);
        assert_eq!(lanes.next(), Some(("A".into(), 1)));
        lanes.push("A", 2);
        assert_eq!(lanes.next(), None);
        lanes.finish("A");
        assert_eq!(lanes.next(), Some(("A".into(), 2)));
    }
}
