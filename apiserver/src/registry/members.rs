//! Reading stored JSON without building it: an object's members as the slices of text they
//! are. Lists and watches send most of an object through unchanged (only `apiVersion`, `kind`
//! and `metadata.resourceVersion` differ from what is stored), so they scan the text once and
//! copy it, instead of parsing it into a tree or a map of keys and writing it out again.
//!
//! The scan checks the whole grammar (strings and their escapes, numbers, literals, nesting), so
//! text it accepts is JSON that `serde_json` reads too. Keys are compared as written: a key
//! with an escape is not one this module can compare, and the caller takes the general path.

/// The members of the JSON object `text`, in order, each as its key (the text between its
/// quotes) and its value's text. `None` when `text` is not one JSON object, one of its keys
/// holds an escape, or its keys are not in increasing order (as an object written from a map
/// ordered by key has them, which is how objects are stored, with no key twice).
pub fn members(text: &str) -> Option<Vec<(&str, &str)>> {
    let mut scan = Scan {
        s: text.as_bytes(),
        i: 0,
    };
    scan.space();
    if scan.peek() != Some(b'{') {
        return None;
    }
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(8);
    scan.container(b'}', |scan| {
        let (key, escaped, value) = scan.member(1)?;
        let key = &text[key];
        if escaped || out.last().is_some_and(|(last, _)| *last >= key) {
            return None;
        }
        out.push((key, &text[value]));
        Some(())
    })?;
    scan.space();
    (scan.i == scan.s.len()).then_some(out)
}

/// Writes one member's value.
pub type WriteValue<'a> = &'a mut dyn FnMut(&mut String);

/// Writes the object of `members` (in key order) with `set` (in key order) laid over it: each
/// key of `set` written by its function, in the place of the member of that key or where the
/// key falls in the order.
pub fn write_object(
    out: &mut String,
    members: &[(&str, &str)],
    set: &mut [(&str, WriteValue<'_>)],
) {
    out.push('{');
    let mut first = true;
    let mut key = |out: &mut String, key: &str| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        out.push('"');
        out.push_str(key);
        out.push_str("\":");
    };
    let mut set = set.iter_mut().peekable();
    for &(name, value) in members {
        // Keys of `set` are increasing, so only the last one taken can be this member's.
        let mut replaced = false;
        while let Some((k, write)) = set.next_if(|(k, _)| *k <= name) {
            replaced = *k == name;
            key(out, k);
            write(out);
        }
        if !replaced {
            key(out, name);
            out.push_str(value);
        }
    }
    for (k, write) in set {
        key(out, k);
        write(out);
    }
    out.push('}');
}

use std::ops::Range;

/// Deepest nesting accepted, as `serde_json`'s own limit.
const MAX_DEPTH: u32 = 128;

/// A position in JSON text being checked.
struct Scan<'a> {
    s: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    /// Skips one value, `depth` levels in.
    fn value(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.container(b'}', |scan| scan.member(depth + 1).map(drop)),
            b'[' => self.container(b']', |scan| scan.value(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    /// Reads one `"key": value` member of an object, its value `depth` levels in: the key's
    /// text (between its quotes), whether the key holds an escape, and the value's text.
    fn member(&mut self, depth: u32) -> Option<(Range<usize>, bool, Range<usize>)> {
        let key_start = self.i + 1;
        let escaped = self.string()?;
        let key = key_start..self.i - 1;
        self.space();
        self.eat(b':')?;
        self.space();
        let value_start = self.i;
        self.value(depth)?;
        Some((key, escaped, value_start..self.i))
    }

    /// Skips an object or array whose opening bracket is next: its elements, each read by
    /// `element`, separated by commas, up to `close`.
    fn container(
        &mut self,
        close: u8,
        mut element: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.i += 1;
        self.space();
        if self.peek() == Some(close) {
            self.i += 1;
            return Some(());
        }
        loop {
            self.space();
            element(self)?;
            self.space();
            match self.next()? {
                b',' => {}
                b if b == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// Skips the string whose opening quote is next; whether it holds an escape.
    fn string(&mut self) -> Option<bool> {
        self.eat(b'"')?;
        let mut escaped = false;
        loop {
            self.plain();
            match self.next()? {
                b'"' => return Some(escaped),
                b'\\' => {
                    escaped = true;
                    match self.next()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 4;
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => {}
            }
        }
    }

    /// Skips the bytes of a string that need no look, eight at a time, up to the first quote,
    /// backslash or control character (or to the last few bytes of the text). Most of what a
    /// stored object holds is string contents, and looking at each of their bytes was most of
    /// a list's time.
    fn plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // The high bit of each byte of `v` below `n` (n ≤ 0x80): the borrow of the subtraction
        // sets it, and no byte with its own high bit set counts. The lowest one set is exact
        // (bytes above it may be set by a borrow without cause).
        let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGH;
        let equal = |v: u64, b: u8| below(v ^ (ONES * u64::from(b)), 1);
        while let Some(chunk) = self.s.get(self.i..self.i + 8) {
            let v = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let found = equal(v, b'"') | equal(v, b'\\') | below(v, 0x20);
            if found != 0 {
                self.i += (found.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.s.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// Skips a number: `-`? (`0` | a digit 1–9 then digits), then an optional fraction and
    /// exponent, each with at least one digit.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digit()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digit()?;
        }
        Some(())
    }

    /// At least one digit.
    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then(|| self.digits())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use serde_json::value::RawValue;

    /// An object's members in the order written, each value as its text.
    struct Ordered(Vec<(String, Box<RawValue>)>);

    impl<'de> Deserialize<'de> for Ordered {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Members;
            impl<'de> Visitor<'de> for Members {
                type Value = Ordered;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                    let mut members = Vec::new();
                    while let Some(member) = map.next_entry()? {
                        members.push(member);
                    }
                    Ok(Ordered(members))
                }
            }
            d.deserialize_map(Members)
        }
    }

    /// What `serde_json` makes of `text` as an object's members, as text.
    fn by_serde(text: &str) -> Option<Vec<(String, String)>> {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).ok()?;
        let raw = serde_json::from_str::<Ordered>(text).ok()?.0;
        assert_eq!(map.len(), raw.len(), "no key twice in the cases");
        Some(
            raw.into_iter()
                .map(|(k, v)| (k, v.get().to_owned()))
                .collect(),
        )
    }

    #[test]
    fn reads_what_serde_json_reads() {
        let cases = [
            r#"{}"#,
            r#" { } "#,
            r#"{"a":1}"#,
            r#"{"a":1,"b":[1,2,{"c":null}],"d":{"e":"f"}}"#,
            r#"{ "a" : -0.5e+10 , "b" : true , "c" : false , "d" : null }"#,
            r#"{"a":"x\"y\\z\u00e9\n","b":"é ü ∑"}"#,
            r#"{"a":[],"b":{},"c":[[[]]],"d":"","e":0,"f":1E3,"g":-12}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12g4"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":1}}"#,
            r#"{"a":1} x"#,
            r#"{"a":{"b":1}"#,
            r#"[1,2]"#,
            r#""text""#,
            r#"7"#,
            "",
            "not json",
        ];
        for text in cases {
            assert_eq!(ours(text), by_serde(text), "{text}");
        }
    }

    fn ours(text: &str) -> Option<Vec<(String, String)>> {
        members(text).map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
    }

    /// Strings are skipped eight bytes at a time: an escape, a control character, a non-ASCII
    /// character or a quote at each place of a string of each length up to three words is
    /// read as serde_json reads it.
    #[test]
    fn every_place_in_a_string_is_looked_at() {
        let specials = [
            "\\\"", "\\\\", "\\u00e9", "\\x", "\n", "\u{1f}", "\u{7f}", "é", "∑", "\"",
        ];
        for len in 0..24 {
            for at in 0..=len {
                for special in specials {
                    let mut body = "a".repeat(len);
                    body.insert_str(at, special);
                    for text in [
                        format!("{{\"k\":\"{body}\"}}"),
                        format!("{{\"k\":[\"{body}\",\"{body}\"],\"l\":1}}"),
                        format!("{{\"k\":\"{body}"),
                    ] {
                        assert_eq!(ours(&text), by_serde(&text), "{text:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_key_with_an_escape_is_left_to_the_general_path() {
        assert_eq!(members(r#"{"a\"b":1}"#), None);
        assert_eq!(members(r#"{"\u0061":1}"#), None);
        // In a value, escapes are fine.
        assert_eq!(
            members(r#"{"a":{"\"":1}}"#),
            Some(vec![("a", r#"{"\"":1}"#)])
        );
    }

    #[test]
    fn nesting_deeper_than_serde_json_takes_is_refused() {
        let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        assert!(members(&deep(100)).is_some());
        assert!(serde_json::from_str::<serde_json::Value>(&deep(200)).is_err());
        assert!(members(&deep(200)).is_none());
    }

    #[test]
    fn keys_out_of_order_or_twice_are_left_to_the_general_path() {
        assert!(members(r#"{"a":1,"b":2,"ba":3}"#).is_some());
        assert_eq!(members(r#"{"b":1,"a":2}"#), None);
        assert_eq!(members(r#"{"a":1,"a":2}"#), None);
        // Nested objects are values, copied as they are.
        assert!(members(r#"{"a":{"z":1,"y":2}}"#).is_some());
    }

    #[test]
    fn set_keys_take_their_places() {
        let members = [("b", "1"), ("d", "2")];
        let write = |set: &[&str]| {
            let mut out = String::new();
            type Writer = Box<dyn FnMut(&mut String)>;
            let mut writers: Vec<Writer> = set
                .iter()
                .map(|k| {
                    let k = k.to_string();
                    Box::new(move |out: &mut String| out.push_str(&format!("\"{k}!\""))) as Writer
                })
                .collect();
            let mut set: Vec<(&str, WriteValue)> = set
                .iter()
                .copied()
                .zip(writers.iter_mut().map(|w| w.as_mut() as WriteValue))
                .collect();
            write_object(&mut out, &members, &mut set);
            out
        };
        assert_eq!(write(&[]), r#"{"b":1,"d":2}"#);
        assert_eq!(write(&["a"]), r#"{"a":"a!","b":1,"d":2}"#);
        assert_eq!(write(&["b"]), r#"{"b":"b!","d":2}"#);
        assert_eq!(
            write(&["a", "c", "e"]),
            r#"{"a":"a!","b":1,"c":"c!","d":2,"e":"e!"}"#
        );
        assert_eq!(write(&["a", "b", "d"]), r#"{"a":"a!","b":"b!","d":"d!"}"#);
        let mut out = String::new();
        let mut v = |out: &mut String| out.push('1');
        write_object(&mut out, &[], &mut [("x", &mut v)]);
        assert_eq!(out, r#"{"x":1}"#);
    }
}
