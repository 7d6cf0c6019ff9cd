//! The process kubelet against a real control plane: pods of real controllers
//! (Deployment, Job) are bound to its Node, run as local processes, report their status,
//! restart, complete and go away as a kubelet's would.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use entrepot_e2e::{
    cluster::{
        control_plane::ControlPlane,
        kubelet::{Image, PodNetwork, ProcessKubelet},
    },
    eventually,
};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        authentication::v1::SelfSubjectReview,
        batch::v1::Job,
        core::v1::{ConfigMap, Event, Namespace, PersistentVolumeClaim, Pod, Secret, Service},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};

const IMAGE: &str = "example.test/probe-app:1";
const ENTRYPOINT: &str = "/usr/local/bin/probe-app";
const NODE: &str = "process-node";
/// Real controllers and a real API server take their time; this is the most any step
/// may take.
const LIMIT: Duration = Duration::from_secs(60);

/// A control plane with the process kubelet, running the probe app as `IMAGE`.
struct Cluster {
    kubelet: Option<ProcessKubelet>,
    client: Client,
    plane: ControlPlane,
}

impl Cluster {
    async fn start() -> Self {
        let plane = ControlPlane::start().await.expect("the control plane starts");
        // In the control plane's folder, which a failed test keeps (logs, pod folders).
        let root = plane.dir().join("kubelet");
        let images = BTreeMap::from([(
            IMAGE.to_string(),
            Image {
                entrypoint: vec![ENTRYPOINT.into()],
                binary: PathBuf::from(env!("CARGO_BIN_EXE_kubelet-probe-app")),
            },
        )]);
        let kubelet = ProcessKubelet::start(
            PodNetwork::Loopback,
            plane.client(),
            NODE,
            images,
            &root,
            &plane.server_url(),
            &plane.ca_pem(),
        )
        .await
        .expect("the kubelet starts");
        Self { kubelet: Some(kubelet), client: plane.client(), plane }
    }

    fn kubelet(&self) -> &ProcessKubelet {
        self.kubelet.as_ref().expect("running")
    }

    async fn namespace(&self, name: &str) {
        let ns = Namespace {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client.clone()).create(&PostParams::default(), &ns).await.unwrap();
    }

    async fn create<K>(&self, ns: &str, object: serde_json::Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let object: K = serde_json::from_value(object).unwrap();
        Api::<K>::namespaced(self.client.clone(), ns).create(&PostParams::default(), &object).await.unwrap()
    }

    /// The pods of `ns` whose labels match `selector`.
    async fn pods(&self, ns: &str, selector: &str) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        api.list(&ListParams::default().labels(selector)).await.map(|l| l.items).unwrap_or_default()
    }

    /// Waits for one pod of `ns` matching `selector` (and `check`), and returns it.
    async fn wait_pod(&self, ns: &str, selector: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
        let mut found = None;
        let deadline = tokio::time::Instant::now() + LIMIT;
        while found.is_none() {
            found = self.pods(ns, selector).await.into_iter().find(|p| check(p));
            assert!(tokio::time::Instant::now() < deadline || found.is_some(), "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        found.unwrap()
    }

    async fn stop(mut self) {
        self.kubelet.take().expect("running").stop().await;
    }
}

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == kind).map(|c| c.status.clone())
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn container_status(pod: &Pod) -> k8s_openapi::api::core::v1::ContainerStatus {
    pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first()).cloned().unwrap_or_default()
}

async fn get(url: &str) -> Option<String> {
    let response = reqwest::Client::builder().no_proxy().build().unwrap().get(url).send().await.ok()?;
    response.status().is_success().then_some(())?;
    response.text().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_pod_runs_ready_restarts_and_is_replaced() {
    let cluster = Cluster::start().await;
    let ns = "web";
    cluster.namespace(ns).await;
    let _: ConfigMap = cluster
        .create(
            ns,
            serde_json::json!({
                "metadata": {"name": "app-config"},
                "data": {"greeting": "hello", "config.yaml": "level: 1\n"}
            }),
        )
        .await;
    let _: Secret = cluster
        .create(ns, serde_json::json!({"metadata": {"name": "app-secret"}, "stringData": {"token": "not-so-secret"}}))
        .await;
    let _: Deployment = cluster
        .create(ns, serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 2,
                        "containers": [{
                            "name": "app",
                            "image": IMAGE,
                            "command": [ENTRYPOINT, "serve"],
                            "args": ["0.0.0.0:8080", "--file", "/etc/app/config.yaml", "--file", "$(CONFIG_DIR)/greeting"],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [
                                {"name": "CONFIG_DIR", "value": "/etc/app"},
                                {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "greeting"}}},
                                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "token"}}},
                                {"name": "MISSING", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                {"name": "MEMORY", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                                {"name": "HELLO", "value": "$(GREETING) from $(POD_NAME), $$(GREETING)"},
                                {"name": "LISTEN", "value": "0.0.0.0:8080"}
                            ],
                            "envFrom": [{"configMapRef": {"name": "app-config"}, "prefix": "CM_"}],
                            "resources": {"limits": {"memory": "64Mi"}},
                            "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}],
                            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
                            "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2}
                        }],
                        "volumes": [{"name": "config", "configMap": {"name": "app-config"}}]
                    }
                }
            }
        }))
        .await;

    let pod = cluster
        .wait_pod(ns, "app=web", "the Deployment's pod Running and Ready", |p| {
            phase(p) == "Running" && condition(p, "Ready").as_deref() == Some("True")
        })
        .await;
    assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some(NODE), "bound to the process node");
    assert_eq!(condition(&pod, "PodScheduled").as_deref(), Some("True"));
    let status = pod.status.clone().unwrap();
    let ip = status.pod_ip.clone().expect("a pod IP");
    assert!(ip.starts_with("127.") && ip != "127.0.0.1", "{ip}");
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    let app = container_status(&pod);
    assert!(app.ready && app.started == Some(true) && app.restart_count == 0, "{app:?}");
    let pid = cluster.kubelet().pid(ns, &name(&pod), "app").expect("a running process");
    assert_eq!(app.container_id, Some(format!("process://{pid}")));

    // What the process sees: env, argv, files, on its own address.
    let base = format!("http://{ip}:8080");
    let env = get(&format!("{base}/env")).await.expect("the app answers on its pod IP");
    let vars: BTreeMap<&str, &str> = env.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(vars.get("GREETING"), Some(&"hello"));
    assert!(vars.get("TOKEN") == Some(&"not-so-secret"), "the Secret's key reaches the env");
    assert!(!vars.contains_key("MISSING"));
    assert_eq!(vars.get("POD_NAME"), Some(&name(&pod).as_str()));
    assert_eq!(vars.get("POD_IP"), Some(&ip.as_str()));
    assert_eq!(vars.get("TIER"), Some(&"front"));
    assert_eq!(vars.get("NODE"), Some(&NODE));
    assert_eq!(vars.get("MEMORY"), Some(&"64"));
    assert_eq!(vars.get("CM_greeting"), Some(&"hello"));
    assert_eq!(vars.get("HELLO").copied(), Some(format!("hello from {}, $(GREETING)", name(&pod)).as_str()));
    assert_eq!(vars.get("LISTEN").copied(), Some(format!("{ip}:8080").as_str()), "wildcard addresses are the pod's");
    assert!(
        vars.contains_key("PATH") && !vars.contains_key("HOME"),
        "an empty environment plus PATH: {:?}",
        vars.keys()
    );
    // The ServiceAccount admission plugin's kube-api-access volume: a kubeconfig with the token.
    let kubeconfig = vars.get("KUBECONFIG").expect("KUBECONFIG for the service-account token");
    assert_eq!(vars.get("KUBERNETES_SERVICE_HOST"), Some(&"127.0.0.1"));
    let config = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await.unwrap();
    let review: SelfSubjectReview = Api::all(Client::try_from(config).unwrap())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("the pod's token authenticates");
    let user = review.status.and_then(|s| s.user_info).and_then(|u| u.username).unwrap_or_default();
    assert_eq!(user, format!("system:serviceaccount:{ns}:default"));
    assert_eq!(get(&format!("{base}/file/0")).await.as_deref(), Some("level: 1\n"), "the configMap volume");
    assert_eq!(get(&format!("{base}/file/1")).await.as_deref(), Some("hello"), "$(VAR) in args, then the mount path");

    // A ConfigMap change reaches the volume's files.
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
    let change = serde_json::json!({"data": {"config.yaml": "level: 2\n"}});
    maps.patch("app-config", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    eventually(Duration::from_secs(15), "the new ConfigMap in the volume", || async {
        get(&format!("{base}/file/0")).await.as_deref() == Some("level: 2\n")
    })
    .await;

    // Ready follows the readiness probe (the app's folder is the pod's, its cwd).
    let pod_dir =
        cluster.kubelet().log_path(ns, &name(&pod), "app").unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    assert_eq!(get(&format!("{base}/cwd")).await.map(PathBuf::from), Some(pod_dir.clone()));
    std::fs::write(pod_dir.join("unready"), "").unwrap();
    let uid = pod.metadata.uid.clone();
    let unready = cluster
        .wait_pod(ns, "app=web", "the pod unready", |p| {
            p.metadata.uid == uid && condition(p, "Ready").as_deref() == Some("False")
        })
        .await;
    assert_eq!(condition(&unready, "ContainersReady").as_deref(), Some("False"));
    assert_eq!(phase(&unready), "Running");
    std::fs::remove_file(pod_dir.join("unready")).unwrap();
    cluster
        .wait_pod(ns, "app=web", "the pod ready again", |p| {
            p.metadata.uid == uid && condition(p, "Ready").as_deref() == Some("True")
        })
        .await;

    // Killed, it restarts: restartCount 1, lastState the kill.
    // SAFETY: a signal to the app's process, which the kubelet started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let pod = cluster
        .wait_pod(ns, "app=web", "the killed container restarted and Ready", |p| {
            p.metadata.uid == uid && container_status(p).restart_count == 1 && container_status(p).ready
        })
        .await;
    let last = container_status(&pod).last_state.and_then(|s| s.terminated).expect("lastState.terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (137, Some("Error")));
    let new_pid = cluster.kubelet().pid(ns, &name(&pod), "app").expect("running again");
    assert_ne!(new_pid, pid);
    let log = std::fs::read_to_string(cluster.kubelet().log_path(ns, &name(&pod), "app").unwrap()).unwrap();
    assert_eq!(log.matches("listening on").count(), 2, "{log}");
    // What happened is in the pod's Events, as `kubectl describe pod` shows them.
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), ns);
    let selector = format!("involvedObject.name={}", name(&pod));
    eventually(LIMIT, "the pod's Events", || async {
        let list = events.list(&ListParams::default().fields(&selector)).await.unwrap();
        let reasons: Vec<_> = list.items.iter().filter_map(|e| e.reason.as_deref()).collect();
        ["Scheduled", "Pulled", "Started", "Unhealthy", "BackOff"].iter().all(|r| reasons.contains(r))
    })
    .await;

    // A Service's name:port in another pod's env is an endpoint of it.
    let _: Service = cluster
        .create(
            ns,
            serde_json::json!({
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}
            }),
        )
        .await;
    let _: Pod = cluster
        .create(
            ns,
            serde_json::json!({
                "metadata": {"name": "client", "labels": {"app": "client"}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": "client", "image": IMAGE, "args": ["serve", "0.0.0.0:9000"],
                        "env": [{"name": "TARGET", "value": "http://web.web.svc:80/readyz"}]
                    }]
                }
            }),
        )
        .await;
    let web_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
    let client = cluster.wait_pod(ns, "app=client", "the client Running", |p| phase(p) == "Running").await;
    let client_ip = client.status.and_then(|s| s.pod_ip).unwrap();
    let client_env = format!("http://{client_ip}:9000/env");
    eventually(LIMIT, "the client answers", || async { get(&client_env).await.is_some() }).await;
    let env = get(&client_env).await.unwrap();
    assert!(env.lines().any(|l| l == format!("TARGET=http://{web_ip}:8080/readyz")), "{env}");

    // Deleted, it goes for good, its process ends, and the ReplicaSet's replacement runs.
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    pods.delete(&name(&pod), &DeleteParams::default()).await.unwrap();
    let old = name(&pod);
    eventually(LIMIT, "the deleted pod gone", || async { pods.get_opt(&old).await.unwrap().is_none() }).await;
    // SAFETY: signal 0 only checks whether the process exists.
    assert!(unsafe { libc::kill(new_pid as i32, 0) } != 0, "the deleted pod's process is gone");
    let replacement = cluster
        .wait_pod(ns, "app=web", "a replacement pod Ready", |p| {
            name(p) != old && condition(p, "Ready").as_deref() == Some("True")
        })
        .await;
    assert_eq!(replacement.spec.as_ref().unwrap().node_name.as_deref(), Some(NODE));
    let kept_pid = cluster.kubelet().pid(ns, &name(&replacement), "app").expect("the replacement runs");
    cluster.stop().await;
    // SAFETY: as above.
    assert!(unsafe { libc::kill(kept_pid as i32, 0) } != 0, "stop kills every pod process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_and_pods_that_cannot_start_say_why() {
    let cluster = Cluster::start().await;
    let ns = "batch";
    cluster.namespace(ns).await;
    let job = |name: &str, args: serde_json::Value, init: bool| {
        let mut spec = serde_json::json!({
            "restartPolicy": "Never",
            "containers": [{
                "name": "run", "image": IMAGE, "args": args,
                "terminationMessagePath": "/var/run/report/message",
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [{"name": "report", "mountPath": "/var/run/report"}]
            }],
            "volumes": [{"name": "report", "emptyDir": {}}]
        });
        if init {
            spec["initContainers"] = serde_json::json!([{"name": "wait", "image": IMAGE, "args": ["sleep", "0.2"]}]);
        }
        serde_json::json!({
            "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"job": name}}, "spec": spec}}
        })
    };
    let _: Job = cluster
        .create(ns, job("good", serde_json::json!(["exit", "0", "/var/run/report/message", "3 records"]), true))
        .await;
    let _: Job = cluster.create(ns, job("bad", serde_json::json!(["exit", "3"]), false)).await;
    let _: Pod = cluster
        .create(
            ns,
            serde_json::json!({
                "metadata": {"name": "stranger", "labels": {"app": "stranger"}},
                "spec": {"containers": [{"name": "app", "image": "example.test/unknown:2"}]}
            }),
        )
        .await;
    let _: PersistentVolumeClaim = cluster
        .create(
            ns,
            serde_json::json!({
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }),
        )
        .await;

    let good = cluster.wait_pod(ns, "job=good", "the good Job's pod Succeeded", |p| phase(p) == "Succeeded").await;
    let done = container_status(&good).state.and_then(|s| s.terminated).expect("terminated");
    assert_eq!(
        (done.exit_code, done.reason.as_deref(), done.message.as_deref()),
        (0, Some("Completed"), Some("3 records"))
    );
    let init = good.status.as_ref().and_then(|s| s.init_container_statuses.clone()).unwrap_or_default();
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code), Some(0));
    assert_eq!(condition(&good, "Initialized").as_deref(), Some("True"));
    assert_eq!(condition(&good, "Ready").as_deref(), Some("False"));
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), ns);
    eventually(LIMIT, "the good Job complete", || async {
        jobs.get("good").await.unwrap().status.and_then(|s| s.succeeded) == Some(1)
    })
    .await;

    let bad = cluster.wait_pod(ns, "job=bad", "the bad Job's pod Failed", |p| phase(p) == "Failed").await;
    let failed = container_status(&bad).state.and_then(|s| s.terminated).expect("terminated");
    assert_eq!((failed.exit_code, failed.reason.as_deref()), (3, Some("Error")));
    assert_eq!(failed.message.as_deref(), Some("exiting with 3\nlast words on stderr"), "the log's tail");
    // `kubectl logs` reads the container's log through the kubelet's endpoint.
    let logs = cluster.plane.kubectl(&["logs", "-n", ns, &name(&bad)]).await.expect_ok("kubectl logs");
    assert_eq!(logs, "exiting with 3\nlast words on stderr\n");
    let tail =
        cluster.plane.kubectl(&["logs", "-n", ns, &name(&bad), "--tail=1"]).await.expect_ok("kubectl logs --tail");
    assert_eq!(tail, "last words on stderr\n");

    let stranger = cluster
        .wait_pod(ns, "app=stranger", "ErrImagePull", |p| {
            container_status(p).state.and_then(|s| s.waiting).and_then(|w| w.reason).as_deref() == Some("ErrImagePull")
        })
        .await;
    let waiting = container_status(&stranger).state.and_then(|s| s.waiting).unwrap();
    let message = waiting.message.unwrap_or_default();
    assert!(message.contains("example.test/unknown:2") && message.contains(IMAGE), "{message}");
    assert_eq!(phase(&stranger), "Pending");
    assert_eq!(cluster.kubelet().pid(ns, "stranger", "app"), None, "nothing runs");

    // A missing ConfigMap holds the container back until it appears; a command the image
    // does not have never runs.
    let _: Pod = cluster
        .create(
            ns,
            serde_json::json!({
                "metadata": {"name": "patient", "labels": {"app": "patient"}},
                "spec": {"containers": [{
                    "name": "app", "image": IMAGE, "args": ["serve", "0.0.0.0:9000"],
                    "env": [{"name": "LATER", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "k"}}}]
                }]}
            }),
        )
        .await;
    let _: Pod = cluster
        .create(
            ns,
            serde_json::json!({
                "metadata": {"name": "shell", "labels": {"app": "shell"}},
                "spec": {"containers": [{"name": "app", "image": IMAGE, "command": ["/bin/sh", "-c", "true"]}]}
            }),
        )
        .await;
    let waiting = |p: &Pod| container_status(p).state.and_then(|s| s.waiting).unwrap_or_default();
    let patient = cluster
        .wait_pod(ns, "app=patient", "CreateContainerConfigError", |p| {
            waiting(p).reason.as_deref() == Some("CreateContainerConfigError")
        })
        .await;
    let message = waiting(&patient).message.unwrap_or_default();
    assert!(message.contains("later"), "{message}");
    let shell = cluster
        .wait_pod(ns, "app=shell", "CreateContainerError", |p| {
            waiting(p).reason.as_deref() == Some("CreateContainerError")
        })
        .await;
    let message = waiting(&shell).message.unwrap_or_default();
    assert!(message.contains("/bin/sh") && message.contains(IMAGE), "{message}");
    let _: ConfigMap = cluster.create(ns, serde_json::json!({"metadata": {"name": "later"}, "data": {"k": "v"}})).await;
    cluster
        .wait_pod(ns, "app=patient", "the patient pod Running once its ConfigMap exists", |p| phase(p) == "Running")
        .await;

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), ns);
    eventually(LIMIT, "the claim Bound to a provisioned volume", || async {
        claims.get("data").await.unwrap().status.and_then(|s| s.phase).as_deref() == Some("Bound")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_keeps_its_claim_across_pods_and_drop_kills_every_process() {
    let cluster = Cluster::start().await;
    let ns = "state";
    cluster.namespace(ns).await;
    let _: StatefulSet = cluster
        .create(
            ns,
            serde_json::json!({
                "metadata": {"name": "db"},
                "spec": {
                    "replicas": 1,
                    "serviceName": "db",
                    "selector": {"matchLabels": {"app": "db"}},
                    "template": {
                        "metadata": {"labels": {"app": "db"}},
                        "spec": {
                            "automountServiceAccountToken": false,
                            "containers": [{
                                "name": "db", "image": IMAGE,
                                "args": ["serve", "[::]:7000", "--file", "/var/lib/db/kept"],
                                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}],
                                "readinessProbe": {"tcpSocket": {"port": 7000}, "periodSeconds": 1}
                            }]
                        }
                    },
                    "volumeClaimTemplates": [{
                        "metadata": {"name": "data"},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
                    }]
                }
            }),
        )
        .await;
    let ready = |p: &Pod| condition(p, "Ready").as_deref() == Some("True");
    let pod = cluster.wait_pod(ns, "app=db", "db-0 Ready", ready).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), ns);
    eventually(LIMIT, "the StatefulSet's claim Bound", || async {
        claims.get("data-db-0").await.unwrap().status.and_then(|s| s.phase).as_deref() == Some("Bound")
    })
    .await;
    // The claim's folder is the process's /var/lib/db, and outlives the pod.
    let folder = cluster.kubelet().claim_path(ns, "data-db-0");
    std::fs::write(folder.join("kept"), "across pods").unwrap();
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
    assert_eq!(get(&format!("http://{ip}:7000/file/0")).await.as_deref(), Some("across pods"));
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    pods.delete("db-0", &DeleteParams::default()).await.unwrap();
    let uid = pod.metadata.uid.clone();
    let again = cluster.wait_pod(ns, "app=db", "a new db-0 Ready", |p| p.metadata.uid != uid && ready(p)).await;
    let ip = again.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap();
    assert_eq!(get(&format!("http://{ip}:7000/file/0")).await.as_deref(), Some("across pods"));

    // Dropped without stop, the kubelet still kills its processes.
    let pid = cluster.kubelet().pid(ns, "db-0", "db").expect("db-0 runs");
    drop(cluster);
    eventually(Duration::from_secs(5), "the process gone", || async {
        // SAFETY: signal 0 only checks whether the process exists (a zombie is reaped by
        // the runtime soon after it dies).
        let gone = unsafe { libc::kill(pid as i32, 0) } != 0;
        gone || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    })
    .await;
}
