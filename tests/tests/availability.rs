//! Channel availability end to end: the `wms-inventory-to-channels` example, polling a
//! WMS on loopback and delivering to both channels over real HTTP. Each channel must be
//! shown its own available-to-sell, and the two together never more than the warehouse
//! can ship.

use std::time::Duration;

use axum::{Json, Router, routing::get};
use entrepot::secrets::Secrets;
use entrepot_e2e::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// The WMS's snapshot listing: one page, then no cursor.
async fn wms(rows: Value) -> String {
    let app = Router::new().route(
        "/inventory/snapshots",
        get(move || {
            let rows = rows.clone();
            async move { Json(json!({"results": rows, "next_cursor": null})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn row(sku: &str, on_hand: u64, allocated: u64, hold: u64, at: &str) -> Value {
    json!({"item_code": sku, "facility_code": "DC-EAST", "on_hand_qty": on_hand, "allocated_qty": allocated,
           "hold_qty": hold, "uom": "EA", "snapshot_time": at})
}

#[tokio::test]
async fn each_channel_is_shown_its_share_and_together_never_more_than_can_ship() {
    let rows = json!([
        // 240 on hand − 31 allocated − 4 on hold = 205 shippable; the tee's safety stock is 10.
        row("TSHIRT-BLK-M", 240, 31, 4, "2026-11-27T19:05:00Z"),
        // 3 on hand, 5 allocated: nothing to sell, and never a negative quantity.
        row("MUG-WHT", 3, 5, 0, "2026-11-27T19:06:30Z"),
    ]);
    let wms_url = wms(rows).await;
    let channels = ScriptedTarget::start().await;
    let manifests = example("wms-inventory-to-channels");
    let secrets = Secrets::with_manifests(manifests.secrets.clone());
    let mut config = manifests.runner_config().expect("the example resolves");
    for flow in &mut config.flows {
        for (name, c) in &mut flow.connectors {
            c.endpoint = Some(if name.starts_with("wms") { wms_url.clone() } else { channels.url.clone() });
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let runner = InProcessRunner::start_with(config, &secrets, dir.path()).await;

    eventually(WAIT, "both snapshots reach both channels", || async { channels.received().len() == 4 }).await;
    let received = channels.received();
    let shopify =
        |item: u64| received.iter().find(|r| r.body["inventory_item_id"] == item).map(|r| r.body["available"].clone());
    let amazon = |sku: &str| {
        received.iter().find(|r| r.body["sku"] == sku).map(|r| r.body["patches"][0]["value"][0]["quantity"].clone())
    };
    // The tee: (205 − 10) × 70% = 136.5 → 136 on Shopify; × 30% = 58.5 → 58 on Amazon
    // (under its cap of 100): 194 together, within the 195 left after safety stock.
    assert_eq!(shopify(49012345678001), Some(json!(136)), "{received:?}");
    assert_eq!(amazon("TSHIRT-BLK-M"), Some(json!(58)), "{received:?}");
    // The over-allocated mug: 0 everywhere.
    assert_eq!(shopify(49012345678002), Some(json!(0)), "{received:?}");
    assert_eq!(amazon("AC-MUG-WHITE-11OZ"), Some(json!(0)), "{received:?}");
    runner.stop().await;
}
