//! What the tests share: YAML fixtures and the in-memory API server.

pub mod fake_api;
pub mod fixtures;

/// Installs rustls' ring provider, as the binary does: kube links both ring and
/// aws-lc-rs, and rustls refuses to pick between them.
pub fn install_crypto_provider() {
    // Err only means another test in this process installed it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Polls `check` until it gives a value. The deadline only turns a hang into a failure
/// that says what was awaited; no test asserts how long anything takes.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A controller running in a task of its own; dropping this stops it.
pub struct Running {
    task: tokio::task::JoinHandle<()>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// What a controller's `run` waits on to shut down.
pub type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + Sync>>;

impl Running {
    /// Spawns `run(shutdown)`.
    pub fn start<Fut>(run: impl FnOnce(Shutdown) -> Fut) -> Self
    where
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(Box::pin(async move {
            let _ = stopped.await;
        })));
        Self { task, _stop: stop }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates `object` as a user applying it would: without what the API server assigns.
pub async fn create<K>(client: &kube::Client, mut object: K) -> K
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let meta = object.meta_mut();
    meta.uid = None;
    meta.generation = None;
    meta.resource_version = None;
    let namespace = meta.namespace.clone().expect("a namespaced object");
    kube::Api::<K>::namespaced(client.clone(), &namespace).create(&Default::default(), &object).await.expect("create")
}

/// The Events the operator published in `namespace` on the object named `name`, with
/// `reason`.
pub async fn events_about(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    reason: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    let events: kube::Api<k8s_openapi::api::events::v1::Event> = kube::Api::namespaced(client.clone(), namespace);
    events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

/// A Connector or Mapping controller running against a fresh in-memory API.
pub struct Observed {
    /// The API it runs against.
    pub cluster: fake_api::FakeCluster,
    /// Its context (metrics included).
    pub ctx: std::sync::Arc<crate::observer::Context>,
    _controller: Running,
}

impl Observed {
    /// Starts `run(ctx, shutdown)` against an empty API.
    pub async fn start<Fut>(run: impl FnOnce(std::sync::Arc<crate::observer::Context>, Shutdown) -> Fut) -> Self
    where
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        install_crypto_provider();
        let cluster = fake_api::FakeCluster::new().await;
        let ctx =
            std::sync::Arc::new(crate::observer::Context::new(cluster.client.clone(), crate::metrics::Metrics::new()));
        let controller = Running::start({
            let ctx = ctx.clone();
            move |shutdown| run(ctx, shutdown)
        });
        Self { cluster, ctx, _controller: controller }
    }

    /// Creates every object of `fixture`, Connectors and Mappings before flows, as a
    /// user applying the file would.
    pub async fn create_all(&self, fixture: fixtures::Fixture) {
        for c in fixture.connectors {
            create(&self.cluster.client, c).await;
        }
        for m in fixture.mappings {
            create(&self.cluster.client, m).await;
        }
        for f in fixture.flows {
            create(&self.cluster.client, f).await;
        }
    }

    /// The API of `K` in `namespace`.
    pub fn api<K>(&self, namespace: &str) -> kube::Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        kube::Api::namespaced(self.cluster.client.clone(), namespace)
    }
}
