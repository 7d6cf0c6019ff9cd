//! The kubelet's HTTPS endpoint, as far as `kubectl logs` needs it:
//! `GET /containerLogs/{namespace}/{pod}/{container}` with `tailLines`, `limitBytes` and
//! `follow`, served from the container's log file. The API server dials it at the Node's
//! address and `status.daemonEndpoints.kubeletEndpoint.port`, and does not check its
//! certificate (no `--kubelet-certificate-authority`), so a self-signed one does.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{Path as UrlPath, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use futures::StreamExt;
use tokio::{
    io::{AsyncReadExt, AsyncSeekExt},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        ServerConfig,
        crypto::ring,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
    server::TlsStream,
};

use super::Kubelet;
use crate::pki::{Ca, Usage};

/// Serves the kubelet endpoint on a free loopback port, until the task is aborted;
/// returns the port.
pub async fn start(kubelet: Arc<Kubelet>) -> anyhow::Result<(u16, tokio::task::JoinHandle<()>)> {
    let pki = kubelet.root.join("pki");
    let issued = Ca::new(&pki, "process-kubelet-ca").issue(
        "kubelet",
        Usage::Server,
        &kubelet.node,
        &[],
        &["127.0.0.1", "localhost"],
    );
    let certs = CertificateDer::pem_file_iter(&issued.cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&issued.key)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let tls = TlsListener { tcp: listener, acceptor: TlsAcceptor::from(Arc::new(config)) };
    let app = Router::new().route("/containerLogs/{namespace}/{pod}/{container}", get(logs)).with_state(kubelet);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(tls, app).await {
            eprintln!("process kubelet: the kubelet endpoint stopped: {e}");
        }
    });
    Ok((port, task))
}

/// A TCP listener whose connections are TLS, handshake done.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            match tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return (tls, addr),
                _ => continue,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
    #[serde(default)]
    follow: bool,
}

async fn logs(
    State(kubelet): State<Arc<Kubelet>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let Some(process) = kubelet.process(&namespace, &pod, &container) else {
        let message = format!("container {container:?} in pod {namespace}/{pod} has not run on this node");
        return (StatusCode::NOT_FOUND, message).into_response();
    };
    let mut text = match tokio::fs::read(&process.log).await {
        Ok(text) => text,
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", process.log.display())).into_response();
        }
    };
    if let Some(lines) = query.tail_lines {
        text = tail(&text, lines).to_vec();
    }
    if let Some(limit) = query.limit_bytes {
        text.truncate(limit);
    }
    if !query.follow {
        return text.into_response();
    }
    let offset = tokio::fs::metadata(&process.log).await.map(|m| m.len()).unwrap_or(0);
    let (namespace, pod, container) = (namespace.clone(), pod.clone(), container.clone());
    let follow = futures::stream::unfold((offset, false), move |(offset, done)| {
        let (kubelet, log) = (kubelet.clone(), process.log.clone());
        let (namespace, pod, container) = (namespace.clone(), pod.clone(), container.clone());
        async move {
            if done {
                return None;
            }
            loop {
                let running = kubelet.process(&namespace, &pod, &container).is_some_and(|p| p.pid.is_some());
                let more = read_from(&log, offset).await;
                if !more.is_empty() {
                    let next = offset + more.len() as u64;
                    return Some((Ok::<_, std::io::Error>(more), (next, false)));
                }
                // Like `kubectl logs -f`: over when the container has stopped.
                if !running {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let head = futures::stream::once(async move { Ok::<_, std::io::Error>(text) });
    Body::from_stream(head.chain(follow)).into_response()
}

/// The last `lines` lines of `text`.
fn tail(text: &[u8], lines: usize) -> &[u8] {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(lines.saturating_sub(1))
        .map_or(0, |(i, _)| i + 1);
    if lines == 0 { &text[text.len()..] } else { &text[start..] }
}

async fn read_from(log: &Path, offset: u64) -> Vec<u8> {
    let mut more = Vec::new();
    if let Ok(mut file) = tokio::fs::File::open(log).await
        && file.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
    {
        let _ = file.read_to_end(&mut more).await;
    }
    more
}

#[cfg(test)]
mod tests {
    use super::tail;

    #[test]
    fn tails() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", 5), b"a\nb\nc");
        assert_eq!(tail(b"a\nb\n", 0), b"");
    }
}
