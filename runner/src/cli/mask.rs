//! Personal data masked out of recorded payloads before they leave the runner
//! (`entrepot deadletters export`) or are printed (`entrepot preview`): names, emails,
//! phone numbers and addresses. This list is the one place that says which fields those
//! are; both commands use it.
//!
//! A field is personal by its key (compared without case, `_` or `-`). Masking keeps a
//! value's shape, so a Mapping still reads what it expects (a string stays a string of
//! the same length, an email an email) and the same value always masks the same way (an
//! old and a new Mapping see the same input, and two records of one customer still
//! match).

use serde_json::{Map, Value};

/// Keys whose values are personal wherever they appear.
const PERSONAL: &[&str] = &[
    "firstname",
    "lastname",
    "middlename",
    "fullname",
    "givenname",
    "familyname",
    "surname",
    "contactname",
    "customername",
    "email",
    "emailaddress",
    "contactemail",
    "phone",
    "phonenumber",
    "mobile",
    "fax",
    "address",
    "address1",
    "address2",
    "address3",
    "addressline1",
    "addressline2",
    "street",
    "streetaddress",
    "line1",
    "line2",
    "city",
    "zip",
    "zipcode",
    "postcode",
    "postalcode",
    "birthdate",
    "dateofbirth",
    "taxid",
    "vatnumber",
];

/// Parts of a key that make it personal (`billing_email`, `shipping_phone`).
const PERSONAL_PARTS: &[&str] = &["email", "phone"];

/// Objects whose `name` (and `company`) is a person's, not a product's: a customer, an
/// address, a contact.
const PERSON_CONTEXT: &[&str] =
    &["customer", "address", "contact", "buyer", "recipient", "shipto", "billto", "soldto", "person", "user"];

/// Keys personal only inside a [`PERSON_CONTEXT`].
const PERSONAL_IN_CONTEXT: &[&str] = &["name", "company"];

fn normalized(key: &str) -> String {
    key.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

/// Whether the value of `key` is personal data (inside a person's object, `in_person`).
pub fn is_personal(key: &str, in_person: bool) -> bool {
    let k = normalized(key);
    PERSONAL.contains(&k.as_str())
        || PERSONAL_PARTS.iter().any(|p| k.contains(p))
        || (in_person && PERSONAL_IN_CONTEXT.contains(&k.as_str()))
}

fn is_person_context(key: &str) -> bool {
    let k = normalized(key);
    PERSON_CONTEXT.iter().any(|p| k.contains(p))
}

/// `value` with every personal field masked.
pub fn mask(value: &Value) -> Value {
    walk(value, false, false)
}

fn walk(value: &Value, personal: bool, in_person: bool) -> Value {
    match value {
        Value::Object(fields) => {
            let masked: Map<String, Value> = fields
                .iter()
                .map(|(k, v)| {
                    let inner = in_person || is_person_context(k);
                    // A personal key over an object (`billing_address: {...}`): its own
                    // keys decide, inside a person's context.
                    (k.clone(), walk(v, is_personal(k, in_person), inner))
                })
                .collect();
            Value::Object(masked)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| walk(v, personal, in_person)).collect()),
        Value::String(text) if personal => Value::String(mask_text(text)),
        Value::Number(_) if personal => Value::from(0),
        other => other.clone(),
    }
}

/// A text masked keeping its shape: an email becomes `masked-<hash>@example.com`;
/// anything else keeps its length and punctuation, each letter replaced by a letter of
/// the same case and each digit by a digit, drawn from a hash of the whole text, so equal
/// values stay equal and different ones (almost always) differ.
pub fn mask_text(text: &str) -> String {
    let mut h = fnv1a(text.as_bytes());
    if text.contains('@') {
        return format!("masked-{:08x}@example.com", h as u32);
    }
    text.chars()
        .map(|c| {
            h = (h ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0x0100_0000_01b3);
            let pick = (h >> 33) as u32;
            match c {
                c if c.is_uppercase() => char::from(b'A' + (pick % 26) as u8),
                c if c.is_alphabetic() => char::from(b'a' + (pick % 26) as u8),
                c if c.is_numeric() => char::from(b'0' + (pick % 10) as u8),
                c => c,
            }
        })
        .collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shopify_order() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/shopify-order.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|_| {
            // The fixture lives beside the repository; a checkout without it uses a small one.
            json!({"email": "jane@example.org", "customer": {"first_name": "Jane", "email": "jane@example.org"}})
                .to_string()
        }))
        .unwrap()
    }

    #[test]
    fn names_emails_phones_and_addresses_are_masked_and_the_rest_is_kept() {
        let order = json!({
            "id": 1001, "email": "jane.doe@example.org", "phone": "+1 555-0100", "total_price": "24.00",
            "customer": {"id": 7, "first_name": "Jane", "last_name": "Doe", "name": "Jane Doe", "phone": 15550100},
            "billing_address": {"address1": "1 Main St", "city": "Springfield", "zip": "62701", "country_code": "US",
                                "name": "Jane Doe", "company": "Doe Ltd"},
            "line_items": [{"sku": "TS-M", "name": "T-shirt M", "quantity": 2}],
            "note_attributes": [{"name": "gift", "value": "yes"}],
            "contact_email": "jd@example.org",
        });
        let m = mask(&order);
        let text = m.to_string();
        for secret in ["jane.doe@example.org", "555-0100", "Jane", "Doe", "1 Main St", "Springfield", "62701", "jd@"] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert_eq!(m["customer"]["phone"], 0);
        assert!(m["email"].as_str().unwrap().ends_with("@example.com"));
        assert_eq!(m["billing_address"]["zip"].as_str().unwrap().len(), 5);
        // Not personal: ids, money, SKUs, a product's name, a country, attribute names.
        assert_eq!((m["id"].clone(), m["total_price"].clone()), (json!(1001), json!("24.00")));
        assert_eq!(m["line_items"][0], order["line_items"][0]);
        assert_eq!(m["billing_address"]["country_code"], "US");
        assert_eq!(m["note_attributes"][0]["name"], "gift");
    }

    #[test]
    fn masking_is_stable_and_keeps_different_values_apart() {
        assert_eq!(mask_text("Jane"), mask_text("Jane"));
        assert_ne!(mask_text("Jane"), mask_text("John"));
        assert_eq!(mask_text("Jane").len(), 4);
        assert_eq!(mask_text(""), "");
        let zip = mask_text("62701");
        assert!(zip.len() == 5 && zip.chars().all(|c| c.is_ascii_digit()) && zip != "62701", "{zip}");
        assert!(mask_text("+1 555-0100").starts_with('+'));
        assert_eq!(mask(&shopify_order()), mask(&shopify_order()));
    }

    #[test]
    fn the_reference_order_keeps_no_email_or_name() {
        let order = shopify_order();
        let masked = mask(&order).to_string();
        for key in ["email", "first_name", "last_name"] {
            let mut found = Vec::new();
            collect(&order, key, &mut found);
            for value in found.into_iter().filter(|v| v.len() > 2) {
                assert!(!masked.contains(&format!("\"{value}\"")), "{key} {value} is left");
            }
        }
    }

    fn collect(value: &Value, key: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(fields) => {
                for (k, v) in fields {
                    if k == key
                        && let Some(s) = v.as_str()
                    {
                        out.push(s.to_string());
                    }
                    collect(v, key, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, key, out)),
            _ => {}
        }
    }
}
