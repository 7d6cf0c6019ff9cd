//! Seeded movements that are always possible given the stock at that moment.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use super::stock::{MovementKind, MovementRequest, Stock};

#[derive(Debug)]
pub(super) struct MovementGenerator {
    rng: Xoshiro256PlusPlus,
    skus: Vec<String>,
    locations: Vec<String>,
    next_reference: u64,
}

impl MovementGenerator {
    pub(super) fn new(seed: u64, skus: Vec<String>, locations: Vec<String>) -> Self {
        Self { rng: Xoshiro256PlusPlus::seed_from_u64(seed), skus, locations, next_reference: 1 }
    }

    fn level(stock: &Stock, sku: &str, location: &str) -> (i64, i64) {
        stock
            .levels()
            .find(|level| level.sku == sku && level.location == location)
            .map_or((0, 0), |level| (level.on_hand, level.reserved))
    }

    /// A movement `stock` allows: picks ship what is reserved, sales reserve what is
    /// available; without stock to work on, goods are received.
    pub(super) fn next(&mut self, stock: &Stock) -> MovementRequest {
        let sku = self.skus[self.rng.random_range(0..self.skus.len())].clone();
        let location = self.locations[self.rng.random_range(0..self.locations.len())].clone();
        let (on_hand, reserved) = Self::level(stock, &sku, &location);
        let available = on_hand - reserved;
        let roll = self.rng.random_range(0..100);
        let (kind, quantity, to_location) = match roll {
            0..35 if available > 0 => (MovementKind::Sale, self.rng.random_range(1..=available.min(3)), None),
            35..60 if reserved > 0 => (MovementKind::Pick, self.rng.random_range(1..=reserved), None),
            60..65 if reserved > 0 => (MovementKind::Release, 1, None),
            65..70 => (MovementKind::Return, 1, None),
            70..80 if available > 0 && self.locations.len() > 1 => {
                let others: Vec<&String> = self.locations.iter().filter(|other| **other != location).collect();
                let to = others[self.rng.random_range(0..others.len())].clone();
                (MovementKind::Transfer, self.rng.random_range(1..=available.min(5)), Some(to))
            }
            80..85 if available > 0 => (MovementKind::Adjustment, -1, None),
            85..90 => (MovementKind::Adjustment, self.rng.random_range(1..=3), None),
            _ => (MovementKind::Receipt, self.rng.random_range(5..=40), None),
        };
        let reference = format!("gen-{}", self.next_reference);
        self.next_reference += 1;
        MovementRequest { kind, sku, location, to_location, quantity, reference: Some(reference) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_movements_always_apply_and_one_seed_repeats() {
        let run = |seed| {
            let skus = vec!["A".to_owned(), "B".to_owned()];
            let locations = vec!["DC".to_owned(), "STORE".to_owned()];
            let mut generator = MovementGenerator::new(seed, skus, locations);
            let mut stock = Stock::default();
            for _ in 0..500 {
                let request = generator.next(&stock);
                stock.apply(request.clone()).unwrap_or_else(|refusal| panic!("{request:?}: {refusal}"));
            }
            stock.movements().iter().map(|m| (m.request.kind, m.request.quantity)).collect::<Vec<_>>()
        };
        let first = run(42);
        assert_eq!(first, run(42));
        for kind in MovementKind::ALL {
            assert!(first.iter().any(|(k, _)| *k == kind), "{kind:?} never generated");
        }
    }
}
