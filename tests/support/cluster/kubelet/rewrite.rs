//! The kubelet's stand-in for a pod's mount and network namespaces: container paths and
//! wildcard addresses in argv and env values rewritten to host folders and the pod's
//! loopback address (see the module doc of `kubelet`).

use std::{net::Ipv4Addr, path::PathBuf};

use super::services::Endpoints;

/// Container paths and the pod's address, for one container.
#[derive(Clone, Debug)]
pub struct Rewrites {
    /// (container path, host path), longest container path first.
    paths: Vec<(String, String)>,
    ip: String,
    services: Endpoints,
}

impl Rewrites {
    /// `paths` are (container path, host path) pairs; `/` itself is never rewritten.
    pub fn new(paths: impl IntoIterator<Item = (String, PathBuf)>, ip: Ipv4Addr, services: Endpoints) -> Self {
        let mut paths: Vec<(String, String)> = paths
            .into_iter()
            .map(|(c, h)| (c.trim_end_matches('/').to_string(), h.display().to_string()))
            .filter(|(c, _)| !c.is_empty())
            .collect();
        paths.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Self { paths, ip: ip.to_string(), services }
    }

    /// `value` with a container path at its start or right after an `=` replaced by its
    /// host path, a Service's `host:port` there or right after `://` by an endpoint's,
    /// and `0.0.0.0` / `[::]` by the pod's address.
    pub fn apply(&self, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        let mut at_start = true;
        while !rest.is_empty() {
            if at_start && let Some((c, h)) = self.paths.iter().find(|(c, _)| starts_with_path(rest, c)) {
                out.push_str(h);
                rest = &rest[c.len()..];
                at_start = false;
                continue;
            }
            if at_start && let Some((endpoint, len)) = self.service(rest) {
                out.push_str(endpoint);
                rest = &rest[len..];
                at_start = false;
                continue;
            }
            if let Some(tail) = rest.strip_prefix("[::]") {
                out.push_str(&self.ip);
                rest = tail;
                at_start = false;
                continue;
            }
            if let Some(tail) = rest.strip_prefix("0.0.0.0")
                && !out.ends_with(|c: char| c.is_ascii_digit() || c == '.')
                && !tail.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            {
                out.push_str(&self.ip);
                rest = tail;
                at_start = false;
                continue;
            }
            let c = rest.chars().next().expect("rest is not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
            at_start = c == '=' || (c == '/' && out.ends_with("://"));
        }
        out
    }

    /// The endpoint of the Service `host:port` that `value` starts with, and its length.
    fn service(&self, value: &str) -> Option<(&str, usize)> {
        let host_len = value.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))?;
        let rest = value[host_len..].strip_prefix(':')?;
        let port_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let port: u16 = rest[..port_len].parse().ok()?;
        let endpoint = self.services.get(&(value[..host_len].to_string(), port))?;
        Some((endpoint, host_len + 1 + port_len))
    }
}

/// Whether `value` starts with the path `prefix` as a whole path (`/data` in `/data/x`,
/// not in `/database`).
fn starts_with_path(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|tail| tail.is_empty() || tail.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrites() -> Rewrites {
        Rewrites::new(
            [
                ("/var/lib/entrepot".to_string(), PathBuf::from("/h/queue")),
                ("/var/lib/entrepot/files/".to_string(), PathBuf::from("/h/files")),
                ("/dev/termination-log".to_string(), PathBuf::from("/h/term")),
            ],
            Ipv4Addr::new(127, 0, 0, 5),
            Endpoints::from([(("orders-runner".to_string(), 9090), "127.0.0.7:9091".to_string())]),
        )
    }

    #[test]
    fn paths_at_start_or_after_equals_longest_first() {
        let r = rewrites();
        assert_eq!(r.apply("/var/lib/entrepot"), "/h/queue");
        assert_eq!(r.apply("/var/lib/entrepot/files/a.csv"), "/h/files/a.csv");
        assert_eq!(r.apply("--data-dir=/var/lib/entrepot/q"), "--data-dir=/h/queue/q");
        assert_eq!(r.apply("/var/lib/entrepotx"), "/var/lib/entrepotx");
        assert_eq!(r.apply("x /var/lib/entrepot"), "x /var/lib/entrepot");
        assert_eq!(r.apply("/dev/termination-log"), "/h/term");
    }

    #[test]
    fn wildcard_addresses_become_the_pod_address() {
        let r = rewrites();
        assert_eq!(r.apply("0.0.0.0:8080"), "127.0.0.5:8080");
        assert_eq!(r.apply("--listen=[::]:80"), "--listen=127.0.0.5:80");
        assert_eq!(r.apply("http://0.0.0.0:1/"), "http://127.0.0.5:1/");
        assert_eq!(r.apply("10.0.0.0/8"), "10.0.0.0/8");
    }

    #[test]
    fn services_become_an_endpoint() {
        let r = rewrites();
        assert_eq!(r.apply("http://orders-runner:9090"), "http://127.0.0.7:9091");
        assert_eq!(r.apply("--runner=http://orders-runner:9090/v1"), "--runner=http://127.0.0.7:9091/v1");
        assert_eq!(r.apply("orders-runner:9090"), "127.0.0.7:9091");
        assert_eq!(r.apply("http://orders-runner:90901"), "http://orders-runner:90901");
        assert_eq!(r.apply("http://other:9090"), "http://other:9090");
        assert_eq!(r.apply("see orders-runner:9090"), "see orders-runner:9090");
    }
}
