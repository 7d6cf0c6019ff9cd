//! Reading an upstream answer's body with a byte cap: what is kept of it is read, and the
//! rest never is, so an endless or enormous body costs no more memory than the cap.

/// The first `limit` bytes of `response`'s body, and whether it had more (then the rest
/// is left unread and the connection is not reused).
pub(crate) async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Result<Capped, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok(Capped { body, cut: true });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Capped { body, cut: false })
}

/// A body read by [`read_prefix`].
#[derive(Debug)]
pub(crate) struct Capped {
    /// Its first bytes, at most the limit.
    pub body: Vec<u8>,
    /// It had more than the limit.
    pub cut: bool,
}

#[cfg(test)]
mod tests {
    use entrepot_api::resource::ConnectorSpec;

    use super::*;
    use crate::{connect::ConnectorClient, protocol::Answer, secrets::Secrets, test_support::endless_bodies};

    #[tokio::test]
    async fn an_endless_body_is_read_only_up_to_the_cap() {
        let url = endless_bodies().await;
        let response = reqwest::get(format!("{url}/endless")).await.unwrap();
        let capped = read_prefix(response, 100_000).await.unwrap();
        assert_eq!((capped.body.len(), capped.cut), (100_000, true));
        assert!(capped.body.iter().all(|b| *b == b'x'));

        let response = reqwest::get(format!("{url}/short")).await.unwrap();
        let capped = read_prefix(response, 10).await.unwrap();
        assert_eq!((capped.body.as_slice(), capped.cut), (&b"0123456789"[..], false), "exactly the cap is not cut");
        let response = reqwest::get(format!("{url}/short")).await.unwrap();
        let capped = read_prefix(response, 4).await.unwrap();
        assert_eq!((capped.body.as_slice(), capped.cut), (&b"0123"[..], true));
    }

    #[tokio::test]
    async fn a_failed_answer_keeps_4_kib_of_an_endless_body_without_reading_the_rest() {
        let url = endless_bodies().await;
        let spec = ConnectorSpec { endpoint: Some(url.clone()), allow_plain_http: true, ..ConnectorSpec::default() };
        let client = ConnectorClient::new("erp", "retail", &spec, &Secrets::default()).unwrap();
        let sent = client.send(|http| http.get(format!("{url}/endless"))).await;
        match sent.into_answer(client.system()).await {
            Answer::Response { status, body, .. } => {
                assert_eq!(status, 500);
                assert_eq!(body.len(), 4096, "the first 4 KiB, not a read error after the request timeout");
            }
            other => panic!("{other:?}"),
        }
    }
}
