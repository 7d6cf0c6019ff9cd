//! Who buys: names, emails, phones and addresses of simulated shoppers.
//!
//! The values are fictional on purpose: `example.*` email domains, 555-01xx phone numbers,
//! and TEST-NET addresses elsewhere, so nothing generated can reach a real person.

use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;

use super::catalog::fnv1a;
use super::order::{Address, Customer, format_minor};

pub(super) const FIRST_NAMES: [&str; 12] =
    ["Jane", "John", "Amara", "Luis", "Mei", "Noah", "Priya", "Olivia", "Kenji", "Fatima", "Lucas", "Sofía"];
const LAST_NAMES: [&str; 12] =
    ["Doe", "Smith", "Okafor", "García", "Chen", "Müller", "Patel", "Johnson", "Tanaka", "Haddad", "Silva", "O'Brien"];
const EMAIL_DOMAINS: [&str; 4] = ["example.com", "example.org", "example.net", "mail.example"];

/// (street, city, province, province code, zip, latitude, longitude)
const PLACES: [(&str, &str, &str, &str, &str, f64, f64); 6] = [
    ("123 Market St", "San Francisco", "California", "CA", "94105", 37.7936, -122.3965),
    ("987 Elm Ave", "Oakland", "California", "CA", "94607", 37.8044, -122.2712),
    ("55 Water St", "New York", "New York", "NY", "10041", 40.7033, -74.0117),
    ("400 Congress Ave", "Austin", "Texas", "TX", "78701", 30.2669, -97.7428),
    ("1201 3rd Ave", "Seattle", "Washington", "WA", "98101", 47.6076, -122.3366),
    ("233 S Wacker Dr", "Chicago", "Illinois", "IL", "60606", 41.8789, -87.6359),
];

/// One of `items`, uniformly; `items` is one of this crate's non-empty tables.
pub(super) fn pick<'a, T>(rng: &mut Xoshiro256PlusPlus, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A shopper: name, email (sometimes with capitals) and customer record.
pub(super) fn customer(rng: &mut Xoshiro256PlusPlus, currency: &str) -> Customer {
    let first = *pick(rng, &FIRST_NAMES);
    let last = *pick(rng, &LAST_NAMES);
    let domain = *pick(rng, &EMAIL_DOMAINS);
    let local = format!("{}.{}", ascii_fold(first), ascii_fold(last));
    // Some shoppers type their address with capitals; the ERP side should not care.
    let email = if rng.random_bool(0.25) {
        format!("{local}@{}", capitalize(domain))
    } else {
        format!("{local}@{domain}").to_lowercase()
    };
    let orders_count = rng.random_range(1..=40);
    Customer {
        // The same shopper keeps the same customer id across orders.
        id: 7_000_000_000_000 + fnv1a(&email.to_lowercase()) % 1_000_000_000_000,
        email,
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        orders_count,
        state: "enabled".to_owned(),
        total_spent: format_minor(i64::from(orders_count) * rng.random_range(1500..=9000)),
        verified_email: true,
        tags: if orders_count > 10 { "vip" } else { "" }.to_owned(),
        currency: currency.to_owned(),
        phone: Some(phone(rng)),
    }
}

fn phone(rng: &mut Xoshiro256PlusPlus) -> String {
    // 555-01xx numbers are reserved for fiction.
    format!("+1555555{:04}", rng.random_range(100..=199))
}

/// An address in a US city; billing addresses are geocoded and carry a phone.
pub(super) fn address(rng: &mut Xoshiro256PlusPlus, first: &str, last: &str, billing: bool) -> Address {
    let (street, city, province, code, zip, latitude, longitude) = *pick(rng, &PLACES);
    Address {
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        company: (billing && rng.random_bool(0.3)).then(|| format!("{last} Trading LLC")),
        address1: street.to_owned(),
        address2: rng.random_bool(0.3).then(|| format!("Suite {}", rng.random_range(100..=900))),
        city: city.to_owned(),
        province: province.to_owned(),
        province_code: code.to_owned(),
        country: "United States".to_owned(),
        country_code: "US".to_owned(),
        zip: zip.to_owned(),
        phone: billing.then(|| phone(rng)),
        latitude: billing.then_some(latitude),
        longitude: billing.then_some(longitude),
    }
}

/// Email addresses are ASCII: `García` → `Garcia`, `O'Brien` → `OBrien`.
fn ascii_fold(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c {
            'á' | 'à' | 'ä' => Some('a'),
            'é' | 'è' | 'ë' => Some('e'),
            'í' | 'ï' => Some('i'),
            'ó' | 'ö' => Some('o'),
            'ú' | 'ü' => Some('u'),
            'ñ' => Some('n'),
            c if c.is_ascii_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
