//! Names outside the cluster: asked of the node's upstream resolvers (UDP, then TCP when the
//! answer is truncated), one after the other until one answers, and cached for at most
//! [`MAX_TTL`] as kubeadm's Corefile caches (`cache 30`), negative answers too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The longest an upstream answer is kept.
pub const MAX_TTL: Duration = Duration::from_secs(30);
/// How long one upstream may take to answer.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The most answers kept; when full, expired ones go first, then arbitrary ones.
const CAPACITY: usize = 10_000;

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no upstream resolver is configured")]
    NoUpstream,
    #[error("encoding the query: {0}")]
    Encode(#[from] hickory_proto::ProtoError),
    #[error("no upstream answered: {0}")]
    Unanswered(String),
}

type Key = (Name, RecordType, DNSClass);

/// The upstream resolvers and the cache of their answers.
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Mutex<HashMap<Key, (Instant, Message)>>,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Upstream,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self {
            upstreams,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// The answer to `query`, from the cache or an upstream; its ID is the caller's to set.
    pub async fn resolve(
        &self,
        query: &Query,
        recursion: bool,
    ) -> Result<(Message, Source), Error> {
        let key = (
            query.name().to_lowercase(),
            query.query_type(),
            query.query_class(),
        );
        if let Some(hit) = self.cached(&key) {
            return Ok((hit, Source::Cache));
        }
        let answer = self.ask(query, recursion).await?;
        self.store(key, &answer);
        Ok((answer, Source::Upstream))
    }

    fn cached(&self, key: &Key) -> Option<Message> {
        let cache = self.cache.lock().expect("dns cache");
        let (expires, message) = cache.get(key)?;
        let left = expires.checked_duration_since(Instant::now())?;
        let mut message = message.clone();
        // The TTLs count down while an answer is cached, as a resolver's do.
        let left = u32::try_from(left.as_secs()).unwrap_or(u32::MAX);
        for r in message
            .answers
            .iter_mut()
            .chain(message.authorities.iter_mut())
            .chain(message.additionals.iter_mut())
        {
            r.ttl = r.ttl.min(left);
        }
        Some(message)
    }

    fn store(&self, key: Key, answer: &Message) {
        let code = answer.metadata.response_code;
        if !matches!(code, ResponseCode::NoError | ResponseCode::NXDomain)
            || answer.metadata.truncation
        {
            return;
        }
        let ttl = answer
            .answers
            .iter()
            .chain(&answer.authorities)
            .map(|r| r.ttl)
            .min()
            .map_or(MAX_TTL, |t| Duration::from_secs(t.into()).min(MAX_TTL));
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = self.cache.lock().expect("dns cache");
        if cache.len() >= CAPACITY {
            cache.retain(|_, (expires, _)| *expires > now);
        }
        if cache.len() >= CAPACITY
            && let Some(victim) = cache.keys().next().cloned()
        {
            cache.remove(&victim);
        }
        cache.insert(key, (now + ttl, answer.clone()));
    }

    /// Asks each upstream in turn.
    async fn ask(&self, query: &Query, recursion: bool) -> Result<Message, Error> {
        if self.upstreams.is_empty() {
            return Err(Error::NoUpstream);
        }
        let mut request = Message::query();
        request.metadata.recursion_desired = recursion;
        request.add_query(query.clone());
        let bytes = request.to_vec()?;
        let mut failures = Vec::new();
        for upstream in &self.upstreams {
            match exchange(*upstream, &bytes, request.metadata.id).await {
                Ok(answer) => return Ok(answer),
                Err(e) => failures.push(format!("{upstream}: {e}")),
            }
        }
        Err(Error::Unanswered(failures.join("; ")))
    }
}

/// One query to one upstream: over UDP, and again over TCP when the answer is truncated.
async fn exchange(upstream: SocketAddr, bytes: &[u8], id: u16) -> std::io::Result<Message> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; 65_535];
    let answer = tokio::time::timeout(TIMEOUT, async {
        loop {
            let n = socket.recv(&mut buf).await?;
            // A datagram for another query (or a spoof) is not the answer.
            match Message::from_vec(&buf[..n]) {
                Ok(m) if m.metadata.id == id => return Ok::<_, std::io::Error>(m),
                _ => continue,
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    tokio::time::timeout(TIMEOUT, exchange_tcp(upstream, bytes))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out over TCP"))?
}

async fn exchange_tcp(upstream: SocketAddr, bytes: &[u8]) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    let n = stream.read_u16().await?;
    let mut buf = vec![0u8; n.into()];
    stream.read_exact(&mut buf).await?;
    Message::from_vec(&buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The nameservers of a `resolv.conf`, on port 53.
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: std::net::IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_of_a_resolv_conf() {
        let conf = "# generated\nsearch lab.example\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n\
                    nameserver not-an-ip\noptions ndots:2\n";
        assert_eq!(
            nameservers(conf),
            vec![
                "10.0.0.2:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
