//! The SP-API operations the simulated marketplace serves, each with its own token bucket.

use std::fmt;

use super::bucket::Limit;

/// One SP-API operation; each has its own rate limit (token bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// `GET /orders/v0/orders`.
    GetOrders,
    /// `GET /orders/v0/orders/{orderId}`.
    GetOrder,
    /// `GET /orders/v0/orders/{orderId}/orderItems`.
    GetOrderItems,
    /// `GET /listings/2021-08-01/items/{sellerId}/{sku}`.
    GetListingsItem,
    /// `PATCH /listings/2021-08-01/items/{sellerId}/{sku}`.
    PatchListingsItem,
    /// `POST /feeds/2021-06-30/documents`.
    CreateFeedDocument,
    /// `GET /feeds/2021-06-30/documents/{feedDocumentId}`.
    GetFeedDocument,
    /// `POST /feeds/2021-06-30/feeds`.
    CreateFeed,
    /// `GET /feeds/2021-06-30/feeds/{feedId}`.
    GetFeed,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Self; 9] = [
        Self::GetOrders,
        Self::GetOrder,
        Self::GetOrderItems,
        Self::GetListingsItem,
        Self::PatchListingsItem,
        Self::CreateFeedDocument,
        Self::GetFeedDocument,
        Self::CreateFeed,
        Self::GetFeed,
    ];

    /// The operation's name as the SP-API reference writes it (`getOrders`).
    pub fn name(self) -> &'static str {
        match self {
            Self::GetOrders => "getOrders",
            Self::GetOrder => "getOrder",
            Self::GetOrderItems => "getOrderItems",
            Self::GetListingsItem => "getListingsItem",
            Self::PatchListingsItem => "patchListingsItem",
            Self::CreateFeedDocument => "createFeedDocument",
            Self::GetFeedDocument => "getFeedDocument",
            Self::CreateFeed => "createFeed",
            Self::GetFeed => "getFeed",
        }
    }

    /// The default usage plan, as the SP-API reference lists it (rate per second, burst).
    /// getOrders is sourced in the external-API reference (0.0167/s, burst 20); the others
    /// are the values Amazon's per-API reference pages give and should be re-checked there.
    pub fn default_limit(self) -> Limit {
        match self {
            Self::GetOrders => Limit::new(0.0167, 20),
            Self::GetOrder | Self::GetOrderItems => Limit::new(0.5, 30),
            Self::GetListingsItem | Self::PatchListingsItem => Limit::new(5.0, 10),
            Self::CreateFeedDocument => Limit::new(0.5, 15),
            Self::GetFeedDocument => Limit::new(0.0222, 10),
            Self::CreateFeed => Limit::new(0.0083, 15),
            Self::GetFeed => Limit::new(2.0, 15),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
