//! The CRI container log format the runtime writes and the kubelet reads: one record per
//! line, `<RFC3339Nano> <stdout|stderr> <F|P> <text>`, `P` marking a line split because it
//! was too long.

/// One record of `stream` stamped now, with its newline.
pub fn log_record(stream: &str, partial: bool, text: &[u8]) -> Vec<u8> {
    let ts = ekube_api::time::rfc3339_nanos(ekube_api::time::Timestamp::now());
    let mut out = format!("{ts} {stream} {} ", if partial { "P" } else { "F" }).into_bytes();
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

/// One parsed CRI log record.
#[derive(Debug, PartialEq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub stderr: bool,
    pub partial: bool,
    pub text: &'a [u8],
}

/// Splits one line of a CRI log (without its newline) into its parts; `None` when it is not
/// a record.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stderr = parts.next()? == b"stderr";
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default();
    Some(Record {
        time,
        stderr,
        partial: tag == b"P",
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_follow_the_cri_log_format() {
        let r = String::from_utf8(log_record("stdout", false, b"hello world")).unwrap();
        let (ts, rest) = r.split_once(' ').unwrap();
        assert!(ekube_api::time::parse(ts).is_some(), "{ts}");
        assert_eq!(rest, "stdout F hello world\n");
        assert!(
            String::from_utf8(log_record("stderr", true, b"x"))
                .unwrap()
                .ends_with(" stderr P x\n")
        );
    }

    #[test]
    fn records_parse_back() {
        let line = log_record("stderr", true, b"a b");
        let r = parse_record(&line[..line.len() - 1]).unwrap();
        assert!(r.stderr && r.partial);
        assert_eq!(r.text, b"a b");
    }
}
