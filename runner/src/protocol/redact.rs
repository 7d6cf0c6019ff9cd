//! Personal data out of the reasons that reach logs, `/v1/status` and the SyncFlow's
//! status. An ERP's or a database's error often quotes the record it refused ("customer
//! jane@example.com already exists", `Key (email)=(jane@example.com)`, `Failing row
//! contains (...)`); the reason only needs to say what was wrong, and the record itself
//! stays in the dead letter, behind the admin API's authentication.

/// `text` with e-mail addresses and international phone numbers replaced by
/// `<email>` and `<phone>`. Order numbers, SKUs and codes are left alone: they are what
/// on-call needs to find the record.
pub fn personal_data(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let mut chars = text.chars();
    loop {
        let next = chars.next();
        if let Some(c) = next.filter(|c| is_word(*c)) {
            word.push(c);
            continue;
        }
        // A sentence's full stop is not part of the address before it.
        let body = word.trim_end_matches('.');
        out.push_str(if is_email(body) {
            "<email>"
        } else if is_phone(body) {
            "<phone>"
        } else {
            body
        });
        out.push_str(&word[body.len()..]);
        word.clear();
        match next {
            Some(c) => out.push(c),
            None => return out,
        }
    }
}

/// Characters of an address or a phone number; anything else separates words.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '@' | '.' | '_' | '%' | '+' | '-')
}

fn is_email(word: &str) -> bool {
    let Some((local, domain)) = word.split_once('@') else { return false };
    !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
}

/// `+` and at least eight digits (E.164 allows up to fifteen), dashes and dots allowed.
fn is_phone(word: &str) -> bool {
    let Some(number) = word.strip_prefix('+') else { return false };
    let digits = number.chars().filter(char::is_ascii_digit).count();
    digits >= 8 && number.chars().all(|c| c.is_ascii_digit() || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_phone_numbers_go_and_order_numbers_stay() {
        assert_eq!(
            personal_data("Customer jane.doe+shop@example.co.uk already exists (order #1001, SO-482913)."),
            "Customer <email> already exists (order #1001, SO-482913)."
        );
        assert_eq!(personal_data("phone +44-20-7946-0958 is invalid"), "phone <phone> is invalid");
        assert_eq!(personal_data("Key (email)=(a@b.io) exists"), "Key (email)=(<email>) exists");
        assert_eq!(personal_data("order 5678901234567 refused"), "order 5678901234567 refused");
        assert_eq!(personal_data("a @ sign, x@y, ünïcødé"), "a @ sign, x@y, ünïcødé");
        assert_eq!(personal_data("exists: a@b.io."), "exists: <email>.");
        assert_eq!(personal_data(""), "");
    }
}
