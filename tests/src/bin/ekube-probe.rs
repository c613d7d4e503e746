//! `ekube-probe`: the servers and clients the service-datapath tests (`proxy`,
//! `proxy_iptables`, `nodeport`) run inside their network namespaces. Each prints lines a test
//! parses:
//!
//! - `serve [--tcp-port P] [--udp-port P] NAME=IP[:PORT]…`: for each `NAME=IP`, a TCP server
//!   on `IP:--tcp-port` (and a UDP one on `IP:--udp-port` when given); `NAME=IP:PORT` is TCP
//!   only, on `PORT`. A TCP connection gets `NAME <client ip>\n`, then every line it sends back;
//!   a datagram gets `NAME <client ip>`. Prints `ready` once everything listens and exits when
//!   its stdin closes.
//! - `client tcp|udp IP PORT COUNT [--source IP] [--source-port P] [--timeout-ms N]`: one
//!   line per attempt, `ok NAME SEEN PEER` (the server's name, the client address it saw, the
//!   peer the client saw: `getpeername` over TCP, the reply's source over UDP) or `err ERRNO`.
//!   UDP sends every attempt from one socket, bound to `--source-port` when given, so runs
//!   with the same port continue one flow; TCP binds each connection to `--source-port`
//!   (with `SO_REUSEADDR`, so a port whose last connection is in TIME_WAIT can open one to
//!   another destination; a second connection to the same target from it fails while the
//!   first is in TIME_WAIT). With `--reset` each TCP connection ends with an RST instead of a
//!   FIN (`SO_LINGER` 0), leaving no TIME_WAIT.
//! - `client http IP PORT`: `GET /` once; `STATUS BODY`, or `0` without an answer.
//! - `client hold IP PORT COUNT`: opens COUNT connections and prints their servers' names on
//!   one line; after a line on stdin, sends `ping` on each and prints `ok NAME` when it comes
//!   back, else `err NAME`.
//! - `client stream IP PORT SECONDS`: one connection: `ok NAME SEEN PEER`, then a `ping` round
//!   trip every 20 ms for SECONDS, then `echo SENT BAD`.
//! - `syn-flood IP PORT COUNT`: COUNT TCP SYNs from a raw socket, each from its own source in
//!   10.99.0.0/16 (addresses nothing holds), then `sent COUNT`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ekube_tests::bench;

#[derive(Parser)]
#[command(
    name = "ekube-probe",
    about = "Servers and clients of the datapath tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Named TCP (and UDP) servers.
    Serve {
        #[arg(long, default_value_t = 8080)]
        tcp_port: u16,
        #[arg(long)]
        udp_port: Option<u16>,
        /// `NAME=IP` or `NAME=IP:PORT`.
        #[arg(required = true)]
        servers: Vec<String>,
    },
    /// A client of those servers.
    Client {
        /// tcp, udp, http, hold or stream.
        kind: String,
        ip: Ipv4Addr,
        port: u16,
        /// Attempts (tcp, udp), connections (hold) or seconds (stream).
        #[arg(default_value_t = 1)]
        count: u32,
        /// Source address to bind.
        #[arg(long)]
        source: Option<Ipv4Addr>,
        /// Source port to bind.
        #[arg(long, default_value_t = 0)]
        source_port: u16,
        /// End each TCP connection with an RST (tcp).
        #[arg(long)]
        reset: bool,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// SYNs from spoofed sources.
    SynFlood { ip: Ipv4Addr, port: u16, count: u32 },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Serve {
            tcp_port,
            udp_port,
            servers,
        } => serve(tcp_port, udp_port, &servers),
        Cmd::Client {
            kind,
            ip,
            port,
            count,
            source,
            source_port,
            reset,
            timeout_ms,
        } => {
            let target = SocketAddr::V4(SocketAddrV4::new(ip, port));
            let timeout = Duration::from_millis(timeout_ms);
            let bind = SocketAddrV4::new(source.unwrap_or(Ipv4Addr::UNSPECIFIED), source_port);
            match kind.as_str() {
                "tcp" => tcp_client(target, count, bind, reset, timeout),
                "udp" => udp_client(target, count, bind, timeout),
                "http" => http_client(target, timeout),
                "hold" => hold_client(target, count, timeout),
                "stream" => stream_client(target, count, timeout),
                other => bail!("unknown client kind {other:?}"),
            }
        }
        Cmd::SynFlood { ip, port, count } => syn_flood(ip, port, count),
    }
}

fn serve(tcp_port: u16, udp_port: Option<u16>, servers: &[String]) -> Result<()> {
    for spec in servers {
        let (name, addr) = spec
            .split_once('=')
            .with_context(|| format!("server {spec:?} is not NAME=IP[:PORT]"))?;
        let (ip, port, udp) = match addr.split_once(':') {
            Some((ip, port)) => (ip, port.parse().context("port")?, None),
            None => (addr, tcp_port, udp_port),
        };
        let ip: Ipv4Addr = ip.parse().with_context(|| format!("address {ip:?}"))?;
        let listener =
            TcpListener::bind((ip, port)).with_context(|| format!("listening on {ip}:{port}"))?;
        let name = name.to_owned();
        let tcp_name = name.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let name = tcp_name.clone();
                thread::spawn(move || answer(conn, &name));
            }
        });
        if let Some(udp_port) = udp {
            let socket = UdpSocket::bind((ip, udp_port))
                .with_context(|| format!("binding UDP {ip}:{udp_port}"))?;
            thread::spawn(move || {
                let mut buf = [0; 512];
                while let Ok((_, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(format!("{name} {}", from.ip()).as_bytes(), from);
                }
            });
        }
    }
    println!("ready");
    io::stdout().flush()?;
    // Until the test closes our stdin.
    io::copy(&mut io::stdin(), &mut io::sink())?;
    Ok(())
}

/// One TCP connection of a server: its name and the client's address, then an echo.
fn answer(mut conn: TcpStream, name: &str) {
    let peer = conn
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    if conn
        .write_all(format!("{name} {peer}\n").as_bytes())
        .is_err()
    {
        return;
    }
    let mut buf = [0; 4096];
    while let Ok(n @ 1..) = conn.read(&mut buf) {
        if conn.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// The errno of a failed call, -1 when it has none (a timeout reads as EAGAIN).
fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn out(line: &str) -> Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

/// The address of a client that binds nothing.
const UNBOUND: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);

/// A connection to `target` from `source` (not bound when [`UNBOUND`]) and the server's
/// greeting with the peer address the client sees: `NAME SEEN PEER`.
fn connect(
    target: SocketAddr,
    source: SocketAddrV4,
    timeout: Duration,
) -> io::Result<(BufReader<TcpStream>, String)> {
    let stream = if source == UNBOUND {
        TcpStream::connect_timeout(&target, timeout)?
    } else {
        bound_connect(source, target, timeout)?
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let peer = stream.peer_addr()?;
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    if reader.read_line(&mut greeting)? == 0 {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
    }
    Ok((reader, format!("{} {peer}", greeting.trim())))
}

/// A TCP connect from `source` (std binds only listeners).
fn bound_connect(
    source: SocketAddrV4,
    target: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    // SAFETY: socket(2) returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if source.port() != 0 {
        set_socket_option(fd.as_raw_fd(), libc::SO_REUSEADDR, &(1 as libc::c_int))?;
    }
    let addr = bench::sockaddr_in(source);
    // SAFETY: addr is a valid sockaddr_in of the given length.
    let bound = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if bound != 0 {
        return Err(io::Error::last_os_error());
    }
    let stream = TcpStream::from(fd);
    stream.set_write_timeout(Some(timeout))?;
    let SocketAddr::V4(target) = target else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    let addr = bench::sockaddr_in(target);
    // SAFETY: as above; a blocking connect, bounded by the send timeout set above (Linux
    // applies SO_SNDTIMEO to connect), not only by the kernel's SYN retries.
    let connected = unsafe {
        libc::connect(
            stream.as_raw_fd(),
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if connected != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stream)
}

fn tcp_client(
    target: SocketAddr,
    count: u32,
    source: SocketAddrV4,
    reset: bool,
    timeout: Duration,
) -> Result<()> {
    for _ in 0..count {
        match connect(target, source, timeout) {
            Ok((reader, line)) => {
                if reset {
                    abort_on_close(reader.get_ref())?;
                }
                out(&format!("ok {line}"))?;
            }
            Err(e) => out(&format!("err {}", errno(&e)))?,
        }
    }
    Ok(())
}

/// Makes closing `stream` send an RST instead of a FIN (`SO_LINGER` with a zero timeout).
fn abort_on_close(stream: &TcpStream) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    set_socket_option(stream.as_raw_fd(), libc::SO_LINGER, &linger)
}

/// Sets the `SOL_SOCKET` option `name` of `fd` to `value` (the C type the option takes).
fn set_socket_option<T>(fd: std::os::fd::RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the given length; the kernel checks `fd` and the
    // option's length.
    let set = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn udp_client(target: SocketAddr, count: u32, bind: SocketAddrV4, timeout: Duration) -> Result<()> {
    let socket = UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(timeout))?;
    let mut buf = [0; 512];
    for _ in 0..count {
        let answer = socket
            .send_to(b"who", target)
            .and_then(|_| socket.recv_from(&mut buf));
        match answer {
            Ok((n, from)) => out(&format!(
                "ok {} {from}",
                String::from_utf8_lossy(&buf[..n]).trim()
            ))?,
            Err(e) => out(&format!("err {}", errno(&e)))?,
        }
    }
    Ok(())
}

fn http_client(target: SocketAddr, timeout: Duration) -> Result<()> {
    let answer = (|| -> io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&target, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        write!(
            stream,
            "GET / HTTP/1.0\r\nHost: {target}\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    })();
    let Ok(text) = answer else {
        return out("0");
    };
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("0");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    out(&format!("{status} {}", body.trim()))
}

fn hold_client(target: SocketAddr, count: u32, timeout: Duration) -> Result<()> {
    let mut held = Vec::new();
    for _ in 0..count {
        let (reader, line) =
            connect(target, UNBOUND, timeout).context("opening a held connection")?;
        let name = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        held.push((reader, name));
    }
    let names: Vec<&str> = held.iter().map(|(_, n)| n.as_str()).collect();
    out(&names.join(" "))?;
    let mut go = String::new();
    io::stdin().read_line(&mut go)?;
    for (mut reader, name) in held {
        let verdict = if ping(&mut reader) { "ok" } else { "err" };
        out(&format!("{verdict} {name}"))?;
    }
    Ok(())
}

fn stream_client(target: SocketAddr, seconds: u32, timeout: Duration) -> Result<()> {
    let (mut reader, line) = connect(target, UNBOUND, timeout).context("connecting")?;
    out(&format!("ok {line}"))?;
    let end = Instant::now() + Duration::from_secs(seconds.into());
    let (mut sent, mut bad) = (0, 0);
    while Instant::now() < end {
        if !ping(&mut reader) {
            bad += 1;
        }
        sent += 1;
        thread::sleep(Duration::from_millis(20));
    }
    out(&format!("echo {sent} {bad}"))
}

/// Sends `ping` on a connection to a server; whether it came back.
fn ping(conn: &mut BufReader<TcpStream>) -> bool {
    let mut line = String::new();
    conn.get_mut().write_all(b"ping\n").is_ok()
        && conn.read_line(&mut line).is_ok()
        && line == "ping\n"
}

/// The internet checksum of `data` (even length).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn syn_flood(dst: Ipv4Addr, port: u16, count: u32) -> Result<()> {
    // SAFETY: socket(2) returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("opening a raw socket");
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let to = bench::sockaddr_in(SocketAddrV4::new(dst, 0));
    for i in 0..count {
        let source = Ipv4Addr::from(0x0a63_0000 + i % 65_536);
        let sport = 1024 + (i % 60_000) as u16;
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&port.to_be_bytes());
        tcp[4..8].copy_from_slice(&rand_u32(i).to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x02; // SYN
        tcp[14..16].copy_from_slice(&64_240u16.to_be_bytes());
        let mut pseudo = Vec::with_capacity(32);
        pseudo.extend(source.octets());
        pseudo.extend(dst.octets());
        pseudo.extend([0, 6, 0, 20]);
        pseudo.extend(tcp);
        tcp[16..18].copy_from_slice(&checksum(&pseudo).to_be_bytes());
        let mut packet = [0u8; 40];
        packet[0] = 0x45;
        packet[2..4].copy_from_slice(&40u16.to_be_bytes());
        packet[8] = 64;
        packet[9] = 6;
        packet[12..16].copy_from_slice(&source.octets());
        packet[16..20].copy_from_slice(&dst.octets());
        packet[20..].copy_from_slice(&tcp);
        // SAFETY: packet and to are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&raw const to).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error()).context("sending a SYN");
        }
    }
    out(&format!("sent {count}"))
}

/// A sequence number that differs from SYN to SYN (xorshift of the index).
fn rand_u32(i: u32) -> u32 {
    let mut x = i.wrapping_mul(0x9e37_79b9) ^ 0x5bd1_e995;
    x ^= x << 13;
    x ^= x >> 17;
    x ^ (x << 5)
}
