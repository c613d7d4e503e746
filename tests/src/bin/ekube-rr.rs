//! `ekube-rr`: the small load tool of the benchmarks — a server that answers with its name and
//! a closed-loop client that measures connections per second, request latency and throughput.
//!
//! `ekube-rr serve --listen ADDR [--name NAME] [--udp]` reads one request line per connection
//! and decides by its first word: `KEEP` answers `NAME\n` to this and every further line on the
//! connection (request/response), `STREAM` sends zeros until the client goes away (bulk
//! throughput), `GET …` answers a minimal HTTP/1.0 response whose body is `NAME\n` (so `curl`
//! works), anything else gets `NAME\n` and the server closes. With `--udp` it also answers every
//! datagram on the same address with `NAME`.
//!
//! `ekube-rr client --target ADDR[,ADDR…] --concurrency N --duration S [--mode crr|rr|stream]
//! [--udp]` runs N closed-loop clients (one OS thread each, blocking sockets, no async runtime
//! between the clock and the socket) and prints one JSON object
//! ([`ekube_tests::bench::RrReport`]):
//! `crr` = connect, small request, reply, server closes, close; `rr` = request/response on one
//! kept connection; `stream` = bulk TCP received by the clients. Over UDP, `crr` uses a new
//! socket per request and `rr` one socket. With several targets each connection (UDP: each
//! socket) goes to one of them at random, as a Service balancing over them would send it; the
//! report has each server's own latencies beside the mixture's. Failures are counted, never
//! fatal.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use ekube_tests::bench::{Latency, RrReport};

/// Longest request line the server reads.
const MAX_LINE: usize = 512;
/// Size of each write in stream mode and of the client's receive buffer.
const CHUNK: usize = 256 * 1024;

#[derive(Parser)]
#[command(
    name = "ekube-rr",
    about = "Request/response load tool: a named server and a closed-loop client"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Answer connections (and with --udp datagrams) with a name.
    Serve(ServeArgs),
    /// Load a server and print a JSON report.
    Client(ClientArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on, e.g. 0.0.0.0:7000.
    #[arg(long)]
    listen: SocketAddr,
    /// The answer (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// Also answer UDP datagrams on the same address.
    #[arg(long)]
    udp: bool,
    /// Accepting threads (default: twice the CPUs, at least 4).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Connect, request, reply, close: one connection per request.
    Crr,
    /// Request/response on one connection per client.
    Rr,
    /// Bulk transfer from the server; reports Gbit/s.
    Stream,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Crr => "crr",
            Mode::Rr => "rr",
            Mode::Stream => "stream",
        }
    }
}

#[derive(clap::Args, Clone)]
struct ClientArgs {
    /// Server address; several (comma-separated): each connection picks one at random.
    #[arg(long, required = true, value_delimiter = ',')]
    target: Vec<SocketAddr>,
    /// Concurrent closed-loop clients.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    #[arg(long, value_enum, default_value_t = Mode::Crr)]
    mode: Mode,
    /// UDP instead of TCP (crr and rr only).
    #[arg(long)]
    udp: bool,
    /// Seconds before a connect, read or write counts as failed.
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Serve(args) => serve(args),
        Cmd::Client(args) => {
            let report = client(&args)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server

fn serve(args: ServeArgs) -> Result<()> {
    let name = match args.name {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    };
    let reply: Arc<[u8]> = format!("{name}\n").into_bytes().into();
    let listener =
        TcpListener::bind(args.listen).with_context(|| format!("binding tcp {}", args.listen))?;
    if args.udp {
        let socket =
            UdpSocket::bind(args.listen).with_context(|| format!("binding udp {}", args.listen))?;
        for _ in 0..2 {
            let socket = socket.try_clone()?;
            let name = name.clone().into_bytes();
            std::thread::spawn(move || udp_loop(&socket, &name));
        }
    }
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = args.threads.unwrap_or((cpus * 2).max(4));
    let listener = Arc::new(listener);
    let mut workers = Vec::new();
    for _ in 0..threads {
        let (listener, reply) = (listener.clone(), reply.clone());
        workers.push(std::thread::spawn(move || accept_loop(&listener, &reply)));
    }
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

fn udp_loop(socket: &UdpSocket, name: &[u8]) {
    let mut buf = [0u8; 2048];
    loop {
        if let Ok((_, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(name, from);
        }
    }
}

/// Accepts and answers one-shot connections inline (no thread per connection on the crr
/// path); kept and streaming connections move to a thread of their own.
fn accept_loop(listener: &TcpListener, reply: &Arc<[u8]>) {
    loop {
        let Ok((stream, _)) = listener.accept() else {
            // EMFILE and friends: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut conn = LineConn::new(stream);
        let first = match conn.read_line() {
            Ok(Some(line)) => line,
            _ => continue,
        };
        if first.starts_with(b"KEEP") {
            let reply = reply.clone();
            std::thread::spawn(move || keep_loop(conn, &reply));
        } else if first.starts_with(b"STREAM") {
            std::thread::spawn(move || stream_out(conn.stream));
        } else if first.starts_with(b"GET ") {
            answer_http(conn, reply);
        } else {
            let _ = conn.stream.write_all(reply);
            // Dropping closes: the server ends first, so TIME_WAIT stays on this side.
        }
    }
}

fn keep_loop(mut conn: LineConn, reply: &[u8]) {
    let _ = conn.stream.set_read_timeout(None);
    if conn.stream.write_all(reply).is_err() {
        return;
    }
    while let Ok(Some(_)) = conn.read_line() {
        if conn.stream.write_all(reply).is_err() {
            return;
        }
    }
}

fn stream_out(mut stream: TcpStream) {
    let zeros = vec![0u8; CHUNK];
    while stream.write_all(&zeros).is_ok() {}
}

fn answer_http(mut conn: LineConn, body: &[u8]) {
    // Skip the headers up to the blank line.
    while let Ok(Some(line)) = conn.read_line() {
        if line.iter().all(|b| *b == b'\r') {
            break;
        }
    }
    let head = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.stream.write_all(&[head.as_bytes(), body].concat());
}

/// A connection read line by line without losing what follows a line in the same read.
struct LineConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` already returned as lines.
    consumed: usize,
}

impl LineConn {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(MAX_LINE),
            consumed: 0,
        }
    }

    /// The next line without its `\n`; `None` at end of stream.
    fn read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                self.consumed = i + 1;
                return Ok(Some(self.buf[..i].to_vec()));
            }
            if self.buf.len() >= MAX_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request line too long",
                ));
            }
            let mut chunk = [0u8; MAX_LINE];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// What one client thread measured.
#[derive(Default)]
struct Tally {
    connections: u64,
    errors: u64,
    bytes: u64,
    /// Per server name (the reply): the latency of each measured request it answered, in
    /// nanoseconds (all of them together are the run's requests).
    names: Vec<(Vec<u8>, Vec<u64>)>,
}

impl Tally {
    /// A measured request answered by `reply` after `latency`.
    fn answered(&mut self, reply: &[u8], latency: Duration) {
        let latency = nanos(latency);
        let name = reply.strip_suffix(b"\n").unwrap_or(reply);
        match self.names.iter_mut().find(|(n, _)| n == name) {
            Some((_, l)) => l.push(latency),
            None => self.names.push((name.to_vec(), vec![latency])),
        }
    }

    fn error(&mut self, measuring: bool) {
        if measuring {
            self.errors += 1;
        }
        // A refused or unreachable target would otherwise spin a core.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The servers one client thread connects to, each connection to one of them at random.
struct Targets {
    all: Vec<SocketAddr>,
    /// xorshift64 state (never 0).
    state: u64,
}

impl Targets {
    fn new(all: Vec<SocketAddr>, seed: u64) -> Self {
        Self {
            all,
            state: seed | 1,
        }
    }

    /// The server of the next connection.
    fn pick(&mut self) -> SocketAddr {
        if self.all.len() == 1 {
            return self.all[0];
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.all[(self.state % self.all.len() as u64) as usize]
    }
}

/// A seed that differs between threads and runs.
fn thread_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::thread::current().id())
}

/// The window in which requests count.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn counts(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

fn client(args: &ClientArgs) -> Result<RrReport> {
    // Written so that NaN fails too.
    let valid = args.concurrency > 0
        && args.duration.is_finite()
        && args.duration > 0.0
        && args.warmup.is_finite()
        && args.warmup >= 0.0
        && args.timeout.is_finite()
        && args.timeout > 0.0;
    if !valid {
        bail!("--concurrency, --duration and --timeout must be positive, --warmup not negative");
    }
    if args.udp && args.mode == Mode::Stream {
        bail!("--mode stream is TCP only");
    }
    let begin = Instant::now() + Duration::from_millis(20);
    let window = Window {
        start: begin + Duration::from_secs_f64(args.warmup),
        end: begin + Duration::from_secs_f64(args.warmup + args.duration),
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    let threads: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let args = args.clone();
            std::thread::spawn(move || {
                while Instant::now() < begin {
                    std::thread::sleep(begin - Instant::now());
                }
                let target = Targets::new(args.target, thread_seed());
                match (args.udp, args.mode) {
                    (false, Mode::Crr) => tcp_crr(target, timeout, window),
                    (false, Mode::Rr) => tcp_rr(target, timeout, window),
                    (false, Mode::Stream) => tcp_stream(target, timeout, window),
                    (true, mode) => udp_rr(target, timeout, window, mode == Mode::Crr),
                }
            })
        })
        .collect();
    let mut all = Tally::default();
    let mut names: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for t in threads {
        let t = t
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        all.connections += t.connections;
        all.errors += t.errors;
        all.bytes += t.bytes;
        for (n, l) in t.names {
            names
                .entry(String::from_utf8_lossy(&n).into_owned())
                .or_default()
                .extend(l);
        }
    }
    let secs = args.duration;
    let mut latencies: Vec<u64> = names.values().flatten().copied().collect();
    let requests = latencies.len() as u64;
    Ok(RrReport {
        mode: args.mode.name().into(),
        protocol: if args.udp { "udp" } else { "tcp" }.into(),
        target: args
            .target
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(","),
        concurrency: args.concurrency,
        duration_s: secs,
        requests,
        errors: all.errors,
        connections_per_s: all.connections as f64 / secs,
        requests_per_s: requests as f64 / secs,
        latency_us: Latency::of_nanos(&mut latencies),
        gbit_per_s: (args.mode == Mode::Stream).then(|| all.bytes as f64 * 8.0 / secs / 1e9),
        names: names
            .iter()
            .map(|(n, l)| (n.clone(), l.len() as u64))
            .collect(),
        latency_by_name_us: names
            .into_iter()
            .filter_map(|(n, mut l)| Some((n, Latency::of_nanos(&mut l)?)))
            .collect(),
    })
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Reads until the peer closes (or `buf` is full); the bytes read.
fn read_to_close(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Ok(len);
        }
        match stream.read(&mut buf[len..])? {
            0 => return Ok(len),
            n => len += n,
        }
    }
}

fn tcp_crr(mut target: Targets, timeout: Duration, window: Window) -> Tally {
    let mut t = Tally::default();
    let mut buf = [0u8; MAX_LINE];
    loop {
        let started = Instant::now();
        if started >= window.end {
            return t;
        }
        let measuring = window.counts(started);
        let attempt = (|| -> io::Result<usize> {
            let mut s = TcpStream::connect_timeout(&target.pick(), timeout)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(timeout))?;
            s.write_all(b"CRR\n")?;
            read_to_close(&mut s, &mut buf)
        })();
        match attempt {
            Ok(n) if n > 0 => {
                if measuring {
                    t.answered(&buf[..n], started.elapsed());
                    t.connections += 1;
                }
            }
            _ => t.error(measuring),
        }
    }
}

fn tcp_rr(mut target: Targets, timeout: Duration, window: Window) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<LineConn> = None;
    loop {
        if Instant::now() >= window.end {
            if let Some(c) = conn {
                let _ = c.stream.shutdown(Shutdown::Both);
            }
            return t;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let opened = (|| -> io::Result<LineConn> {
                    let s = TcpStream::connect_timeout(&target.pick(), timeout)?;
                    s.set_nodelay(true)?;
                    s.set_read_timeout(Some(timeout))?;
                    s.set_write_timeout(Some(timeout))?;
                    Ok(LineConn::new(s))
                })();
                match opened {
                    Ok(c) => {
                        if window.counts(Instant::now()) {
                            t.connections += 1;
                        }
                        conn.insert(c)
                    }
                    Err(_) => {
                        t.error(window.counts(Instant::now()));
                        continue;
                    }
                }
            }
        };
        let started = Instant::now();
        let measuring = window.counts(started);
        let answer = c.stream.write_all(b"KEEP\n").and_then(|()| c.read_line());
        match answer {
            Ok(Some(line)) => {
                if measuring {
                    t.answered(&line, started.elapsed());
                }
            }
            _ => {
                conn = None;
                t.error(measuring);
            }
        }
    }
}

fn tcp_stream(mut target: Targets, timeout: Duration, window: Window) -> Tally {
    let mut t = Tally::default();
    let mut buf = vec![0u8; CHUNK];
    while Instant::now() < window.end {
        let opened = (|| -> io::Result<TcpStream> {
            let mut s = TcpStream::connect_timeout(&target.pick(), timeout)?;
            s.set_read_timeout(Some(timeout))?;
            s.write_all(b"STREAM\n")?;
            Ok(s)
        })();
        let Ok(mut s) = opened else {
            t.error(window.counts(Instant::now()));
            continue;
        };
        t.connections += 1;
        loop {
            match s.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let now = Instant::now();
                    if window.counts(now) {
                        t.bytes += n as u64;
                    }
                    if now >= window.end {
                        let _ = s.shutdown(Shutdown::Both);
                        return t;
                    }
                }
                _ => {
                    t.error(window.counts(Instant::now()));
                    break;
                }
            }
        }
    }
    t
}

fn udp_rr(
    mut target: Targets,
    timeout: Duration,
    window: Window,
    socket_per_request: bool,
) -> Tally {
    let mut t = Tally::default();
    let mut buf = [0u8; 2048];
    // The socket and the server it talks to.
    let mut socket: Option<(UdpSocket, SocketAddr)> = None;
    loop {
        let started = Instant::now();
        if started >= window.end {
            return t;
        }
        let measuring = window.counts(started);
        let attempt = (|| -> io::Result<usize> {
            let (s, to) = match socket.take() {
                Some(kept) if !socket_per_request => kept,
                _ => {
                    let s = UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))?;
                    s.set_read_timeout(Some(timeout))?;
                    (s, target.pick())
                }
            };
            s.send_to(b"RR\n", to)?;
            let (n, _) = s.recv_from(&mut buf)?;
            socket = Some((s, to));
            Ok(n)
        })();
        match attempt {
            Ok(n) => {
                if measuring {
                    t.answered(&buf[..n], started.elapsed());
                    if socket_per_request {
                        t.connections += 1;
                    }
                }
            }
            Err(_) => t.error(measuring),
        }
    }
}
