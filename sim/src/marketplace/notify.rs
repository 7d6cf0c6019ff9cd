//! `ORDER_CHANGE` notifications, delivered the way an EventBridge API destination would:
//! an EventBridge envelope whose `detail` is the SP-API notification, posted to an HTTP
//! endpoint. Amazon warns that notifications may be duplicated, arrive out of order or not
//! at all, and to keep a backup retrieval path (reference §5); every such fault is a
//! seeded knob here.

use std::fmt;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::{AmazonOrder, MarketplaceError};
use crate::delivery::{DeliveryReport, Event, Faults, FaultyPoster};

/// Where and how notifications are delivered.
#[derive(Clone)]
pub struct NotificationConfig {
    /// The HTTP endpoint notifications are posted to.
    pub destination: String,
    /// A header sent with every delivery (an EventBridge connection's API key), e.g.
    /// `("x-api-key", "...")`. The value is never logged.
    pub api_key_header: Option<(String, String)>,
    /// Duplicates (same `NotificationId`), reordering, drops and delay, seeded.
    pub faults: Faults,
    /// Time allowed for each delivery.
    pub timeout: Duration,
}

impl NotificationConfig {
    /// Delivers every notification once, in order, to `destination`.
    pub fn new(destination: impl Into<String>) -> Self {
        Self {
            destination: destination.into(),
            api_key_header: None,
            faults: Faults::default(),
            timeout: Duration::from_secs(5),
        }
    }
}

// Written by hand so the API key never reaches a log line.
impl fmt::Debug for NotificationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotificationConfig")
            .field("destination", &self.destination)
            .field("api_key_header", &self.api_key_header.as_ref().map(|(name, _)| (name, "<redacted>")))
            .field("faults", &self.faults)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Posts `ORDER_CHANGE` notifications to one destination with seeded faults.
pub(super) struct Notifier {
    poster: FaultyPoster,
    headers: HeaderMap,
    seller_id: String,
}

impl Notifier {
    pub(super) fn new(config: NotificationConfig, seller_id: &str) -> Result<Self, MarketplaceError> {
        let invalid =
            |reason: String| MarketplaceError::Destination { destination: config.destination.clone(), reason };
        let poster = FaultyPoster::new(&config.destination, config.faults, config.timeout).map_err(invalid)?;
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some((name, value)) = &config.api_key_header {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| invalid(format!("api_key_header name {name:?} is not a header name")))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| invalid("api_key_header value cannot be sent as a header".to_owned()))?;
            headers.insert(name, value);
        }
        Ok(Self { poster, headers, seller_id: seller_id.to_owned() })
    }

    /// The EventBridge event for one order change.
    fn event(&self, order: &AmazonOrder) -> Value {
        let now = Timestamp::now();
        json!({
            "version": "0",
            "id": uuid::Uuid::now_v7().to_string(),
            "detail-type": "ORDER_CHANGE",
            "source": "aws.partner/sellingpartnerapi.amazon.com/entrepot-sim",
            "time": now,
            "detail": {
                "NotificationVersion": "1.0",
                "NotificationType": "ORDER_CHANGE",
                "PayloadVersion": "1.0",
                "EventTime": order.last_update_date,
                "Payload": {"OrderChangeNotification": {
                    "NotificationLevel": "OrderLevel",
                    "SellerId": self.seller_id,
                    "AmazonOrderId": order.amazon_order_id,
                    "OrderChangeType": "OrderStatusChange",
                    "OrderChangeTrigger": {"TimeOfOrderChange": order.last_update_date, "ChangeReason": "NewOrder"},
                    "Summary": {
                        "MarketplaceId": order.marketplace_id,
                        "OrderStatus": order.order_status,
                        "PurchaseDate": order.purchase_date,
                        "FulfillmentType": order.fulfillment_channel,
                        "OrderItems": order.items.iter().map(|item| json!({
                            "OrderItemId": item.order_item_id,
                            "SellerSKU": item.seller_sku,
                            "Quantity": item.quantity_ordered,
                        })).collect::<Vec<_>>(),
                    },
                }},
                "NotificationMetadata": {
                    "ApplicationId": "amzn1.sellerapps.app.entrepot-sim",
                    "SubscriptionId": "entrepot-sim-order-change",
                    "PublishTime": now,
                    "NotificationId": uuid::Uuid::now_v7().to_string(),
                },
            },
        })
    }

    /// Delivers one notification per order, with the configured faults; the report's
    /// `dropped` lists the `NotificationId`s never sent.
    pub(super) async fn send_order_changes(&self, orders: &[AmazonOrder]) -> DeliveryReport {
        let events = orders
            .iter()
            .map(|order| {
                let event = self.event(order);
                Event {
                    id: event["detail"]["NotificationMetadata"]["NotificationId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    body: Bytes::from(event.to_string()),
                    headers: self.headers.clone(),
                }
            })
            .collect();
        self.poster.deliver(events).await
    }
}
