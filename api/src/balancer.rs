//! The node's load balancer over the apiservers, as k3s's agent runs one: the node's
//! components connect to a local port, and each connection is relayed to a live server.
//!
//! The servers are learned from the `default/kubernetes` EndpointSlice (every live server, see
//! the apiserver's `peers`), starting from the kubeconfig's address. A connection goes to the
//! server the last one reached; a server that refuses or does not answer within two seconds is
//! passed over for the next, and kept last for a while. When a server dies its connections
//! break, the clients reconnect, and the next connection lands on a survivor, so a node's
//! components fail over in the time a reconnect takes. Relaying is plain TCP: TLS runs end to
//! end between the component and the server (whose certificate names 127.0.0.1).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

/// How long a server that failed a connection is tried only after the others.
const PASSED_OVER: Duration = Duration::from_secs(5);
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the server list is read from the `kubernetes` EndpointSlice.
const REFRESH: Duration = Duration::from_secs(10);

#[derive(Default)]
struct State {
    servers: Vec<SocketAddr>,
    /// The server the last connection reached.
    current: Option<SocketAddr>,
    failed: Vec<(SocketAddr, Instant)>,
}

impl State {
    /// The servers in the order to try them: the current one, the others, then those that
    /// failed recently (oldest failure first).
    fn order(&self) -> Vec<SocketAddr> {
        let recent = |s: &SocketAddr| {
            self.failed
                .iter()
                .any(|(f, at)| f == s && at.elapsed() < PASSED_OVER)
        };
        let mut order: Vec<SocketAddr> = self.current.into_iter().filter(|s| !recent(s)).collect();
        order.extend(
            self.servers
                .iter()
                .copied()
                .filter(|s| Some(*s) != self.current && !recent(s)),
        );
        let mut failed: Vec<_> = self
            .failed
            .iter()
            .filter(|(s, _)| self.servers.contains(s))
            .collect();
        failed.sort_by_key(|(_, at)| *at);
        order.extend(failed.into_iter().map(|(s, _)| *s));
        order.dedup();
        order
    }
}

pub struct Balancer {
    /// Where the node's components connect.
    pub local: SocketAddr,
    state: Mutex<State>,
}

impl Balancer {
    /// Listens on `local` (port 0 for any) and relays to `servers` until told of others.
    pub async fn start(local: SocketAddr, servers: Vec<SocketAddr>) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(local).await?;
        let balancer = Arc::new(Self {
            local: listener.local_addr()?,
            state: Mutex::new(State {
                servers,
                ..State::default()
            }),
        });
        tokio::spawn(balancer.clone().serve(listener));
        Ok(balancer)
    }

    /// `https://<local>`, the address the node's clients use.
    pub fn url(&self) -> String {
        format!("https://{}", self.local)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn servers(&self) -> Vec<SocketAddr> {
        self.lock().servers.clone()
    }

    /// Replaces the server list; an empty one is ignored (the last known servers are better
    /// than none).
    pub fn set_servers(&self, mut servers: Vec<SocketAddr>) {
        servers.sort();
        servers.dedup();
        if servers.is_empty() {
            return;
        }
        let mut state = self.lock();
        if state.servers != servers {
            tracing::info!(?servers, "apiservers");
            state.current = state.current.filter(|s| servers.contains(s));
            state.failed.retain(|(s, _)| servers.contains(s));
            state.servers = servers;
        }
    }

    async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let balancer = self.clone();
            tokio::spawn(async move { balancer.relay(conn).await });
        }
    }

    async fn relay(&self, mut conn: TcpStream) {
        let order = self.lock().order();
        for server in order {
            match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(server)).await {
                Ok(Ok(mut upstream)) => {
                    {
                        let mut state = self.lock();
                        if state.current != Some(server) {
                            tracing::info!(%server, "relaying to apiserver");
                        }
                        state.current = Some(server);
                        state.failed.retain(|(s, _)| *s != server);
                    }
                    let _ = conn.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                    return;
                }
                Ok(Err(e)) => tracing::debug!(%server, error = %e, "apiserver unreachable"),
                Err(_) => tracing::debug!(%server, "apiserver did not answer"),
            }
            let mut state = self.lock();
            state.failed.retain(|(s, _)| *s != server);
            state.failed.push((server, Instant::now()));
            if state.current == Some(server) {
                state.current = None;
            }
        }
        tracing::warn!("no apiserver reachable");
    }

    /// Keeps the server list equal to the `default/kubernetes` EndpointSlice, read through
    /// `client` (which may itself connect through this balancer), for ever. It is listed by
    /// name rather than read: a node may list EndpointSlices (its proxy does) but not get one.
    pub async fn follow_endpoints(self: Arc<Self>, client: kube::Client) {
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        let slices: kube::Api<EndpointSlice> = kube::Api::namespaced(client, "default");
        let by_name = kube::api::ListParams::default().fields("metadata.name=kubernetes");
        let mut warned = false;
        loop {
            match slices.list(&by_name).await {
                Ok(list) => {
                    warned = false;
                    if let Some(slice) = list.items.first() {
                        self.set_servers(servers_of(slice));
                    }
                }
                // Said once: a failing read keeps the last known servers, which may be all
                // there is while one is down.
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "reading the kubernetes EndpointSlice");
                }
                Err(e) => tracing::debug!(error = %e, "reading the kubernetes EndpointSlice"),
            }
            tokio::time::sleep(REFRESH).await;
        }
    }
}

/// Every ready address of the slice at its `https` port.
fn servers_of(slice: &k8s_openapi::api::discovery::v1::EndpointSlice) -> Vec<SocketAddr> {
    let Some(port) = slice
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref().is_none_or(|n| n == "https"))
        .and_then(|p| p.port)
    else {
        return Vec::new();
    };
    slice
        .endpoints
        .iter()
        .flatten()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|e| e.addresses.iter())
        .filter_map(|a| a.parse().ok())
        .map(|ip| SocketAddr::new(ip, port as u16))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering each connection with its name.
    async fn named(name: &'static str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let _ = conn.write_all(name.as_bytes()).await;
            }
        });
        (addr, task)
    }

    async fn ask(balancer: &Balancer) -> String {
        let mut conn = TcpStream::connect(balancer.local).await.unwrap();
        let mut got = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut got)).await;
        got
    }

    #[tokio::test]
    async fn connections_stay_on_one_server_and_move_when_it_dies() {
        let (a, a_task) = named("a").await;
        let (b, _b_task) = named("b").await;
        let balancer = Balancer::start("127.0.0.1:0".parse().unwrap(), vec![a])
            .await
            .unwrap();
        assert_eq!(ask(&balancer).await, "a");
        balancer.set_servers(vec![b, a]);
        // Sticky: the server that answered keeps the connections.
        assert_eq!(ask(&balancer).await, "a");
        assert_eq!(ask(&balancer).await, "a");
        a_task.abort();
        let _ = a_task.await;
        let moved = Instant::now();
        assert_eq!(ask(&balancer).await, "b");
        assert!(moved.elapsed() < Duration::from_secs(1));
        assert_eq!(ask(&balancer).await, "b");
        // An empty list leaves the known servers.
        balancer.set_servers(vec![]);
        assert_eq!(balancer.servers().len(), 2);
    }

    #[test]
    fn recently_failed_servers_go_last() {
        let [a, b, c]: [SocketAddr; 3] =
            ["10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.3:6443"].map(|s| s.parse().unwrap());
        let state = State {
            servers: vec![a, b, c],
            current: Some(b),
            failed: vec![(a, Instant::now())],
        };
        assert_eq!(state.order(), [b, c, a]);
    }
}
