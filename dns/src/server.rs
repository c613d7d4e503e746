//! The DNS wire protocol around [`crate::resolve`] and [`crate::forward`]: a message in, a
//! message out, over UDP (truncated with TC to what the client can take) and TCP (RFC 1035
//! §4.2.2 length-prefixed, several queries per connection).
//!
//! Bad input gets an answer and never stops the server: a message that does not parse is
//! FORMERR (its ID echoed when it has one), an opcode other than QUERY, a class other than IN
//! and ANY/AXFR/IXFR are NOTIMP, a message with other than one question is FORMERR. A
//! datagram too short for a header, or a response, is dropped.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tracing::debug;

use crate::forward::{Forwarder, Source};
use crate::metrics::{Metrics, Protocol};
use crate::records::Records;
use crate::resolve::{Alias, Resolution, Zone};

/// The UDP payload a client without EDNS can take (RFC 1035).
const CLASSIC_UDP: usize = 512;
/// The largest UDP payload offered and honoured (the DNS flag day 2020 value, which avoids IP
/// fragmentation).
const EDNS_UDP: u16 = 1232;
/// How long an idle TCP connection stays open.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Everything a query is answered from.
pub struct Handler {
    pub zone: Zone,
    pub records: Arc<RwLock<Records>>,
    pub forwarder: Forwarder,
    pub metrics: Arc<Metrics>,
}

impl Handler {
    /// The response to one message, encoded; `None` when it gets none (not a query).
    pub async fn handle(&self, request: &[u8], protocol: Protocol) -> Option<Vec<u8>> {
        let started = Instant::now();
        let (response, limit) = self.respond(request, protocol).await?;
        let mut bytes = encode(&response)?;
        if bytes.len() > limit {
            let mut truncated = response.truncate();
            truncated.metadata.truncation = true;
            bytes = encode(&truncated)?;
        }
        let qtype = response.queries.first().map(|q| q.query_type());
        self.metrics.observe(
            protocol,
            qtype,
            response.metadata.response_code,
            started.elapsed(),
        );
        Some(bytes)
    }

    /// The response, and the size it may take.
    async fn respond(&self, request: &[u8], protocol: Protocol) -> Option<(Message, usize)> {
        let [id_hi, id_lo, flags, ..] = *request else {
            return None;
        };
        if request.len() < 12 || flags & 0x80 != 0 {
            return None;
        }
        let id = u16::from_be_bytes([id_hi, id_lo]);
        let op_code = OpCode::from_u8((flags >> 3) & 0x0f);
        let Ok(message) = Message::from_vec(request) else {
            let limit = CLASSIC_UDP;
            return Some((
                Message::error_msg(id, op_code, ResponseCode::FormErr),
                limit,
            ));
        };
        let limit = match (protocol, &message.edns) {
            (Protocol::Tcp, _) => usize::from(u16::MAX),
            (Protocol::Udp, Some(edns)) => usize::from(edns.max_payload().clamp(512, EDNS_UDP)),
            (Protocol::Udp, None) => CLASSIC_UDP,
        };
        let mut response = Message::response(id, message.metadata.op_code);
        response.metadata.recursion_desired = message.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.add_queries(message.queries.iter().cloned());
        if message.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_UDP);
            response.set_edns(edns);
        }
        let code = match &message.queries[..] {
            _ if message.metadata.op_code != OpCode::Query => ResponseCode::NotImp,
            [query] if query.query_class() != DNSClass::IN => ResponseCode::NotImp,
            [query]
                if matches!(
                    query.query_type(),
                    RecordType::ANY | RecordType::AXFR | RecordType::IXFR
                ) =>
            {
                ResponseCode::NotImp
            }
            [query] => {
                self.answer(query, message.metadata.recursion_desired, &mut response)
                    .await;
                response.metadata.response_code
            }
            _ => ResponseCode::FormErr,
        };
        response.metadata.response_code = code;
        Some((response, limit))
    }

    /// Fills `response` with the answer to `query`.
    async fn answer(&self, query: &Query, recursion: bool, response: &mut Message) {
        let resolution = {
            let records = self.records.read().expect("dns records");
            self.zone
                .resolve(&records, query.name(), query.query_type(), records.serial())
        };
        match resolution {
            Resolution::Answer(answer) => {
                response.metadata.authoritative = true;
                response.metadata.response_code = answer.code;
                response.add_answers(answer.answers);
                response.add_authorities(answer.authority);
                response.add_additionals(answer.additionals);
            }
            Resolution::Alias(alias) => {
                let Alias { cname, target } = *alias;
                response.metadata.authoritative = true;
                response.add_answer(cname);
                if matches!(query.query_type(), RecordType::A | RecordType::AAAA) {
                    let mut chased = Query::query(target, query.query_type());
                    chased.set_query_class(query.query_class());
                    self.chase(&chased, recursion, response).await;
                }
            }
            Resolution::Forward => match self.forwarder.resolve(query, recursion).await {
                Ok((answer, source)) => {
                    self.metrics.forwarded(source == Source::Cache);
                    response.metadata.response_code = answer.metadata.response_code;
                    response.add_answers(answer.answers);
                    response.add_authorities(answer.authorities);
                    response.add_additionals(answer.additionals);
                }
                Err(e) => {
                    debug!(name = %query.name(), error = %e, "forwarding");
                    response.metadata.response_code = ResponseCode::ServFail;
                }
            },
        }
    }

    /// Adds the addresses of an ExternalName's target: from the zone when it is a cluster name,
    /// else from upstream. A target that does not resolve leaves the CNAME alone, as a
    /// resolver's answer would.
    async fn chase(&self, query: &Query, recursion: bool, response: &mut Message) {
        let local = {
            let records = self.records.read().expect("dns records");
            self.zone
                .resolve(&records, query.name(), query.query_type(), 0)
        };
        match local {
            Resolution::Answer(answer) => {
                response.add_answers(answer.answers);
            }
            // One CNAME to another ExternalName is not followed further (no loops).
            Resolution::Alias(alias) => {
                let cname = alias.cname;
                response.add_answer(cname);
            }
            Resolution::Forward => {
                if let Ok((answer, source)) = self.forwarder.resolve(query, recursion).await {
                    self.metrics.forwarded(source == Source::Cache);
                    response.add_answers(answer.answers);
                }
            }
        };
    }
}

fn encode(message: &Message) -> Option<Vec<u8>> {
    message
        .to_vec()
        .inspect_err(|e| debug!(error = %e, "encoding a response"))
        .ok()
}

/// Answers datagrams on `socket` until `stop`.
pub async fn serve_udp(socket: UdpSocket, handler: Arc<Handler>, mut stop: watch::Receiver<bool>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, peer) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(e) => {
                    debug!(error = %e, "udp receive");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let request = buf[..n].to_vec();
        let (socket, handler) = (socket.clone(), handler.clone());
        // Each query in its own task: a forwarded one waits for upstream without holding up
        // the cluster names behind it.
        tokio::spawn(async move {
            if let Some(response) = handler.handle(&request, Protocol::Udp).await
                && let Err(e) = socket.send_to(&response, peer).await
            {
                debug!(%peer, error = %e, "udp send");
            }
        });
    }
}

/// Answers connections on `listener` until `stop`.
pub async fn serve_tcp(
    listener: TcpListener,
    handler: Arc<Handler>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!(error = %e, "tcp accept");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &handler).await {
                debug!(%peer, error = %e, "tcp connection");
            }
        });
    }
}

/// Queries of one TCP connection, answered in order, until the client closes it, sends
/// something unanswerable or stays idle for [`TCP_IDLE`].
async fn connection(mut stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => len,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        let mut request = vec![0u8; len.into()];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut request))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
        let Some(response) = handler.handle(&request, Protocol::Tcp).await else {
            return Ok(());
        };
        // A response is truncated to fit the length prefix (`handle`'s TCP limit).
        let Ok(len) = u16::try_from(response.len()) else {
            return Ok(());
        };
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(&response).await?;
    }
}

/// Binds the UDP and TCP sockets of `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    Ok((UdpSocket::bind(addr).await?, TcpListener::bind(addr).await?))
}

#[cfg(test)]
mod tests;
