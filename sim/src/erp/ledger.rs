//! What the ERP has stored, and which idempotency keys it has seen.
//!
//! Every decision (replay, duplicate, create, update) is taken in one call on `&mut Ledger`,
//! i.e. under one lock acquisition, so two requests racing with the same key or the same
//! external id cannot both store a record.

use std::collections::{BTreeMap, HashMap};

use super::sales_order::{SalesOrder, StoredOrder};

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// A new record was stored under this internal id.
    Created(u64),
    /// An existing record (found by external id) was overwritten.
    Updated(u64),
    /// The idempotency key was seen before: nothing was written; this is the original record.
    Replayed(u64),
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error(
        "A sales order with external id {external_id} already exists (internal id {internal_id}); \
         use PUT /salesOrders/eid:{external_id} to update it."
    )]
    DuplicateExternalId { external_id: String, internal_id: u64 },
    #[error(
        "Idempotency key {key} was already used for the sales order with external id \
         {original_external_id}, not {external_id}; use a new key for a different record."
    )]
    KeyReused { key: String, original_external_id: String, external_id: String },
}

/// Why a conditional update (`If-Match`) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// No order has that external id.
    Missing,
    /// The order changed since the caller read it; this is its revision now.
    Stale { current: u32 },
}

#[derive(Debug, Clone)]
struct KeyRecord {
    internal_id: u64,
    external_id: String,
}

/// The stored orders and the idempotency keys of successful writes.
///
/// Only successful writes remember their key: a request rejected as invalid may be fixed
/// and replayed from the runner's dead-letter queue under the same key, and must then be
/// processed, not answered with the old rejection.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    orders: BTreeMap<u64, StoredOrder>,
    by_external_id: HashMap<String, u64>,
    by_key: HashMap<String, KeyRecord>,
    last_id: u64,
}

impl Ledger {
    /// `POST /salesOrders`: stores a new order unless its key or external id was seen.
    pub(crate) fn create(&mut self, order: SalesOrder, key: Option<&str>) -> Result<Written, Refused> {
        if let Some(replayed) = self.replay(&order.external_id, key)? {
            return Ok(replayed);
        }
        if let Some(&internal_id) = self.by_external_id.get(&order.external_id) {
            return Err(Refused::DuplicateExternalId { external_id: order.external_id, internal_id });
        }
        Ok(Written::Created(self.insert(order, key)))
    }

    /// `PUT /salesOrders/eid:{externalId}`: creates or overwrites the order with that
    /// external id, unless the key was seen.
    pub(crate) fn upsert(&mut self, order: SalesOrder, key: Option<&str>) -> Result<Written, Refused> {
        if let Some(replayed) = self.replay(&order.external_id, key)? {
            return Ok(replayed);
        }
        let existing = self.by_external_id.get(&order.external_id).copied();
        let Some(internal_id) = existing else {
            return Ok(Written::Created(self.insert(order, key)));
        };
        let external_id = order.external_id.clone();
        if let Some(stored) = self.orders.get_mut(&internal_id) {
            stored.replace(order);
        }
        if let Some(key) = key {
            self.remember(key, internal_id, external_id);
        }
        Ok(Written::Updated(internal_id))
    }

    /// Overwrites the existing order with `order.external_id` when its revision is
    /// `expected` (`None`: whatever it is), the check and the write under one lock as an
    /// ETag precondition needs.
    pub(crate) fn update_if(&mut self, order: SalesOrder, expected: Option<u32>) -> Result<u64, Precondition> {
        let internal_id = *self.by_external_id.get(&order.external_id).ok_or(Precondition::Missing)?;
        let stored = self.orders.get_mut(&internal_id).ok_or(Precondition::Missing)?;
        if let Some(expected) = expected
            && expected != stored.revision
        {
            return Err(Precondition::Stale { current: stored.revision });
        }
        stored.replace(order);
        Ok(internal_id)
    }

    /// Someone else edits the order (a user in the ERP's UI): its revision, hence its
    /// ETag, moves on while its content stays. False when there is no such order.
    pub(crate) fn edit_elsewhere(&mut self, external_id: &str) -> bool {
        let Some(internal_id) = self.by_external_id.get(external_id) else {
            return false;
        };
        let Some(stored) = self.orders.get_mut(internal_id) else {
            return false;
        };
        stored.revision += 1;
        true
    }

    /// The stored order with this external id.
    pub(crate) fn by_external_id(&self, external_id: &str) -> Option<&StoredOrder> {
        self.by_external_id.get(external_id).and_then(|id| self.orders.get(id))
    }

    /// All stored orders, by internal id.
    pub(crate) fn orders(&self) -> Vec<StoredOrder> {
        self.orders.values().cloned().collect()
    }

    pub(crate) fn get(&self, internal_id: u64) -> Option<&StoredOrder> {
        self.orders.get(&internal_id)
    }

    fn replay(&self, external_id: &str, key: Option<&str>) -> Result<Option<Written>, Refused> {
        let Some(key) = key else { return Ok(None) };
        let Some(record) = self.by_key.get(key) else {
            return Ok(None);
        };
        if record.external_id != external_id {
            return Err(Refused::KeyReused {
                key: key.to_owned(),
                original_external_id: record.external_id.clone(),
                external_id: external_id.to_owned(),
            });
        }
        Ok(Some(Written::Replayed(record.internal_id)))
    }

    fn insert(&mut self, order: SalesOrder, key: Option<&str>) -> u64 {
        self.last_id += 1;
        let internal_id = self.last_id;
        let external_id = order.external_id.clone();
        self.by_external_id.insert(external_id.clone(), internal_id);
        self.orders.insert(internal_id, StoredOrder::new(internal_id, order, key.map(str::to_owned)));
        if let Some(key) = key {
            self.remember(key, internal_id, external_id);
        }
        internal_id
    }

    fn remember(&mut self, key: &str, internal_id: u64, external_id: String) {
        self.by_key.insert(key.to_owned(), KeyRecord { internal_id, external_id });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erp::sales_order::OrderItem;
    use serde_json::Value;

    fn order(external_id: &str, quantity: f64) -> SalesOrder {
        SalesOrder {
            external_id: external_id.to_owned(),
            tran_date: None,
            currency: Some("USD".to_owned()),
            customer_email: "jane@example.com".to_owned(),
            items: vec![OrderItem { item: "MUG-WHT".to_owned(), quantity, rate: Some(1249) }],
            total: None,
            body: Value::Null,
        }
    }

    #[test]
    fn a_key_seen_before_replays_without_storing() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.create(order("A", 1.0), Some("k1")), Ok(Written::Created(1)));
        assert_eq!(ledger.create(order("A", 1.0), Some("k1")), Ok(Written::Replayed(1)));
        assert_eq!(ledger.orders().len(), 1);
    }

    #[test]
    fn the_same_external_id_under_another_key_or_none_is_a_duplicate() {
        let mut ledger = Ledger::default();
        ledger.create(order("A", 1.0), Some("k1")).unwrap();
        for key in [Some("k2"), None] {
            assert_eq!(
                ledger.create(order("A", 1.0), key),
                Err(Refused::DuplicateExternalId { external_id: "A".to_owned(), internal_id: 1 })
            );
        }
        assert_eq!(ledger.orders().len(), 1);
    }

    #[test]
    fn a_key_reused_for_another_record_is_refused() {
        let mut ledger = Ledger::default();
        ledger.create(order("A", 1.0), Some("k1")).unwrap();
        let refused = ledger.create(order("B", 1.0), Some("k1")).unwrap_err();
        assert!(matches!(refused, Refused::KeyReused { .. }));
        assert!(refused.to_string().contains("k1"), "{refused}");
    }

    #[test]
    fn upsert_creates_then_updates_by_external_id() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.upsert(order("A", 1.0), None), Ok(Written::Created(1)));
        assert_eq!(ledger.upsert(order("A", 3.0), Some("k2")), Ok(Written::Updated(1)));
        assert_eq!(ledger.upsert(order("A", 5.0), Some("k2")), Ok(Written::Replayed(1)));
        let stored = ledger.get(1).unwrap();
        assert_eq!(stored.items[0].quantity, 3.0);
        assert_eq!(stored.revision, 2);
    }

    #[test]
    fn a_conditional_update_checks_the_revision_under_the_lock() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.update_if(order("A", 1.0), None), Err(Precondition::Missing));
        ledger.create(order("A", 1.0), None).unwrap();
        assert_eq!(ledger.update_if(order("A", 2.0), Some(1)), Ok(1));
        assert_eq!(ledger.update_if(order("A", 3.0), Some(1)), Err(Precondition::Stale { current: 2 }));
        assert!(ledger.edit_elsewhere("A"));
        assert_eq!(ledger.by_external_id("A").unwrap().revision, 3);
        assert_eq!(ledger.by_external_id("A").unwrap().items[0].quantity, 2.0);
        assert!(!ledger.edit_elsewhere("B"));
    }
}
