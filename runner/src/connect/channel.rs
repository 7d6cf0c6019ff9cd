//! A Connector's client as the [`Channel`] a protocol's multi-request exchange sends
//! through (read the ETag, then `PATCH`; follow an asynchronous job).

use futures::future::BoxFuture;
use reqwest::{
    Method,
    header::{ACCEPT, ETAG},
};

use super::{ConnectorClient, Sent};
use crate::protocol::{Answer, Channel, Reply, Write};

impl Channel for ConnectorClient {
    fn name(&self) -> &str {
        ConnectorClient::name(self)
    }

    fn endpoint(&self) -> &str {
        ConnectorClient::endpoint(self)
    }

    /// Sends one request through the client (credentials, session, the 401 rule),
    /// keeping the answer's ETag and its body as JSON.
    fn request<'a>(&'a self, method: Method, url: &'a str, write: Option<&'a Write>) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let sent = self
                .send(|http| {
                    let request = http.request(method.clone(), url).header(ACCEPT, "application/json");
                    match write {
                        Some(write) => request.headers(write.headers.clone()).body(write.body.clone()),
                        None => request,
                    }
                })
                .await;
            let etag = match &sent {
                Sent::Response(response, _) => {
                    response.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(String::from)
                }
                _ => None,
            };
            let answer = sent.into_answer(self.system()).await;
            let json = match &answer {
                Answer::Response { body, .. } => serde_json::from_str(body).ok(),
                _ => None,
            };
            Reply { answer, etag, json }
        })
    }
}
