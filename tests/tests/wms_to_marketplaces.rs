//! examples/wms-stock-to-marketplaces end to end: the simulated WMS's availability feed,
//! polled page by page, reaches the simulated Amazon marketplace (LWA token, listings
//! PATCH) and Walmart (WM_* headers, inventory PUT) until both show what the WMS can ship;
//! every quantity a channel was given was the WMS's shippable quantity at a version no
//! older than the one given before it.

use std::time::Duration;

use entrepot::secrets::Secrets;

use entrepot_api::resource::ConnectorAuth;
use entrepot_e2e::*;
use entrepot_sim::marketplace::walmart::{self, WalmartConfig};
use entrepot_sim::marketplace::{self, ListingCause, ListingChange, MarketplaceConfig};
use entrepot_sim::wms::{self, ShippablePoint, WmsConfig};

const WAIT: Duration = Duration::from_secs(60);

/// Each quantity patched onto a channel is the WMS's shippable quantity of some version
/// set before the patch, and the versions never go backwards (the stale guard).
fn assert_followed_the_wms(sku: &str, channel: &str, patches: &[ListingChange], wms: &[ShippablePoint]) {
    let mut floor = 0;
    for patch in patches.iter().filter(|p| p.cause == ListingCause::Patch) {
        let found = wms
            .iter()
            .position(|point| point.version >= floor && point.at <= patch.at && point.shippable == patch.quantity)
            .unwrap_or_else(|| {
                panic!(
                    "{channel} showed {} of {sku} at {}: never shippable at a version ≥ {floor} before then",
                    patch.quantity, patch.at
                )
            });
        floor = wms[found].version;
    }
}

#[tokio::test]
async fn wms_availability_reaches_amazon_and_walmart_and_never_runs_ahead_of_it() {
    let wms = wms::bind(
        WmsConfig { bearer_token: Some("demo-wms-token".into()), seed: 3, ..WmsConfig::default() },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    wms.receive_opening_stock(30).unwrap();
    wms.generate(40);
    let amazon = marketplace::bind(MarketplaceConfig::default(), "127.0.0.1:0").await.unwrap();
    let walmart = walmart::bind(WalmartConfig::default(), "127.0.0.1:0").await.unwrap();

    let manifests = example("wms-stock-to-marketplaces");
    let mut config = manifests.runner_config().unwrap();
    let flow = &mut config.flows[0];
    flow.connectors.get_mut("wms").unwrap().endpoint = Some(wms.base_url());
    for (name, base, token_url) in [
        ("amazon-us", amazon.base_url(), amazon.token_url()),
        ("walmart-us", walmart.base_url(), format!("{}/v3/token", walmart.base_url())),
    ] {
        let connector = flow.connectors.get_mut(name).unwrap();
        connector.endpoint = Some(base);
        let Some(ConnectorAuth::OAuth2ClientCredentials(oauth)) = connector.auth.as_mut() else {
            panic!("{name} uses OAuth2")
        };
        oauth.token_url = token_url;
    }
    let poll = flow.spec.source.trigger.poll.as_mut().unwrap();
    poll.interval = Duration::from_millis(100).into();
    poll.query.insert("limit".into(), "2".into());
    flow.spec.delivery.retry.initial_backoff = Duration::from_millis(20).into();
    flow.spec.delivery.retry.max_backoff = Duration::from_millis(500).into();

    let dir = tempfile::tempdir().unwrap();
    let runner =
        InProcessRunner::start_with(config, &Secrets::with_manifests(manifests.secrets.clone()), dir.path()).await;
    let skus = WmsConfig::default().skus;
    let in_step = || {
        skus.iter().all(|sku| {
            let shippable = wms.shippable(sku);
            amazon.listing_quantity(sku) == Some(shippable) && walmart.inventory(sku) == Some(shippable)
        })
    };
    eventually(WAIT, "both channels show the WMS's shippable stock", || async { in_step() }).await;

    // Peak hour: more sales, picks and receipts; the channels follow.
    wms.generate(60);
    eventually(WAIT, "both channels follow the new stock", || async { in_step() }).await;

    for sku in &skus {
        let history = wms.shippable_history(sku);
        assert_followed_the_wms(sku, "amazon", &amazon.listing_history(sku), &history);
        assert_followed_the_wms(sku, "walmart", &walmart.inventory_history(sku), &history);
    }
    let stats = walmart.stats();
    assert_eq!((stats.missing_headers, stats.unauthorized), (0, 0));
    assert_eq!(amazon.stats().unauthorized, 0);
    assert_eq!(amazon.stats().tokens_issued, 1, "one LWA token for the whole run");
    runner.stop().await;
}
