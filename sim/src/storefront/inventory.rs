//! What the store holds in stock: one level per (inventory item, location), as Shopify keys
//! InventoryLevel. Each SKU has one inventory item (Shopify's variant ↔ inventory item is
//! 1:1 and the item carries the SKU), so levels can be read by SKU for verification.

use std::collections::BTreeMap;

use serde::Serialize;

/// The first inventory item id handed out; later SKUs get the next ids.
const FIRST_ITEM_ID: u64 = 43_000_000_001;

/// `gid://shopify/InventoryItem/{id}`.
pub fn item_gid(id: u64) -> String {
    format!("gid://shopify/InventoryItem/{id}")
}

/// `gid://shopify/Location/{id}`.
pub fn location_gid(id: u64) -> String {
    format!("gid://shopify/Location/{id}")
}

/// The numeric id of a GID of `kind` (`gid://shopify/{kind}/{id}`), if it is one.
pub fn parse_gid(gid: &str, kind: &str) -> Option<u64> {
    gid.strip_prefix("gid://shopify/")?.strip_prefix(kind)?.strip_prefix('/')?.parse().ok()
}

/// One inventory level, as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryLevel {
    /// The SKU of the inventory item.
    pub sku: String,
    /// The inventory item id.
    pub inventory_item_id: u64,
    /// The location id.
    pub location_id: u64,
    /// Units available to sell.
    pub available: i64,
}

/// One change of an inventory level: what buyers were shown from `at` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LevelChange {
    /// When the store started showing `available`.
    pub at: jiff::Timestamp,
    /// The SKU.
    pub sku: String,
    /// The location id.
    pub location_id: u64,
    /// Units available to sell from then on.
    pub available: i64,
}

/// Stock by (inventory item, location), the items by SKU, and every change, for
/// verification (a scenario checks the store never showed more than could be shipped).
#[derive(Debug, Default)]
pub struct Inventory {
    items: BTreeMap<String, u64>,
    skus: BTreeMap<u64, String>,
    levels: BTreeMap<(u64, u64), i64>,
    history: Vec<LevelChange>,
}

impl Inventory {
    /// The inventory item of `sku`, created when the SKU is new.
    pub fn item_for(&mut self, sku: &str) -> u64 {
        if let Some(id) = self.items.get(sku) {
            return *id;
        }
        let id = FIRST_ITEM_ID + self.items.len() as u64;
        self.items.insert(sku.to_owned(), id);
        self.skus.insert(id, sku.to_owned());
        id
    }

    /// The inventory item of `sku`, if the store knows the SKU.
    pub fn item(&self, sku: &str) -> Option<u64> {
        self.items.get(sku).copied()
    }

    /// Whether `item` is an inventory item of this store.
    pub fn knows_item(&self, item: u64) -> bool {
        self.skus.contains_key(&item)
    }

    /// Sets the available quantity of `item` at `location`; returns the previous one.
    pub fn set(&mut self, item: u64, location: u64, available: i64) -> i64 {
        let sku = self.skus.get(&item).cloned().unwrap_or_default();
        self.history.push(LevelChange { at: jiff::Timestamp::now(), sku, location_id: location, available });
        self.levels.insert((item, location), available).unwrap_or(0)
    }

    /// Every change of `sku`'s levels, oldest first.
    pub fn history(&self, sku: &str) -> Vec<LevelChange> {
        self.history.iter().filter(|c| c.sku == sku).cloned().collect()
    }

    /// The available quantity of `item` at `location` (0 where nothing was stocked).
    pub fn available(&self, item: u64, location: u64) -> i64 {
        self.levels.get(&(item, location)).copied().unwrap_or(0)
    }

    /// Every stocked level, by item then location.
    pub fn levels(&self) -> Vec<InventoryLevel> {
        self.levels
            .iter()
            .map(|((item, location), available)| InventoryLevel {
                sku: self.skus.get(item).cloned().unwrap_or_default(),
                inventory_item_id: *item,
                location_id: *location,
                available: *available,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gids_round_trip_and_items_are_stable_per_sku() {
        let mut inventory = Inventory::default();
        let a = inventory.item_for("SKU-A");
        let b = inventory.item_for("SKU-B");
        assert_ne!(a, b);
        assert_eq!(inventory.item_for("SKU-A"), a);
        assert_eq!(parse_gid(&item_gid(a), "InventoryItem"), Some(a));
        assert_eq!(parse_gid(&item_gid(a), "Location"), None);
        assert_eq!(parse_gid("gid://shopify/Location/7x", "Location"), None);
        assert_eq!(inventory.set(a, 7, 5), 0);
        assert_eq!(inventory.set(a, 7, 3), 5);
        assert_eq!(
            inventory.levels(),
            vec![InventoryLevel { sku: "SKU-A".into(), inventory_item_id: a, location_id: 7, available: 3 }]
        );
    }
}
