//! The `postgres` Connector against a real PostgreSQL (a private server started by
//! `Postgres::start`), over real HTTP and a real queue on disk:
//! - examples/orders-to-postgres-warehouse: Shopify webhooks → canonical orders → rows,
//!   each once, upserted by order id, a refused row dead-lettered alone with its column
//!   named, a database outage retried until the database is back;
//! - a `sql` poll of an items table → an HTTP target, the watermark kept across a restart.

use std::time::Duration;

use entrepot::{manifest::Manifests, secrets::Secrets};
use entrepot_e2e::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const EXAMPLE: &str = "orders-to-postgres-warehouse";
const FLOW: &str = "shopify-orders-to-warehouse";

/// The example pointed at `pg`, with its table created and fast retries.
async fn warehouse(pg: &Postgres, dir: &std::path::Path) -> InProcessRunner {
    let schema = std::fs::read_to_string(repo_root().join("examples").join(EXAMPLE).join("schema.sql")).unwrap();
    pg.client(PG_DATABASE).await.batch_execute(&schema).await.unwrap();
    let manifests = example(EXAMPLE);
    let mut config = manifests.runner_config().unwrap();
    let flow = &mut config.flows[0];
    flow.connectors.get_mut("warehouse-db").unwrap().endpoint = Some(pg.endpoint());
    flow.spec.delivery.retry.initial_backoff = Duration::from_millis(50).into();
    flow.spec.delivery.retry.max_backoff = Duration::from_millis(300).into();
    flow.spec.delivery.retry.max_attempts = 200;
    InProcessRunner::start_with(config, &Secrets::with_manifests(manifests.secrets), dir).await
}

async fn dead_letters(admin_url: &str) -> Vec<Value> {
    reqwest::get(format!("{admin_url}/v1/deadletters")).await.unwrap().json().await.unwrap()
}

fn order(id: u64, email: &str, total: &str, updated_at: &str) -> Vec<u8> {
    let mut order: Value = serde_json::from_slice(&shopify_order(id, "MUG-WHT", updated_at)).unwrap();
    order["email"] = email.into();
    order["total_price"] = total.into();
    serde_json::to_vec(&order).unwrap()
}

#[tokio::test]
async fn orders_land_once_each_are_upserted_and_a_refused_row_is_dead_lettered_alone() {
    let pg = Postgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = pg.client(PG_DATABASE).await;
    let runner = warehouse(&pg, dir.path()).await;
    // The warehouse keeps emails of at most 40 characters: one order's is longer.
    db.batch_execute("ALTER TABLE sales_orders ALTER COLUMN customer_email TYPE varchar(40)").await.unwrap();
    let url = runner.webhook(FLOW);
    let long_email = format!("{}@example.com", "x".repeat(40));
    let sends = (1..=30u64).map(|n| {
        let email = if n == 17 { long_email.clone() } else { format!("buyer{n}@example.com") };
        let body = order(n, &email, "10.00", "2026-11-27T10:00:00Z");
        let url = url.clone();
        async move { post_webhook(&url, &body, &format!("delivery-{n}"), None).await.status() }
    });
    for status in futures::future::join_all(sends).await {
        assert_eq!(status, 200);
    }
    // Shopify delivering one again.
    let again = order(3, "buyer3@example.com", "10.00", "2026-11-27T10:00:00Z");
    assert_eq!(post_webhook(&url, &again, "delivery-3", None).await.status(), 200);

    eventually(WAIT, "29 rows written and one dead letter", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered == 29 && s.flows[0].dead_lettered == 1 && s.flows[0].pending == 0
    })
    .await;
    let rows = db
        .query("SELECT order_id, customer_email, grand_total, document FROM sales_orders ORDER BY order_id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 29);
    assert!(rows.iter().all(|r| r.get::<_, String>(0) != "shopify:17"));
    let row = rows.iter().find(|r| r.get::<_, String>(0) == "shopify:3").unwrap();
    assert_eq!((row.get::<_, String>(1), row.get::<_, i64>(2)), ("buyer3@example.com".to_string(), 1000));

    let letters = dead_letters(&runner.admin_url).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason"], "rejected");
    let message = letters[0]["message"].as_str().unwrap();
    assert!(message.contains("customer_email") && message.contains("22001"), "{message}");

    // A newer revision overwrites the row; a late older one is dropped as stale.
    let newer = order(5, "buyer5@example.com", "25.00", "2026-11-27T11:00:00Z");
    assert_eq!(post_webhook(&url, &newer, "delivery-5b", None).await.status(), 200);
    eventually(WAIT, "order 5 overwritten", || async {
        let row = db.query_one("SELECT grand_total FROM sales_orders WHERE order_id = 'shopify:5'", &[]).await.unwrap();
        row.get::<_, i64>(0) == 2500
    })
    .await;
    let older = order(5, "buyer5@example.com", "1.00", "2026-11-27T09:00:00Z");
    assert_eq!(post_webhook(&url, &older, "delivery-5c", None).await.status(), 200);
    eventually(WAIT, "the older revision counted as stale", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].stale == 1 && s.flows[0].pending == 0
    })
    .await;
    let row = db
        .query_one(
            "SELECT grand_total, document->'totals'->>'grand' FROM sales_orders WHERE order_id = 'shopify:5'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, String>(1)), (2500, "2500".to_string()));
    let count: i64 = db.query_one("SELECT count(*) FROM sales_orders", &[]).await.unwrap().get(0);
    assert_eq!(count, 29);
    runner.stop().await;
}

#[tokio::test]
async fn orders_written_while_the_database_is_down_land_when_it_is_back() {
    let mut pg = Postgres::start().await;
    let dir = tempfile::tempdir().unwrap();
    let runner = warehouse(&pg, dir.path()).await;
    let url = runner.webhook(FLOW);
    assert_eq!(
        post_webhook(&url, &order(1, "a@example.com", "10.00", "2026-11-27T10:00:00Z"), "d-1", None).await.status(),
        200
    );
    let db = pg.client(PG_DATABASE).await;
    eventually(WAIT, "the first order written", || async {
        db.query("SELECT 1 FROM sales_orders", &[]).await.unwrap().len() == 1
    })
    .await;
    drop(db);

    pg.stop();
    for n in 2..=4u64 {
        let body = order(n, "a@example.com", "10.00", "2026-11-27T10:00:00Z");
        assert_eq!(post_webhook(&url, &body, &format!("d-{n}"), None).await.status(), 200);
    }
    eventually(WAIT, "deliveries retried while the database is down", || async {
        let s = status(&runner.admin_url).await;
        let target = &s.flows[0].targets[0];
        target.retried >= 3 && target.last_error.as_deref().is_some_and(|e| e.starts_with("unreachable"))
    })
    .await;
    assert_eq!(status(&runner.admin_url).await.flows[0].delivered, 1);

    pg.resume().await;
    eventually(WAIT, "every order written once the database is back", || async {
        let s = status(&runner.admin_url).await;
        s.flows[0].delivered == 4 && s.flows[0].pending == 0
    })
    .await;
    let db = pg.client(PG_DATABASE).await;
    let count: i64 = db.query_one("SELECT count(*) FROM sales_orders", &[]).await.unwrap().get(0);
    assert_eq!(count, 4);
    assert!(dead_letters(&runner.admin_url).await.is_empty());
    runner.stop().await;
}

/// A sql poll of `items` into `target`, keyset pages of two rows; dedupWindow is 1 ms so
/// a row read twice would be delivered twice: only the watermark keeps it from that.
fn items_flow(dir: &std::path::Path, pg: &Postgres, target: &str) -> Manifests {
    let yaml = format!(
        r#"apiVersion: entrepot.io/v1alpha1
kind: Connector
metadata: {{name: items-db}}
spec:
  type: postgres
  endpoint: {endpoint}
  database: {{sslMode: disable}}
  auth:
    basic:
      usernameSecretRef: {{name: items-db, key: username}}
      passwordSecretRef: {{name: items-db, key: password}}
---
apiVersion: entrepot.io/v1alpha1
kind: Connector
metadata: {{name: storefront}}
spec:
  type: rest
  endpoint: {target}
---
apiVersion: v1
kind: Secret
metadata: {{name: items-db}}
stringData: {{username: {PG_USER}, password: {PG_PASSWORD}}}
---
apiVersion: entrepot.io/v1alpha1
kind: SyncFlow
metadata: {{name: items-to-storefront}}
spec:
  source:
    connectorRef: items-db
    entity: items
    trigger:
      poll:
        interval: 100ms
        sql: |
          SELECT sku, name, price_minor, updated_at FROM items
          WHERE updated_at > $1::timestamptz ORDER BY updated_at, sku LIMIT 2
        watermark: {{field: .updated_at, initial: "1970-01-01T00:00:00Z"}}
  targets:
    - {{connectorRef: storefront, entity: item, path: /items}}
  delivery:
    dedupWindow: 1ms
    retry: {{initialBackoff: 50ms, maxBackoff: 200ms}}
"#,
        endpoint = pg.endpoint()
    );
    std::fs::write(dir.join("items.yaml"), yaml).unwrap();
    Manifests::load_dir(dir).unwrap()
}

#[tokio::test]
async fn a_sql_poll_reads_rows_by_watermark_and_keeps_it_across_a_restart() {
    let pg = Postgres::start().await;
    let db = pg.client(PG_DATABASE).await;
    db.batch_execute(
        "CREATE TABLE items (sku text PRIMARY KEY, name text NOT NULL, price_minor bigint NOT NULL, updated_at timestamptz NOT NULL);
         INSERT INTO items SELECT 'SKU-' || n, 'Item ' || n, 100 * n, timestamptz '2026-11-01 10:00:00+00' + n * interval '1 minute'
         FROM generate_series(1, 5) AS n;",
    )
    .await
    .unwrap();
    let target = ScriptedTarget::start().await;
    let (manifest_dir, data_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let manifests = items_flow(manifest_dir.path(), &pg, &target.url);
    let secrets = Secrets::with_manifests(manifests.secrets.clone());

    let runner = InProcessRunner::start_with(manifests.runner_config().unwrap(), &secrets, data_dir.path()).await;
    eventually(WAIT, "the five rows delivered", || async { target.received().len() == 5 }).await;
    let first = &target.received()[0].body;
    assert_eq!((first["sku"].as_str(), first["price_minor"].as_i64()), (Some("SKU-1"), Some(100)));
    assert_eq!(first["updated_at"], "2026-11-01T10:01:00+00:00");
    eventually(WAIT, "a poll after the last page", || async { status(&runner.admin_url).await.flows[0].pending == 0 })
        .await;
    runner.stop().await;

    // While the runner is down: one row changes, one is added.
    db.batch_execute(
        "UPDATE items SET price_minor = 999, updated_at = timestamptz '2026-11-02 08:00:00+00' WHERE sku = 'SKU-2';
         INSERT INTO items VALUES ('SKU-6', 'Item 6', 600, timestamptz '2026-11-02 09:00:00+00');",
    )
    .await
    .unwrap();
    let runner = InProcessRunner::start_with(manifests.runner_config().unwrap(), &secrets, data_dir.path()).await;
    eventually(WAIT, "the two changed rows delivered", || async { target.received().len() == 7 }).await;
    // Several more polls: nothing older than the watermark comes again.
    eventually(WAIT, "three more polls", || async {
        let body = reqwest::get(format!("{}/metrics", runner.admin_url)).await.unwrap().text().await.unwrap();
        body.lines()
            .find(|l| l.starts_with("entrepot_polls_total{"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .is_some_and(|n| n >= 3.0)
    })
    .await;
    let received = target.received();
    assert_eq!(received.len(), 7, "{:?}", received.iter().map(|r| r.body["sku"].clone()).collect::<Vec<_>>());
    let skus: Vec<&str> = received[5..].iter().map(|r| r.body["sku"].as_str().unwrap()).collect();
    assert_eq!(skus, ["SKU-2", "SKU-6"]);
    assert_eq!(received[5].body["price_minor"], 999);
    runner.stop().await;
}

/// The example's target, on its own, pointed at `pg`; `edit` may change its Connector
/// and add Secret keys (of Secret `warehouse-db`).
fn warehouse_sink(
    pg: &Postgres,
    edit: impl FnOnce(&mut entrepot_api::resource::ConnectorSpec, &mut std::collections::BTreeMap<String, String>),
) -> entrepot::sink::Sink {
    let mut manifests = example(EXAMPLE);
    let mut config = manifests.runner_config().unwrap().flows.remove(0);
    let connector = config.connectors.get_mut("warehouse-db").unwrap();
    connector.endpoint = Some(pg.endpoint());
    let key = manifests.secrets.keys().find(|k| k.name == "warehouse-db").unwrap().clone();
    edit(connector, manifests.secrets.get_mut(&key).unwrap());
    let secrets = Secrets::with_manifests(manifests.secrets);
    let client = entrepot::connect::ConnectorClient::new("warehouse-db", "default", connector, &secrets).unwrap();
    entrepot::sink::Sink::new(&config, &config.spec.targets[0], std::sync::Arc::new(client), &secrets).unwrap()
}

/// Record `n` of the batch test as a delivery item of the example's target.
fn warehouse_item(n: usize, email: &str) -> entrepot::queue::DeliveryItem {
    let body = serde_json::json!({
        "order_id": format!("batch:{n}"), "order_number": format!("#{n}"), "source_system": "pos",
        "source_version": "2026-11-27T10:00:00Z", "placed_at": "2026-11-27T09:59:00Z", "currency": "EUR",
        "customer_email": email, "line_count": 1, "grand_total": 1000 + n, "tax_total": 160,
        "document": {"orderId": format!("batch:{n}")}
    });
    entrepot::queue::DeliveryItem {
        envelope: entrepot::queue::Envelope {
            id: format!("e{n}"),
            delivery_id: None,
            source_delivery_id: None,
            event_id: None,
            topic: None,
            correlation_id: format!("c{n}"),
            trace_parent: None,
            received_at_ms: 0,
            payload: Vec::new(),
            replay: None,
        },
        target: "warehouse-db".into(),
        idempotency_key: format!("batch:{n}"),
        ordering_key: Some(format!("batch:{n}")),
        version: None,
        body: serde_json::to_vec(&body).unwrap(),
    }
}

// A current-thread runtime: every send below is queued before a writer task runs, so
// what the writers take is known: one batch of 40 (at most 100 make a batch).
#[tokio::test(flavor = "current_thread")]
async fn a_batch_is_one_transaction_and_a_refused_row_leaves_the_rest_of_it_written() {
    use entrepot::protocol::{Answer, Verdict};
    let pg = Postgres::start().await;
    let db = pg.client(PG_DATABASE).await;
    let schema = std::fs::read_to_string(repo_root().join("examples").join(EXAMPLE).join("schema.sql")).unwrap();
    db.batch_execute(&schema).await.unwrap();
    // The top transaction that wrote each row (xmin would name a savepoint's own).
    db.batch_execute("ALTER TABLE sales_orders ADD COLUMN written_by bigint DEFAULT txid_current()").await.unwrap();
    let sink = warehouse_sink(&pg, |_, _| {});

    // Record 20 breaks the check constraint; record 30 has no key.
    let mut items: Vec<_> = (1..=40).map(|n| warehouse_item(n, &format!("b{n}@example.com"))).collect();
    let mut bad: Value = serde_json::from_slice(&items[19].body).unwrap();
    bad["line_count"] = 0.into();
    items[19].body = serde_json::to_vec(&bad).unwrap();
    let mut keyless: Value = serde_json::from_slice(&items[29].body).unwrap();
    keyless.as_object_mut().unwrap().remove("order_id");
    items[29].body = serde_json::to_vec(&keyless).unwrap();

    let answers = futures::future::join_all(items.iter().map(|item| sink.send(item))).await;
    let verdict = |a: &Answer| match a {
        Answer::Database(v) => v.clone(),
        other => panic!("{other:?}"),
    };
    for (i, answer) in answers.iter().enumerate() {
        match (i + 1, verdict(answer)) {
            (20, Verdict::Reject { reason, .. }) => {
                assert!(reason.contains("sales_orders_line_count_check") && reason.contains("23514"), "{reason}");
                // The row's values (the buyer's address) stay in the dead letter, out of logs and status.
                assert!(reason.contains("Failing row contains (…)") && !reason.contains("b20@example.com"), "{reason}");
            }
            (30, Verdict::Reject { reason, .. }) => assert!(reason.contains("no `order_id`"), "{reason}"),
            (_, Verdict::Delivered) => {}
            (n, other) => panic!("record {n}: {other:?}"),
        }
    }
    let (rows, transactions): (i64, i64) = {
        let row = db.query_one("SELECT count(*), count(DISTINCT written_by) FROM sales_orders", &[]).await.unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((rows, transactions), (38, 1), "38 rows in one transaction");

    // A rough rate, for the report (not asserted): 20 batches of 100 upserts.
    let many: Vec<_> = (1..=2000).map(|n| warehouse_item(n, "bulk@example.com")).collect();
    let started = std::time::Instant::now();
    for chunk in many.chunks(100) {
        let answers = futures::future::join_all(chunk.iter().map(|item| sink.send(item))).await;
        assert!(answers.iter().all(|a| verdict(a) == Verdict::Delivered));
    }
    let rate = 2000.0 / started.elapsed().as_secs_f64();
    let bulk: i64 = db
        .query_one("SELECT count(DISTINCT written_by) FROM sales_orders WHERE customer_email = 'bulk@example.com'", &[])
        .await
        .unwrap()
        .get(0);
    eprintln!("2000 upserts, sent 100 at a time: {rate:.0} rows/s in {bulk} transactions");
}

#[tokio::test]
async fn verify_full_writes_over_tls_to_a_server_its_ca_signed_and_refuses_another() {
    use entrepot::protocol::{Answer, ErrorCategory, Verdict};
    use entrepot_api::resource::{DatabaseOptions, SecretKeySelector, SslMode};
    let pg = Postgres::start_with_tls().await;
    let db = pg.client(PG_DATABASE).await;
    let schema = std::fs::read_to_string(repo_root().join("examples").join(EXAMPLE).join("schema.sql")).unwrap();
    db.batch_execute(&schema).await.unwrap();
    let ca = pg.ca_pem.clone().unwrap();
    let trusting = warehouse_sink(&pg, |connector, secret| {
        secret.insert("ca.crt".into(), ca);
        let ca_secret_ref = Some(SecretKeySelector { name: "warehouse-db".into(), key: "ca.crt".into() });
        connector.database = Some(DatabaseOptions { ssl_mode: SslMode::VerifyFull, ca_secret_ref });
    });
    assert!(matches!(trusting.send(&warehouse_item(1, "tls@example.com")).await, Answer::Database(Verdict::Delivered)));
    let encrypted: i64 = db
        .query_one("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'entrepot'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(encrypted, 1, "the writer's connection is encrypted");

    // The system's roots do not know the test CA: the handshake fails, and that is
    // retried (the certificate may be fixed), never written in plain text.
    let doubting = warehouse_sink(&pg, |connector, _| connector.database = Some(DatabaseOptions::default()));
    match doubting.send(&warehouse_item(2, "tls@example.com")).await {
        Answer::Database(Verdict::Retry { reason, category: ErrorCategory::Unreachable, .. }) => {
            assert!(reason.contains("certificate") || reason.contains("UnknownIssuer"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let count: i64 = db.query_one("SELECT count(*) FROM sales_orders", &[]).await.unwrap().get(0);
    assert_eq!(count, 1);
}
