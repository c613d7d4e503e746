//! A small HTTP/1.1 client that runs inside a lab namespace.
//!
//! Registry probes and image pushes must originate in a lab namespace (the root namespace never
//! talks to the underlay), so each request runs on a thread that entered the namespace first.
//! Only what the registry needs: `http://<ip>:<port>/path`, one request per connection,
//! `Content-Length` or chunked responses.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::{Error, Result, net};

/// A response: status, headers (names lowercased) and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Splits `http://ip:port/path?query` into address and path.
fn split_url(url: &str) -> Option<(SocketAddr, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .parse()
        .or_else(|_| format!("{authority}:80").parse())
        .ok()?;
    Some((addr, path.to_owned()))
}

/// Sends one request from inside `netns` and reads the whole response.
pub fn request(
    netns: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Response> {
    let fail = {
        let (method, url) = (method.to_owned(), url.to_owned());
        move |reason: String| Error::Http {
            method: method.clone(),
            url: url.clone(),
            reason,
        }
    };
    let (addr, path) = split_url(url).ok_or_else(|| fail("not an http://ip:port/ URL".into()))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: ekube-lab\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let is_head = method == "HEAD";
    let result = net::in_netns(netns, move || -> std::io::Result<Response> {
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
        read_response(BufReader::new(stream), is_head)
    })?;
    result.map_err(|e| fail(e.to_string()))
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_owned())
}

/// Parses a response from `r`.
fn read_response(mut r: impl BufRead, is_head: bool) -> std::io::Result<Response> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if is_head || status == 204 || status == 304 {
        return Ok(resp);
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            r.read_exact(&mut resp.body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(len) = resp
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        resp.body.resize(len, 0);
        r.read_exact(&mut resp.body)?;
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split() {
        let (addr, path) = split_url("http://192.168.64.1:5000/v2/").unwrap();
        assert_eq!(addr.to_string(), "192.168.64.1:5000");
        assert_eq!(path, "/v2/");
        assert_eq!(split_url("http://10.0.0.1").unwrap().1, "/");
        assert!(split_url("https://x/").is_none());
    }

    #[test]
    fn parses_chunked_and_sized_bodies() {
        let raw =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let resp = read_response(raw.as_bytes(), false).unwrap();
        assert_eq!((resp.status, resp.text().as_str()), (200, "abcde"));
        let raw = "HTTP/1.1 202 Accepted\r\nLocation: /v2/x/blobs/uploads/1\r\nContent-Length: 2\r\n\r\n{}";
        let resp = read_response(raw.as_bytes(), false).unwrap();
        assert_eq!(resp.status, 202);
        assert_eq!(resp.header("Location"), Some("/v2/x/blobs/uploads/1"));
        assert_eq!(resp.text(), "{}");
    }
}
