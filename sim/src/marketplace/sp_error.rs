//! The SP-API's error answers and the one listings rule both the Listings API and the
//! JSON_LISTINGS_FEED apply: how a patch sets a quantity.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Operation;

/// The header naming the operation's sustained rate.
pub(super) const RATE_LIMIT_HEADER: &str = "x-amzn-ratelimit-limit";

/// An SP-API error answer: `{"errors":[{"code","message","details"}]}`.
#[derive(Debug)]
pub(super) struct SpError {
    status: StatusCode,
    code: &'static str,
    message: String,
    pub(super) operation: Option<Operation>,
    /// The operation's configured rate, for `x-amzn-RateLimit-Limit`.
    pub(super) rate: Option<f64>,
}

impl SpError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        operation: Option<Operation>,
    ) -> Self {
        Self { status, code, message: message.into(), operation, rate: None }
    }

    /// `400 InvalidInput` naming the parameter or field.
    pub(super) fn invalid(operation: Operation, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidInput", message, Some(operation))
    }

    pub(super) fn not_found(operation: Operation, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message, Some(operation))
    }
}

impl IntoResponse for SpError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code, "message": self.message, "details": ""}]});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(operation) = self.operation {
            let rate = self.rate.unwrap_or(operation.default_limit().rate);
            if let Ok(value) = HeaderValue::from_str(&rate.to_string()) {
                response.headers_mut().insert(RATE_LIMIT_HEADER, value);
            }
        }
        response
    }
}

/// Reads the quantity a listings patch (or feed message) sets, if it sets one. Patches of
/// other attributes are accepted and ignored: this simulator only tracks availability.
pub(super) fn patched_quantity(patches: &Value, at: &str) -> Result<Option<i64>, String> {
    let Some(patches) = patches.as_array() else {
        return Err(format!("{at}patches must be an array of {{op, path, value}}"));
    };
    let mut quantity = None;
    for (index, patch) in patches.iter().enumerate() {
        if patch["path"].as_str() != Some("/attributes/fulfillment_availability") {
            continue;
        }
        let op = patch["op"].as_str().unwrap_or_default();
        if !matches!(op, "replace" | "merge") {
            return Err(format!(
                "{at}patches[{index}].op {op:?} must be replace or merge for fulfillment_availability"
            ));
        }
        let value = &patch["value"][0]["quantity"];
        match value.as_i64() {
            Some(q) if q >= 0 => quantity = Some(q),
            _ => {
                return Err(format!(
                    "{at}patches[{index}].value[0].quantity {value} must be a whole number of at least 0"
                ));
            }
        }
    }
    Ok(quantity)
}
