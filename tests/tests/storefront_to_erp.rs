//! The walking skeleton in one process over loopback: the simulated storefront sends
//! signed order webhooks (some twice), the runner maps and delivers them, the simulated
//! ERP stores each once.

use std::time::Duration;

use entrepot_e2e::*;
use entrepot_sim::{
    erp::{self, ErpConfig},
    storefront::{Storefront, StorefrontConfig, Topic, catalog::DEFAULT_SKUS},
};

#[tokio::test]
async fn storefront_orders_reach_the_erp_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let erp = erp::bind(
        ErpConfig {
            known_skus: Some(DEFAULT_SKUS.iter().map(|s| s.to_string()).collect()),
            bearer_token: Some(ERP_TOKEN.into()),
            ..ErpConfig::default()
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    let runner = InProcessRunner::start(quickstart_config(&erp.base_url()), dir.path()).await;

    let mut config = StorefrontConfig::new(runner.webhook(FLOW), WEBHOOK_SECRET);
    config.duplicate_ratio = 0.5;
    config.seed = 7;
    config.retry.initial_backoff = Duration::from_millis(20);
    let mut storefront = Storefront::new(config).unwrap();

    // A forged delivery is refused and leaves nothing behind.
    let order = storefront.next_order();
    let forged = storefront.delivery(&order, Topic::OrdersCreate).with_bad_signature();
    assert_eq!(storefront.send(&forged).await.unwrap(), 401);

    let report = storefront.run(20, 200.0).await.unwrap();
    assert_eq!(report.acknowledged, 20);
    assert!(report.duplicate_deliveries > 0, "seed 7 duplicates some deliveries");

    eventually(Duration::from_secs(30), "every order in the ERP", || async {
        erp.orders().len() == 20 && status(&runner.admin_url).await.flows[0].pending == 0
    })
    .await;
    for sent in &report.orders {
        let stored = erp.order_by_external_id(&format!("shopify:{}", sent.order_id)).expect("stored");
        assert_eq!(stored.total, Some(sent.total_price_minor), "order {}", sent.name);
        assert_eq!(stored.items.len(), sent.skus.len());
    }
    let s = status(&runner.admin_url).await;
    assert_eq!(s.flows[0].received, 20, "the forged delivery and the duplicates were not queued");
    assert_eq!(s.flows[0].deduplicated as usize, report.duplicate_deliveries);
    assert_eq!(erp.stats().created, 20);
    assert!(erp.order_by_external_id(&format!("shopify:{}", order.id)).is_none(), "the forged order never arrives");
    runner.stop().await;
}
