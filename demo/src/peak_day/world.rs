//! The simulated systems, the runner, the traffic, and the report.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow};
use entrepot_sim::{
    erp::{self, ErpConfig, ErpHandle},
    marketplace::{self, Faults, MarketplaceConfig, NotificationConfig},
    storefront::{AdminApi, Checkout, Storefront, StorefrontConfig, Topic, catalog::DEFAULT_SKUS},
    wms::{self, MovementKind, MovementRequest, WebhookConfig, WmsConfig, WmsHandle},
};
use jiff::Timestamp;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use tokio::{net::TcpListener, sync::watch};

use super::{
    DISCONTINUED_SKU, Params,
    measure::{self, Outage, Percentiles, Shown, StockState},
    report::{Movements, Report},
};
use entrepot::{
    availability, manifest::Manifests, queue::DeadLetterFilter, reconcile::Reconciler, runtime::Runtime,
    secrets::Secrets,
};
use entrepot_api::{config::RunnerConfig, resource::ChannelAvailability};

/// `examples/peak-day/`, embedded in the binary.
const MANIFESTS: [(&str, &str); 5] = [
    ("connectors.yaml", include_str!("../../../examples/peak-day/connectors.yaml")),
    ("mappings.yaml", include_str!("../../../examples/peak-day/mappings.yaml")),
    ("secrets.yaml", include_str!("../../../examples/peak-day/secrets.yaml")),
    ("syncflows.yaml", include_str!("../../../examples/peak-day/syncflows.yaml")),
    ("reconcile.yaml", include_str!("../../../examples/peak-day/reconcile.yaml")),
];
const STOREFRONT_FLOW: &str = "storefront-orders-to-erp";
const MARKETPLACE_FLOW: &str = "marketplace-orders-to-erp";
const INVENTORY_FLOW: &str = "wms-inventory-to-channels";
/// Time the ERP holds each request (a slot of its concurrency).
const ERP_LATENCY: Duration = Duration::from_millis(20);
/// The WMS location every channel sells from.
const WAREHOUSE: &str = "DC-EAST";
/// The storefront's location id (Shopify `gid://shopify/Location/...`), as the inventory
/// Mapping's lookup names it.
const STORE_LOCATION: u64 = 71_234_568_001;

/// Orders taken: ERP external id → when; reservations still to pick; oversells.
#[derive(Default)]
struct Ledger {
    taken: BTreeMap<String, Timestamp>,
    reserved: std::collections::VecDeque<(String, i64, String)>,
    oversold: Vec<String>,
}

impl Ledger {
    /// Reserves an order's lines at the WMS; an order it cannot reserve was oversold.
    fn reserve(&mut self, wms: &WmsHandle, external_id: &str, lines: &[(String, i64)]) {
        self.taken.insert(external_id.to_string(), Timestamp::now());
        for (sku, units) in lines {
            let request = MovementRequest {
                kind: MovementKind::Sale,
                sku: sku.clone(),
                location: WAREHOUSE.into(),
                to_location: None,
                quantity: *units,
                reference: Some(external_id.to_string()),
            };
            match wms.apply(request) {
                Ok(_) => self.reserved.push_back((sku.clone(), *units, external_id.to_string())),
                Err(_) => self.oversold.push(format!("{external_id} ({units} × {sku})")),
            }
        }
    }
}

const DIR: &str = "examples/peak-day";

fn load() -> Result<Manifests> {
    crate::embedded::load_embedded(DIR, &MANIFESTS)
}

fn secret(manifests: &Manifests, name: &str, key: &str) -> Result<String> {
    crate::embedded::secret_of(manifests, DIR, name, key)
}

/// The availability rule of `flow`'s target on Connector `connector`.
fn rule(config: &RunnerConfig, connector: &str) -> Result<ChannelAvailability> {
    config
        .flows
        .iter()
        .find(|f| f.name == INVENTORY_FLOW)
        .and_then(|f| f.spec.targets.iter().find(|t| t.connector_ref == connector))
        .and_then(|t| t.availability.clone())
        .with_context(|| format!("{INVENTORY_FLOW} has no availability for {connector}"))
}

/// Runs the whole day.
pub async fn run(params: &Params, verbose: bool) -> Result<Report> {
    let started = Instant::now();
    let manifests = load()?;
    let mut config = entrepot::cli::resolve(&manifests)?;
    let say = |line: String| {
        if verbose {
            println!("{line}");
        }
    };

    // The runner's listeners first: the simulators need its webhook URLs.
    let webhooks = TcpListener::bind("127.0.0.1:0").await?;
    let admin = TcpListener::bind("127.0.0.1:0").await?;
    let webhook_addr = webhooks.local_addr()?;
    let hook = |flow: &str| -> Result<String> { Ok(format!("http://{webhook_addr}/webhooks/{flow}")) };

    let skus: Vec<String> = DEFAULT_SKUS.iter().map(|s| s.to_string()).collect();
    let erp = Arc::new(
        erp::bind(
            ErpConfig {
                known_skus: Some(skus.iter().cloned().collect()),
                bearer_token: Some(secret(&manifests, "erp", "token")?),
                latency: ERP_LATENCY,
                max_concurrency: params.erp_concurrency,
                ..ErpConfig::default()
            },
            "127.0.0.1:0",
        )
        .await?,
    );
    let mut wms_webhook = WebhookConfig::new(hook(INVENTORY_FLOW)?, secret(&manifests, "wms", "webhook-secret")?);
    wms_webhook.faults = Faults {
        duplicate_ratio: params.duplicate_ratio,
        reorder_ratio: params.out_of_order_ratio,
        seed: params.seed,
        ..Faults::default()
    };
    let wms = Arc::new(
        wms::bind(
            WmsConfig {
                webhook: Some(wms_webhook),
                skus: skus.clone(),
                locations: vec![WAREHOUSE.into()],
                seed: params.seed,
                ..WmsConfig::default()
            },
            "127.0.0.1:0",
        )
        .await?,
    );
    let shop_api = Arc::new(
        AdminApi::serve(TcpListener::bind("127.0.0.1:0").await?, secret(&manifests, "storefront", "access-token")?)
            .await?,
    );
    for sku in &skus {
        shop_api.stock(sku, STORE_LOCATION, 0);
    }
    let mut notifications = NotificationConfig::new(hook(MARKETPLACE_FLOW)?);
    notifications.api_key_header = Some(("x-api-key".into(), secret(&manifests, "marketplace", "notification-key")?));
    notifications.faults = Faults {
        duplicate_ratio: params.duplicate_ratio,
        reorder_ratio: params.out_of_order_ratio,
        seed: params.seed + 1,
        ..Faults::default()
    };
    let market = Arc::new(
        marketplace::bind(
            MarketplaceConfig {
                client_id: secret(&manifests, "marketplace", "client-id")?,
                client_secret: secret(&manifests, "marketplace", "client-secret")?,
                refresh_token: secret(&manifests, "marketplace", "refresh-token")?,
                seed: params.seed,
                notifications: Some(notifications),
                ..MarketplaceConfig::default()
            },
            "127.0.0.1:0",
        )
        .await?,
    );

    for flow in &mut config.flows {
        for (name, connector) in &mut flow.connectors {
            match name.as_str() {
                "storefront" => connector.endpoint = Some(format!("{}/admin/api/2026-10", shop_api.base_url())),
                "marketplace" => {
                    connector.endpoint = Some(market.base_url());
                    point_lwa_at(connector, &market.token_url());
                }
                "wms" => connector.endpoint = Some(wms.base_url()),
                "erp" => connector.endpoint = Some(erp.base_url()),
                _ => {}
            }
        }
    }
    let shop_rule = rule(&config, "storefront")?;
    let market_rule = rule(&config, "marketplace")?;
    let data_dir = params
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("entrepot-peak-day-{}", std::process::id())));
    let secrets = Secrets::with_manifests(manifests.secrets.clone());
    let rt = Runtime::new(config.clone(), &secrets, &data_dir)?;
    let (stop, shutdown) = watch::channel(false);
    let server = tokio::spawn(entrepot::runtime::serve(rt.clone(), webhooks, admin, shutdown));

    say(format!(
        "Entrepot peak day: storefront + marketplace → ERP, WMS → channels ({} + {} orders over {:?}, ERP down {:?})",
        params.storefront_orders, params.marketplace_orders, params.burst, params.outage
    ));

    // Opening stock, and both channels showing it before the doors open.
    wms.receive_opening_stock(params.opening_stock).map_err(|e| anyhow!("opening stock: {e}"))?;
    let expected_shop = |s: i64| availability::compute(&shop_rule, "", s as f64, 0.0, None).available as i64;
    let ready = Instant::now() + Duration::from_secs(30);
    while Instant::now() < ready {
        let shop_ok =
            skus.iter().all(|s| shop_api.available(s, STORE_LOCATION) == Some(expected_shop(params.opening_stock)));
        let market_ok = skus.iter().all(|s| market.listing_quantity(s).is_some());
        if shop_ok && market_ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let doors_open = Timestamp::now();

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let burst = params.burst.max(Duration::from_millis(100));

    // The ERP goes down in the middle of the burst.
    let outage = {
        let erp = erp.clone();
        let (start, length) = (burst.saturating_sub(params.outage) / 2, params.outage);
        tokio::spawn(async move {
            tokio::time::sleep(start).await;
            erp.set_down(true);
            let down = Timestamp::now();
            tokio::time::sleep(length).await;
            erp.set_down(false);
            (down, Timestamp::now())
        })
    };
    // The ERP's served requests over the day, to measure the rate its backlog drained at.
    let served = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (erp, served) = (erp.clone(), served.clone());
        tokio::spawn(async move {
            loop {
                served.lock().unwrap().push((Timestamp::now(), erp.stats().served()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // The storefront: shoppers check out what the store shows; the WMS reserves it.
    let mut store_config =
        StorefrontConfig::new(hook(STOREFRONT_FLOW)?, secret(&manifests, "storefront", "client-secret")?);
    store_config.seed = params.seed;
    store_config.duplicate_ratio = params.duplicate_ratio;
    store_config.out_of_order_ratio = params.out_of_order_ratio;
    store_config.retry.initial_backoff = Duration::from_millis(250);
    store_config.retry.max_backoff = Duration::from_secs(2);
    store_config.start = Timestamp::now();
    let mut storefront = Storefront::new(store_config).context("storefront")?;
    storefront.record_into(&shop_api);
    storefront.set_checkout(Checkout(Arc::new({
        let (shop_api, wms, ledger) = (shop_api.clone(), wms.clone(), ledger.clone());
        move |order: &entrepot_sim::storefront::Order| {
            let lines: Vec<(String, i64)> =
                order.line_items.iter().map(|l| (l.sku.clone().unwrap_or_default(), i64::from(l.quantity))).collect();
            if !shop_api.checkout(&lines, STORE_LOCATION) {
                return false;
            }
            ledger.lock().unwrap().reserve(&wms, &format!("shopify:{}", order.id), &lines);
            true
        }
    })));
    let store_rate = params.storefront_orders as f64 / burst.as_secs_f64();
    let store_orders = params.storefront_orders;
    let shop = tokio::spawn(async move {
        let report = storefront.run(store_orders, store_rate.max(0.01)).await;
        // One order for a SKU the ERP no longer knows: refused, dead-lettered with the reason.
        let bad = storefront.order_with_sku(DISCONTINUED_SKU);
        let delivered =
            storefront.send_with_retries(&storefront.delivery(&bad, Topic::OrdersCreate)).await.acknowledged();
        (report, delivered)
    });

    // The marketplace: buyers take what the listings show.
    let market_task = {
        let (market, wms, ledger) = (market.clone(), wms.clone(), ledger.clone());
        let (count, period) = (params.marketplace_orders, burst.div_f64(params.marketplace_orders.max(1) as f64));
        tokio::spawn(async move {
            let (mut placed, mut sold_out, mut faults) = (0, 0, (0, 0));
            for _ in 0..count {
                tokio::time::sleep(period).await;
                let (orders, report) = market.place_orders(1).await;
                faults.0 += report.duplicated;
                faults.1 += report.reordered;
                if orders.is_empty() {
                    sold_out += 1;
                }
                for order in orders {
                    let lines: Vec<(String, i64)> =
                        order.items.iter().map(|i| (i.seller_sku.clone(), i64::from(i.quantity_ordered))).collect();
                    ledger.lock().unwrap().reserve(&wms, &format!("amazon:{}", order.amazon_order_id), &lines);
                    placed += 1;
                }
            }
            (placed, sold_out, faults)
        })
    };

    // The store's tills, goods in, returns, and the warehouse picking reserved orders.
    let floor = {
        let (wms, ledger, skus) = (wms.clone(), ledger.clone(), skus.clone());
        let (count, period, seed) = (params.pos_sales, burst.div_f64(params.pos_sales.max(1) as f64), params.seed);
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x505);
            let mut m = Movements::default();
            let movement = |kind, sku: &str, quantity, reference: String| MovementRequest {
                kind,
                sku: sku.to_string(),
                location: WAREHOUSE.into(),
                to_location: None,
                quantity,
                reference: Some(reference),
            };
            for i in 0..count {
                tokio::time::sleep(period).await;
                let sku = &skus[rng.random_range(0..skus.len())];
                let units = rng.random_range(1..=2);
                let sale = wms.apply(movement(MovementKind::Sale, sku, units, format!("pos-{i}")));
                if sale.is_ok() && wms.apply(movement(MovementKind::Pick, sku, units, format!("pos-{i}"))).is_ok() {
                    m.pos_sales += 1;
                } else {
                    m.pos_refused += 1;
                }
                if i % 15 == 14 && wms.apply(movement(MovementKind::Receipt, sku, 24, format!("asn-{i}"))).is_ok() {
                    m.receipts += 1;
                }
                if i % 20 == 19 && wms.apply(movement(MovementKind::Return, sku, 1, format!("rma-{i}"))).is_ok() {
                    m.returns += 1;
                }
                let next = ledger.lock().unwrap().reserved.pop_front();
                if let Some((sku, units, order)) = next
                    && wms.apply(movement(MovementKind::Pick, &sku, units, order)).is_ok()
                {
                    m.picks += 1;
                }
            }
            m
        })
    };

    let progress = verbose.then(|| tokio::spawn(show_progress(rt.clone(), erp.clone())));
    let (storefront_report, discontinued_acknowledged) = shop.await?;
    let storefront_report = storefront_report.context("storefront")?;
    let (marketplace_orders, marketplace_sold_out, notification_faults) = market_task.await?;
    let movements = floor.await?;
    let (down, up) = outage.await?;
    wms.flush_webhooks().await;

    // Drain: every flow's queue empty twice in a row.
    let deadline = Instant::now() + params.outage + Duration::from_secs(120);
    let mut empty = 0;
    let drained = loop {
        let status = rt.status().await?;
        empty = if status.flows.iter().all(|f| f.pending == 0) { empty + 1 } else { 0 };
        if empty >= 3 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(p) = progress {
        p.abort();
    }
    sampler.abort();

    // Reconciliation of every ReconcileSchedule, now that the flows have drained.
    let mut reconciliation = Vec::new();
    for (key, spec) in &manifests.schedules {
        let flow = config
            .flows
            .iter()
            .find(|f| f.name == spec.sync_flow_ref)
            .cloned()
            .with_context(|| format!("ReconcileSchedule {}: no SyncFlow {}", key.name, spec.sync_flow_ref))?;
        let reconciler = Reconciler::new(&key.name, spec, flow, &secrets, Timestamp::now())?;
        reconciliation.push(reconciler.run(None).await?);
    }

    let status = rt.status().await?;
    let dead_letters = {
        let queue = rt.queue.clone();
        let page = tokio::task::spawn_blocking(move || queue.find_dead_letters(&DeadLetterFilter::default())).await??;
        page.entries
            .into_iter()
            .map(|e| (e.flow.clone(), e.dead_letter.reason.as_str().to_string(), e.dead_letter.message.clone()))
            .collect::<Vec<_>>()
    };
    let _ = stop.send(true);
    let _ = server.await;
    if params.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }

    // The figures.
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    let stored = erp.orders();
    let by_id: BTreeMap<&str, &erp::StoredOrder> = stored.iter().map(|o| (o.external_id.as_str(), o)).collect();
    let missing_in_erp = ledger.taken.keys().filter(|id| !by_id.contains_key(id.as_str())).cloned().collect();
    let written_twice = stored.iter().filter(|o| o.writes > 1).map(|o| o.external_id.clone()).collect();
    let unexpected_in_erp =
        stored.iter().filter(|o| !ledger.taken.contains_key(&o.external_id)).map(|o| o.external_id.clone()).collect();
    let posting = Percentiles::of(
        ledger
            .taken
            .iter()
            .filter_map(|(id, at)| by_id.get(id.as_str()).map(|o| measure::elapsed(*at, o.created_at)))
            .collect(),
    );
    let orders: Vec<_> =
        ledger.taken.iter().map(|(id, at)| (*at, by_id.get(id.as_str()).map(|o| o.created_at))).collect();
    let outage = Outage::of(&orders, down, up, &served.lock().unwrap());
    let mut freshness = BTreeMap::new();
    let mut overshows = Vec::new();
    let (mut shop_fresh, mut market_fresh) = (Vec::new(), Vec::new());
    for sku in &skus {
        let stock: Vec<StockState> =
            wms.shippable_history(sku).iter().map(|p| StockState { at: p.at, shippable: p.shippable }).collect();
        let shop: Vec<Shown> = shop_api
            .inventory_history(sku)
            .into_iter()
            .filter(|c| c.location_id == STORE_LOCATION)
            .map(|c| Shown { at: c.at, quantity: c.available })
            .collect();
        let listed: Vec<Shown> =
            market.listing_history(sku).into_iter().map(|c| Shown { at: c.at, quantity: c.quantity }).collect();
        let shown_by =
            |r: &ChannelAvailability, s: i64| availability::compute(r, sku, s as f64, 0.0, None).available as i64;
        shop_fresh.extend(measure::freshness(&stock, &shop, |s| shown_by(&shop_rule, s), doors_open));
        market_fresh.extend(measure::freshness(&stock, &listed, |s| shown_by(&market_rule, s), doors_open));
        overshows.extend(measure::overshows("storefront", sku, &stock, &shop, doors_open));
        overshows.extend(measure::overshows("marketplace", sku, &stock, &listed, doors_open));
    }
    freshness.insert("storefront".to_string(), Percentiles::of(shop_fresh));
    freshness.insert("marketplace".to_string(), Percentiles::of(market_fresh));
    let runner_throttled = status
        .flows
        .iter()
        .flat_map(|f| f.targets.iter().map(move |t| (format!("{} → {}", f.name, t.connector), t.throttled)))
        .collect();
    let stats = erp.stats();
    Ok(Report {
        elapsed: started.elapsed(),
        storefront: storefront_report,
        marketplace_orders,
        marketplace_sold_out,
        notification_faults,
        movements,
        taken: ledger.taken.len(),
        missing_in_erp,
        written_twice,
        unexpected_in_erp,
        in_erp: stored.len(),
        oversold_orders: ledger.oversold,
        overshows,
        posting,
        outage,
        erp_grant: (params.erp_concurrency, ERP_LATENCY),
        freshness,
        erp_throttled: stats.throttled,
        erp_served: stats.served(),
        runner_throttled,
        erp_unavailable: stats.unavailable,
        retries: status.flows.iter().flat_map(|f| &f.targets).map(|t| t.retried).sum(),
        deduplicated: status.flows.iter().map(|f| f.deduplicated).sum(),
        stale: status.flows.iter().map(|f| f.stale).sum(),
        dead_letters,
        reconciliation,
        drained,
        discontinued_acknowledged,
    })
}

/// Points an amazon-sp Connector's LWA token endpoint at the simulated marketplace.
fn point_lwa_at(connector: &mut entrepot_api::resource::ConnectorSpec, token_url: &str) {
    if let Some(entrepot_api::resource::ConnectorAuth::OAuth2ClientCredentials(o)) = &mut connector.auth {
        o.token_url = token_url.to_string();
    }
}

async fn show_progress(rt: Arc<Runtime>, erp: Arc<ErpHandle>) {
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let Ok(status) = rt.status().await else { continue };
        let flows: Vec<String> = status
            .flows
            .iter()
            .map(|f| format!("{} {}/{} queued {}", f.name, f.delivered, f.received, f.pending))
            .collect();
        eprintln!(
            "  {:>4.0}s  ERP orders {:>5}  {}",
            start.elapsed().as_secs_f64(),
            erp.orders().len(),
            flows.join("  ")
        );
    }
}
