//! `/containerLogs/{ns}/{pod}/{container}`: a container's output read back from the CRI log
//! files the runtime writes (`<RFC3339Nano> <stream> <F|P> <text>`), with the upstream
//! options `follow`, `tailLines`, `timestamps`, `previous`, `sinceSeconds`/`sinceTime` and
//! `limitBytes`. Following polls the file and ends once the container has exited and its
//! last output is sent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use ekube_api::time::{SignedDuration, Timestamp};
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_stream::StreamExt;

use super::lookup::{self, NotServed};
use super::{Body, Finish, Node, Query, text};
use crate::cri::{self, ContainerState};
use crate::runtime::log::parse_record;

/// How often a followed log is polled for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(150);

/// The options of a log request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Options {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<Timestamp>,
    pub limit_bytes: Option<usize>,
}

impl Options {
    pub fn parse(q: &Query, now: Timestamp) -> Result<Self, String> {
        let num = |k: &str| {
            q.get(k)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| format!("{k}: invalid value {v:?}"))
                })
                .transpose()
        };
        let since = match (num("sinceSeconds")?, q.get("sinceTime")) {
            (Some(s), _) => Some(
                now.checked_sub(SignedDuration::from_secs(s.max(0)))
                    .map_err(|_| format!("sinceSeconds: {s} is out of range"))?,
            ),
            (None, Some(t)) => Some(
                t.parse::<Timestamp>()
                    .map_err(|e| format!("sinceTime: {e}"))?,
            ),
            (None, None) => None,
        };
        Ok(Self {
            follow: q.flag(&["follow"]),
            previous: q.flag(&["previous"]),
            timestamps: q.flag(&["timestamps"]),
            tail_lines: num("tailLines")?.map(|n| n.max(0) as usize),
            since,
            limit_bytes: num("limitBytes")?.map(|n| n.max(0) as usize),
        })
    }
}

/// Turns CRI log bytes into what the client sees, line by line.
struct Formatter {
    opts: Options,
    /// Bytes of an unfinished last line of the file.
    pending: Vec<u8>,
    /// Bytes still allowed by `limitBytes`.
    budget: Option<usize>,
}

impl Formatter {
    fn new(opts: Options) -> Self {
        let budget = opts.limit_bytes;
        Self {
            opts,
            pending: Vec::new(),
            budget,
        }
    }

    /// The output of the complete records in `pending + chunk`, one entry per log line (a
    /// run of partial records ends with a full one).
    fn lines(&mut self, chunk: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(chunk);
        let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.pending.drain(..=end).collect();
        let mut lines = Vec::new();
        let mut current = Vec::new();
        for raw in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Some(r) = parse_record(raw) else { continue };
            if let Some(since) = self.opts.since
                && r.time.parse::<Timestamp>().is_ok_and(|t| t < since)
            {
                continue;
            }
            if self.opts.timestamps {
                current.extend_from_slice(r.time.as_bytes());
                current.push(b' ');
            }
            current.extend_from_slice(r.text);
            if !r.partial {
                current.push(b'\n');
                lines.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            lines.push(current);
        }
        lines
    }

    /// Cuts `out` to what `limitBytes` still allows; `None` once the limit is used up.
    fn limit(&mut self, mut out: Vec<u8>) -> Option<Vec<u8>> {
        match &mut self.budget {
            None => Some(out),
            Some(0) => None,
            Some(left) => {
                out.truncate(*left);
                *left -= out.len();
                Some(out)
            }
        }
    }

    fn exhausted(&self) -> bool {
        self.budget == Some(0)
    }
}

/// Which log file serves the request, and the container to watch when following.
async fn choose(
    node: &Node,
    ns: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<(PathBuf, Option<String>), NotServed> {
    // A finished pod's sandbox is gone; its logs are still on disk.
    let found = match lookup::containers(node, ns, pod, container).await {
        Err(lookup::NotServed(StatusCode::NOT_FOUND, _)) => Vec::new(),
        other => other?,
    };
    let (dir, current) = match found.first() {
        Some(c) if !c.log_path.as_os_str().is_empty() => (
            c.log_path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            Some((c.attempt, c.id.clone(), c.running)),
        ),
        _ => (lookup::log_dir(node, ns, pod, container).await?, None),
    };
    let mut attempts: Vec<u32> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    attempts.sort_unstable();
    let newest = current.as_ref().map(|c| c.0).or(attempts.last().copied());
    let not_found = |what: &str| {
        NotServed(
            StatusCode::BAD_REQUEST,
            format!("{what} container \"{container}\" in pod \"{pod}\" not found"),
        )
    };
    if previous {
        let prev = newest
            .and_then(|n| attempts.iter().rev().find(|a| **a < n).copied())
            .ok_or_else(|| not_found("previous terminated"))?;
        return Ok((dir.join(format!("{prev}.log")), None));
    }
    let n = newest.ok_or_else(|| not_found("current"))?;
    let follow = current.filter(|c| c.0 == n && c.2).map(|c| c.1);
    Ok((dir.join(format!("{n}.log")), follow))
}

pub async fn serve(node: &Node, ns: &str, pod: &str, container: &str, q: &Query) -> Response<Body> {
    let opts = match Options::parse(q, Timestamp::now()) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let (path, running) = match choose(node, ns, pod, container, opts.previous).await {
        Ok(c) => c,
        Err(NotServed(code, msg)) => return text(code, msg),
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("container \"{container}\" in pod \"{pod}\" has no log yet"),
            );
        }
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("opening {}: {e}", path.display()),
            );
        }
    };
    let follow = if opts.follow { running } else { None };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(stream(
        file,
        path,
        Formatter::new(opts),
        follow.map(|id| (node.runtime.clone(), id)),
        tx,
    ));
    let body = StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx).map(|b| Ok(hyper::body::Frame::data(b))),
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(BodyExt::boxed(body))
        .finish()
}

/// Sends the log's lines (the last `tailLines` first), then, when following, new output until
/// the container exits or the client goes away. A followed log that the kubelet rotated is
/// read to its end, then the new file at `path` is followed. The file is read in
/// [`READ_CHUNK`] pieces and never held whole.
async fn stream(
    mut file: tokio::fs::File,
    path: std::path::PathBuf,
    mut fmt: Formatter,
    follow: Option<(crate::runtime::RuntimeClient, String)>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let start = match fmt.opts.tail_lines {
        Some(n) => match tail_offset(&mut file, n, READ_CHUNK).await {
            Ok(offset) => offset,
            Err(_) => return,
        },
        None => 0,
    };
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return;
    }
    if drain(&mut file, &mut fmt, &tx).await.is_none() {
        return;
    }
    let Some((mut rc, id)) = follow else { return };
    let mut last_check = tokio::time::Instant::now();
    loop {
        let mut exited = false;
        if last_check.elapsed() >= Duration::from_secs(1) {
            last_check = tokio::time::Instant::now();
            exited = rc
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await
                .ok()
                .and_then(|s| s.into_inner().status)
                .is_none_or(|s| s.state != ContainerState::ContainerRunning as i32);
        }
        let Some(read) = drain(&mut file, &mut fmt, &tx).await else {
            return;
        };
        if exited {
            return;
        }
        if read == 0 && rotated(&file, &path).await {
            match tokio::fs::File::open(&path).await {
                Ok(f) => {
                    file = f;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = tx.closed() => return,
        }
    }
}

/// How much of a log file is read at a time.
const READ_CHUNK: usize = 64 << 10;

/// Sends what `file` holds from its position to its end; the number of bytes read, or `None`
/// once nothing more is to be sent (client gone, `limitBytes` used up, read error).
async fn drain(
    file: &mut tokio::fs::File,
    fmt: &mut Formatter,
    tx: &tokio::sync::mpsc::Sender<Bytes>,
) -> Option<u64> {
    let mut buf = vec![0; READ_CHUNK];
    let mut total = 0;
    loop {
        let n = file.read(&mut buf).await.ok()?;
        if n == 0 {
            return Some(total);
        }
        total += n as u64;
        let out = fmt.lines(&buf[..n]).concat();
        if !send(fmt, tx, out).await {
            return None;
        }
    }
}

/// Where the last `n` lines of a CRI log start, found by reading `block`-sized pieces backwards
/// from the end: a line ends with a full (`F`) record, so the answer is just past the newline
/// of the (n+1)-th full record from the end (or the file's start). A trailing record without
/// its newline is still being written and is not counted.
async fn tail_offset(file: &mut tokio::fs::File, n: usize, block: usize) -> std::io::Result<u64> {
    use std::io::SeekFrom;
    /// Enough of a record's start to hold its timestamp, stream and tag.
    const HEAD: usize = 96;
    let len = file.seek(SeekFrom::End(0)).await?;
    let mut end = len;
    // The first bytes of the file from `end` on: the start of a record that begins at `end`.
    let mut after: Vec<u8> = Vec::new();
    // Where the newest record not yet classified ends (its newline), once one was seen.
    let mut record_end: Option<u64> = None;
    let mut full = 0;
    let mut buf = Vec::new();
    // Counts the record starting at `start` (ending at `record_end`); the answer once it is the
    // (n+1)-th full one.
    let mut count = |head: &[u8], record_end: Option<u64>| -> Option<u64> {
        let end = record_end?;
        let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
        if parse_record(line).is_some_and(|r| !r.partial) {
            full += 1;
            if full > n {
                return Some(end + 1);
            }
        }
        None
    };
    while end > 0 {
        let start = end.saturating_sub(block as u64);
        buf.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(&mut buf).await?;
        for i in (0..buf.len()).rev() {
            if buf[i] != b'\n' {
                continue;
            }
            let mut head = buf[i + 1..].to_vec();
            head.truncate(HEAD);
            head.extend_from_slice(&after[..after.len().min(HEAD - head.len())]);
            if let Some(offset) = count(&head, record_end) {
                return Ok(offset);
            }
            record_end = Some(start + i as u64);
        }
        let mut head = buf.clone();
        head.truncate(HEAD);
        head.extend_from_slice(&after[..after.len().min(HEAD - head.len())]);
        after = head;
        end = start;
    }
    // The file's first record.
    if let Some(offset) = count(&after, record_end) {
        return Ok(offset);
    }
    Ok(0)
}

/// Whether `path` no longer names the open `file` (the log was rotated away).
async fn rotated(file: &tokio::fs::File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata().await, tokio::fs::metadata(path).await) {
        (Ok(open), Ok(named)) => (open.dev(), open.ino()) != (named.dev(), named.ino()),
        (Ok(_), Err(_)) => true,
        _ => false,
    }
}

/// Sends `out` within `limitBytes`; false once nothing more is to be sent.
async fn send(fmt: &mut Formatter, tx: &tokio::sync::mpsc::Sender<Bytes>, out: Vec<u8>) -> bool {
    if out.is_empty() {
        return !fmt.exhausted();
    }
    match fmt.limit(out) {
        Some(out) if !out.is_empty() => tx.send(Bytes::from(out)).await.is_ok() && !fmt.exhausted(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2024-01-01T00:00:01.000000000Z stdout F one\n\
        2024-01-01T00:00:02.000000000Z stderr F two\n\
        2024-01-01T00:00:03.000000000Z stdout P thr\n\
        2024-01-01T00:00:03.500000000Z stdout F ee\n\
        2024-01-01T00:00:04.000000000Z stdout F fo";

    fn opts(q: &str) -> Options {
        Options::parse(
            &Query::parse(Some(q)),
            "2024-01-01T00:00:10Z".parse().unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn lines_join_partials_and_keep_the_unfinished_tail() {
        let mut f = Formatter::new(Options::default());
        assert_eq!(f.lines(LOG).concat(), b"one\ntwo\nthree\n");
        assert_eq!(f.lines(b"ur\n").concat(), b"four\n");
    }

    #[test]
    fn timestamps_since_and_limit() {
        let mut f = Formatter::new(opts("timestamps=true&sinceSeconds=8"));
        assert_eq!(
            String::from_utf8(f.lines(LOG).concat()).unwrap(),
            "2024-01-01T00:00:02.000000000Z two\n2024-01-01T00:00:03.000000000Z thr2024-01-01T00:00:03.500000000Z ee\n"
        );
        let mut f = Formatter::new(opts("limitBytes=5"));
        let out = f.lines(LOG).concat();
        assert_eq!(f.limit(out).unwrap(), b"one\nt");
        assert!(f.exhausted());
    }

    #[test]
    fn options_parse() {
        let o = opts("follow=true&tailLines=2&previous=true");
        assert!(o.follow && o.previous && o.tail_lines == Some(2));
        assert!(Options::parse(&Query::parse(Some("tailLines=x")), Timestamp::now()).is_err());
        let o = opts("sinceTime=2024-01-01T00:00:05Z");
        assert_eq!(o.since, Some("2024-01-01T00:00:05Z".parse().unwrap()));
    }

    #[tokio::test]
    async fn tail_offset_reads_backwards_in_any_block_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, LOG).unwrap();
        let mut file = tokio::fs::File::open(&path).await.unwrap();
        let text = std::str::from_utf8(LOG).unwrap();
        let line = |k: usize| text.match_indices('\n').nth(k).unwrap().0 as u64 + 1;
        for block in [1, 7, 50, 4096] {
            // "fo" has no newline yet; "thr" + "ee" is one line of two records.
            assert_eq!(tail_offset(&mut file, 0, block).await.unwrap(), line(3));
            assert_eq!(tail_offset(&mut file, 1, block).await.unwrap(), line(1));
            assert_eq!(tail_offset(&mut file, 2, block).await.unwrap(), line(0));
            assert_eq!(tail_offset(&mut file, 3, block).await.unwrap(), 0);
            assert_eq!(tail_offset(&mut file, 100, block).await.unwrap(), 0);
        }
    }

    #[test]
    fn since_seconds_out_of_range_is_an_error() {
        let q = Query::parse(Some("sinceSeconds=9223372036854775807"));
        let err = Options::parse(&q, Timestamp::now()).unwrap_err();
        assert!(err.contains("out of range"), "{err}");
    }

    #[tokio::test]
    async fn stream_reads_a_large_log_in_pieces_within_limit_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let record = b"2024-01-01T00:00:01.000000000Z stdout F 0123456789\n";
        std::fs::write(&path, record.repeat(20_000)).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let file = tokio::fs::File::open(&path).await.unwrap();
        let task = tokio::spawn(stream(
            file,
            path.clone(),
            Formatter::new(opts("limitBytes=25")),
            None,
            tx,
        ));
        assert_eq!(
            rx.recv().await.unwrap(),
            Bytes::from_static(b"0123456789\n0123456789\n012")
        );
        assert!(rx.recv().await.is_none());
        task.await.unwrap();
    }

    #[tokio::test]
    async fn stream_tails_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, LOG).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let file = tokio::fs::File::open(&path).await.unwrap();
        stream(
            file,
            path.clone(),
            Formatter::new(opts("tailLines=2")),
            None,
            tx,
        )
        .await;
        assert_eq!(
            rx.recv().await.unwrap(),
            Bytes::from_static(b"two\nthree\n")
        );
        assert!(rx.recv().await.is_none());
    }
}
