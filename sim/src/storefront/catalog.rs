//! What the storefront sells: product data for a SKU.
//!
//! A SKU always maps to the same title, price, weight and ids, whatever the seed, so the same
//! product looks the same in every order and in every run. A few SKUs have hand-written
//! entries (those of the reference fixture); any other SKU, including one the ERP does not
//! know, gets stable values derived from a hash of its name.

/// The SKUs a storefront sells when none are configured.
pub const DEFAULT_SKUS: [&str; 6] =
    ["TSHIRT-BLK-M", "TSHIRT-WHT-L", "MUG-WHT", "HOODIE-GRY-L", "CAP-NVY", "STICKER-PACK"];

/// Product data of one SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// The SKU itself.
    pub sku: String,
    /// Shopify product id.
    pub product_id: u64,
    /// Shopify variant id (the SKU belongs to the variant).
    pub variant_id: u64,
    /// Product title.
    pub title: String,
    /// Variant title, `None` for single-variant products.
    pub variant_title: Option<String>,
    /// Brand or supplier.
    pub vendor: String,
    /// Unit price in minor units.
    pub price_minor: i64,
    /// Unit weight in grams.
    pub grams: u32,
}

/// The product data for `sku`.
pub fn product(sku: &str) -> Product {
    let hash = fnv1a(sku);
    let (title, variant_title, vendor, price_minor, grams) = match sku {
        "TSHIRT-BLK-M" => ("Classic Tee", Some("Black / M"), "Acme Apparel", 1999, 200),
        "TSHIRT-WHT-L" => ("Classic Tee", Some("White / L"), "Acme Apparel", 1999, 210),
        "MUG-WHT" => ("Logo Mug", None, "Acme Home", 1249, 450),
        "HOODIE-GRY-L" => ("Zip Hoodie", Some("Grey / L"), "Acme Apparel", 5900, 650),
        "CAP-NVY" => ("Baseball Cap", Some("Navy"), "Acme Apparel", 2450, 120),
        "STICKER-PACK" => ("Sticker Pack", Some("Assorted"), "Acme Paper", 250, 25),
        _ => {
            // Prices end in .99 or .49 like a real catalogue: 4.49 to 99.99.
            let units = 4 + (hash % 96) as i64;
            let cents = if hash & 1 == 0 { 99 } else { 49 };
            return Product {
                sku: sku.to_owned(),
                product_id: 8_800_000_000_000 + hash % 100_000_000_000,
                variant_id: 44_000_000_000_000 + (hash >> 8) % 100_000_000_000,
                title: title_from_sku(sku),
                variant_title: None,
                vendor: "Acme Goods".to_owned(),
                price_minor: units * 100 + cents,
                grams: 50 + ((hash >> 16) % 950) as u32,
            };
        }
    };
    Product {
        sku: sku.to_owned(),
        product_id: 8_800_000_000_000 + hash % 100_000_000_000,
        variant_id: 44_000_000_000_000 + (hash >> 8) % 100_000_000_000,
        title: title.to_owned(),
        variant_title: variant_title.map(str::to_owned),
        vendor: vendor.to_owned(),
        price_minor,
        grams,
    }
}

/// `"GIFT-CARD-50"` → `"Gift Card 50"`.
fn title_from_sku(sku: &str) -> String {
    let words: Vec<String> = sku
        .split(['-', '_', ' '])
        .filter(|word| !word.is_empty())
        .map(|word| {
            let lower = word.to_lowercase();
            let mut chars = lower.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect();
    if words.is_empty() { "Unnamed Product".to_owned() } else { words.join(" ") }
}

/// FNV-1a: a hash that, unlike std's `DefaultHasher`, is the same in every build and run.
pub(super) fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sku_always_gets_the_same_product() {
        assert_eq!(product("GIFT-CARD-50"), product("GIFT-CARD-50"));
        assert_eq!(product("GIFT-CARD-50").title, "Gift Card 50");
        assert_eq!(product("MUG-WHT").price_minor, 1249);
        assert_ne!(product("A-1").variant_id, product("A-2").variant_id);
    }

    #[test]
    fn derived_prices_look_like_shop_prices() {
        for sku in ["X", "SKU-1", "SKU-2", "TSHIRT-XXX", "ÉTÉ-42"] {
            let price = product(sku).price_minor;
            assert!((449..=9999).contains(&price), "{sku}: {price}");
            assert!(matches!(price % 100, 49 | 99), "{sku}: {price}");
        }
    }
}
