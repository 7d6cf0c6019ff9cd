//! The WMS's stock ledger: on hand and reserved per (SKU, location), changed only by
//! movements, each change numbered and versioned, and the shippable quantity of every SKU
//! kept as a history for verification.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What a movement does to stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MovementKind {
    /// An order was taken: `quantity` is reserved (shippable goes down, on hand does not).
    Sale,
    /// A reservation was cancelled: reserved goes down.
    Release,
    /// Reserved units were picked and shipped: on hand and reserved go down.
    Pick,
    /// Goods received from a supplier: on hand goes up.
    Receipt,
    /// A customer return put back to stock: on hand goes up.
    Return,
    /// Units moved from `location` to `toLocation`: on hand moves.
    Transfer,
    /// A stock count correction: on hand changes by `quantity`, which may be negative.
    Adjustment,
}

impl MovementKind {
    /// Every kind, for generators and docs.
    pub const ALL: [Self; 7] =
        [Self::Sale, Self::Release, Self::Pick, Self::Receipt, Self::Return, Self::Transfer, Self::Adjustment];
}

/// A movement as requested (API body or generator).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MovementRequest {
    /// What happens.
    pub kind: MovementKind,
    /// The SKU moved.
    pub sku: String,
    /// Where (the source location of a transfer).
    pub location: String,
    /// The destination of a transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_location: Option<String>,
    /// Units; positive except for adjustments.
    pub quantity: i64,
    /// The business document behind it (order number, receipt id), free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// A movement applied to stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Movement {
    /// Position in the WMS's movement log, from 1.
    pub sequence: u64,
    /// When it was applied.
    pub at: Timestamp,
    /// The SKU's version after it (every change of the SKU's stock increments it).
    pub sku_version: u64,
    /// What was requested.
    #[serde(flatten)]
    pub request: MovementRequest,
}

/// Stock of one SKU at one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Level {
    /// The SKU.
    pub sku: String,
    /// The location (warehouse, zone).
    pub location: String,
    /// Units physically present.
    pub on_hand: i64,
    /// Units promised to orders, not yet picked.
    pub reserved: i64,
    /// `onHand - reserved`: what can still be sold from here.
    pub available: i64,
    /// The SKU's version when this record last changed; higher is newer.
    pub version: u64,
    /// Movement sequence of the last change (the snapshot API pages by it).
    #[serde(skip)]
    pub sequence: u64,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// One value of a SKU's shippable quantity (on hand − reserved over every location).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShippablePoint {
    /// From when it held.
    pub at: Timestamp,
    /// The movement that set it.
    pub sequence: u64,
    /// The SKU version it belongs to.
    pub version: u64,
    /// Units that could be shipped.
    pub shippable: i64,
}

/// Why a movement was refused; the message names the field and the numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request is malformed.
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Not enough stock for it.
    #[error(
        "insufficient stock of {sku} at {location}: {kind:?} of {quantity} needs {needed} {what}, there are {have}"
    )]
    Insufficient {
        /// The movement kind.
        kind: MovementKind,
        /// The SKU.
        sku: String,
        /// The location.
        location: String,
        /// Units asked.
        quantity: i64,
        /// Units needed.
        needed: i64,
        /// Units there.
        have: i64,
        /// Which quantity fell short (`available`, `reserved`, `on hand`).
        what: &'static str,
    },
}

/// The ledger.
#[derive(Debug, Default)]
pub(crate) struct Stock {
    levels: BTreeMap<(String, String), Level>,
    versions: BTreeMap<String, u64>,
    history: BTreeMap<String, Vec<ShippablePoint>>,
    movements: Vec<Movement>,
}

impl Stock {
    fn level(&mut self, sku: &str, location: &str) -> &mut Level {
        self.levels.entry((sku.to_owned(), location.to_owned())).or_insert_with(|| Level {
            sku: sku.to_owned(),
            location: location.to_owned(),
            on_hand: 0,
            reserved: 0,
            available: 0,
            version: 0,
            sequence: 0,
            updated_at: Timestamp::UNIX_EPOCH,
        })
    }

    fn peek(&self, sku: &str, location: &str) -> (i64, i64) {
        self.levels.get(&(sku.to_owned(), location.to_owned())).map_or((0, 0), |level| (level.on_hand, level.reserved))
    }

    /// Checks `request` against current stock and, if it can happen, applies it.
    pub(crate) fn apply(&mut self, request: MovementRequest) -> Result<Movement, Refusal> {
        let invalid = |field, message: &str| Refusal::Invalid { field, message: message.to_owned() };
        if request.sku.trim().is_empty() {
            return Err(invalid("sku", "must not be empty"));
        }
        if request.location.trim().is_empty() {
            return Err(invalid("location", "must not be empty"));
        }
        let kind = request.kind;
        if kind == MovementKind::Adjustment {
            if request.quantity == 0 {
                return Err(invalid("quantity", "an adjustment must change stock (not 0)"));
            }
        } else if request.quantity <= 0 {
            return Err(invalid("quantity", "must be at least 1"));
        }
        let to = match (kind, request.to_location.as_deref()) {
            (MovementKind::Transfer, Some(to)) if to == request.location => {
                return Err(invalid("toLocation", "must differ from location"));
            }
            (MovementKind::Transfer, Some(to)) if !to.trim().is_empty() => Some(to.to_owned()),
            (MovementKind::Transfer, _) => return Err(invalid("toLocation", "is required for a transfer")),
            (_, Some(_)) => return Err(invalid("toLocation", "is only allowed on a transfer")),
            (_, None) => None,
        };
        let (on_hand, reserved) = self.peek(&request.sku, &request.location);
        let q = request.quantity;
        let short = |needed: i64, have: i64, what| {
            (have < needed).then(|| Refusal::Insufficient {
                kind,
                sku: request.sku.clone(),
                location: request.location.clone(),
                quantity: q,
                needed,
                have,
                what,
            })
        };
        let (d_on_hand, d_reserved) = match kind {
            MovementKind::Sale => (0, q),
            MovementKind::Release => (0, -q),
            MovementKind::Pick => (-q, -q),
            MovementKind::Receipt | MovementKind::Return => (q, 0),
            MovementKind::Transfer => (-q, 0),
            MovementKind::Adjustment => (q, 0),
        };
        let refusal = match kind {
            MovementKind::Sale | MovementKind::Transfer => short(q, on_hand - reserved, "available"),
            MovementKind::Release | MovementKind::Pick => short(q, reserved, "reserved"),
            MovementKind::Adjustment if q < 0 => short(-q, on_hand - reserved, "available"),
            _ => None,
        };
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        let at = Timestamp::now();
        let sequence = self.movements.len() as u64 + 1;
        let version = {
            let version = self.versions.entry(request.sku.clone()).or_default();
            *version += 1;
            *version
        };
        let mut touch = |location: &str, d_on_hand: i64, d_reserved: i64| {
            let level = self.level(&request.sku, location);
            level.on_hand += d_on_hand;
            level.reserved += d_reserved;
            level.available = level.on_hand - level.reserved;
            level.version = version;
            level.sequence = sequence;
            level.updated_at = at;
        };
        touch(&request.location, d_on_hand, d_reserved);
        if let Some(to) = &to {
            touch(to, q, 0);
        }
        let shippable = self.shippable(&request.sku);
        self.history.entry(request.sku.clone()).or_default().push(ShippablePoint { at, sequence, version, shippable });
        let movement = Movement { sequence, at, sku_version: version, request };
        self.movements.push(movement.clone());
        Ok(movement)
    }

    /// On hand − reserved over every location of `sku`.
    pub(crate) fn shippable(&self, sku: &str) -> i64 {
        self.levels.values().filter(|level| level.sku == sku).map(|level| level.available).sum()
    }

    pub(crate) fn history(&self, sku: &str) -> Vec<ShippablePoint> {
        self.history.get(sku).cloned().unwrap_or_default()
    }

    pub(crate) fn levels(&self) -> impl Iterator<Item = &Level> {
        self.levels.values()
    }

    pub(crate) fn movements(&self) -> &[Movement] {
        &self.movements
    }

    /// The records whose last change comes after `after` (movement sequence, location)
    /// and, if given, happened at or after `since`, oldest change first.
    pub(crate) fn changed_since(&self, after: (u64, &str), since: Option<Timestamp>) -> Vec<Level> {
        let mut changed: Vec<Level> = self
            .levels
            .values()
            .filter(|level| (level.sequence, level.location.as_str()) > after)
            .filter(|level| since.is_none_or(|since| level.updated_at >= since))
            .cloned()
            .collect();
        changed.sort_by(|a, b| (a.sequence, &a.location).cmp(&(b.sequence, &b.location)));
        changed
    }
}

/// One SKU's shippable quantity over every location: what a channel may show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    /// The SKU.
    pub sku: String,
    /// On hand − reserved over every location.
    pub shippable: i64,
    /// Units physically present over every location.
    pub on_hand: i64,
    /// Units promised to orders over every location.
    pub reserved: i64,
    /// The SKU's version; higher is newer.
    pub version: u64,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Movement sequence of the last change (the API pages by it).
    #[serde(skip)]
    pub sequence: u64,
}

impl Stock {
    /// Each SKU whose last change comes after `after` (movement sequence, SKU) and, if
    /// given, happened at or after `since`, oldest change first.
    pub(crate) fn availability_since(&self, after: (u64, &str), since: Option<Timestamp>) -> Vec<Availability> {
        let mut changed: Vec<Availability> = self
            .history
            .iter()
            .filter_map(|(sku, points)| {
                let last = points.last()?;
                let (on_hand, reserved) = self
                    .levels
                    .values()
                    .filter(|level| level.sku == *sku)
                    .fold((0, 0), |(on_hand, reserved), level| (on_hand + level.on_hand, reserved + level.reserved));
                Some(Availability {
                    sku: sku.clone(),
                    shippable: last.shippable,
                    on_hand,
                    reserved,
                    version: last.version,
                    updated_at: last.at,
                    sequence: last.sequence,
                })
            })
            .filter(|a| (a.sequence, a.sku.as_str()) > after)
            .filter(|a| since.is_none_or(|since| a.updated_at >= since))
            .collect();
        changed.sort_by(|a, b| (a.sequence, &a.sku).cmp(&(b.sequence, &b.sku)));
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movement(kind: MovementKind, location: &str, quantity: i64) -> MovementRequest {
        MovementRequest {
            kind,
            sku: "SKU-1".to_owned(),
            location: location.to_owned(),
            to_location: None,
            quantity,
            reference: None,
        }
    }

    #[test]
    fn a_sale_reserves_and_a_pick_ships() {
        let mut stock = Stock::default();
        stock.apply(movement(MovementKind::Receipt, "DC1", 10)).unwrap();
        stock.apply(movement(MovementKind::Sale, "DC1", 4)).unwrap();
        assert_eq!(stock.shippable("SKU-1"), 6);
        stock.apply(movement(MovementKind::Pick, "DC1", 4)).unwrap();
        let level = stock.levels().next().unwrap();
        assert_eq!((level.on_hand, level.reserved, level.available, level.version), (6, 0, 6, 3));
        let history: Vec<i64> = stock.history("SKU-1").iter().map(|p| p.shippable).collect();
        assert_eq!(history, [10, 6, 6]);
    }

    #[test]
    fn a_sale_beyond_what_is_available_is_refused_with_the_numbers() {
        let mut stock = Stock::default();
        stock.apply(movement(MovementKind::Receipt, "DC1", 2)).unwrap();
        let refused = stock.apply(movement(MovementKind::Sale, "DC1", 3)).unwrap_err();
        assert_eq!(refused.to_string(), "insufficient stock of SKU-1 at DC1: Sale of 3 needs 3 available, there are 2");
        assert_eq!(stock.movements().len(), 1);
    }

    #[test]
    fn a_transfer_moves_stock_between_locations_under_one_version() {
        let mut stock = Stock::default();
        stock.apply(movement(MovementKind::Receipt, "DC1", 5)).unwrap();
        let mut transfer = movement(MovementKind::Transfer, "DC1", 3);
        transfer.to_location = Some("STORE-7".to_owned());
        let applied = stock.apply(transfer).unwrap();
        assert_eq!(applied.sku_version, 2);
        let changed = stock.changed_since((1, "~"), None);
        let moved: Vec<(&str, i64, u64)> =
            changed.iter().map(|l| (l.location.as_str(), l.on_hand, l.version)).collect();
        assert_eq!(moved, [("DC1", 2, 2), ("STORE-7", 3, 2)]);
        assert_eq!(stock.shippable("SKU-1"), 5);
    }

    #[test]
    fn bad_requests_name_the_field() {
        let mut stock = Stock::default();
        let refused = stock.apply(movement(MovementKind::Transfer, "DC1", 1)).unwrap_err();
        assert_eq!(refused.to_string(), "toLocation: is required for a transfer");
        let refused = stock.apply(movement(MovementKind::Receipt, "DC1", 0)).unwrap_err();
        assert_eq!(refused.to_string(), "quantity: must be at least 1");
        let refused = stock.apply(movement(MovementKind::Adjustment, "DC1", -1)).unwrap_err();
        assert!(refused.to_string().contains("needs 1 available, there are 0"), "{refused}");
    }
}
