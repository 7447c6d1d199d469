//! The smallest HTTP/1.x server the health endpoints and `peergate await`
//! need: one request per connection (a body only with a Content-Length,
//! for `peergate put`), a response with a length, then close.
//!
//! No HTTP crate fits the 3 MB budget next to everything else (hyper and
//! its stack add several hundred KB), and the endpoints need nothing but a
//! request line. The parser is a pure function over the bytes read so far
//! (fuzzed by `fuzz/fuzz_targets/http_request.rs`); the reader bounds the
//! request's size and the time it may take.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

/// Most bytes of a request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Most bytes of a request body (a `peergate put` value is at most 4 KiB).
pub const MAX_BODY: usize = 8 * 1024;
/// Time a client has to send its request head and body (a kubelet probe
/// sends it at once).
pub const HEAD_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    pub query: Option<String>,
    /// The Content-Length header's value.
    pub content_length: Option<usize>,
    /// Bytes of the head, up to and including its blank line.
    pub head_len: usize,
    /// The body, filled by [`read_request`].
    pub body: Vec<u8>,
}

impl Request {
    /// The value of query parameter `name` (`a=1&b`: `a` is `1`, `b` is
    /// empty), undecoded: the parameters this server reads are numbers and
    /// flags.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Request(Request),
    /// The head is not complete yet.
    NeedMore,
    /// Not a request this server can read; answer 400.
    Bad(&'static str),
}

/// Parses the request head in `buf` (everything read so far).
pub fn parse(buf: &[u8]) -> Parsed {
    let Some((end, blank)) = find(buf, b"\r\n\r\n")
        .map(|e| (e, 4))
        .or_else(|| find(buf, b"\n\n").map(|e| (e, 2)))
    else {
        if buf.len() >= MAX_HEAD {
            return Parsed::Bad("request head too large");
        }
        return Parsed::NeedMore;
    };
    if end + blank > MAX_HEAD {
        return Parsed::Bad("request head too large");
    }
    let head = &buf[..end];
    let line_end = find(head, b"\n").unwrap_or(head.len());
    let line = &head[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Parsed::Bad("request line is not UTF-8");
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Bad("malformed request line");
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Parsed::Bad("unsupported HTTP version");
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Parsed::Bad("malformed method");
    }
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return Parsed::Bad("malformed request target");
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    let mut content_length = None;
    for header in head[line_end..].split(|&b| b == b'\n').skip(1) {
        let header = header.strip_suffix(b"\r").unwrap_or(header);
        let Some(colon) = header.iter().position(|&b| b == b':') else {
            continue;
        };
        if !header[..colon].eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        let value = std::str::from_utf8(&header[colon + 1..]).unwrap_or("");
        match value.trim().parse::<usize>() {
            Ok(n) if content_length.is_none_or(|c| c == n) => content_length = Some(n),
            Ok(_) => return Parsed::Bad("conflicting Content-Length headers"),
            Err(_) => return Parsed::Bad("malformed Content-Length"),
        }
    }
    if content_length.is_some_and(|n| n > MAX_BODY) {
        return Parsed::Bad("request body too large");
    }
    Parsed::Request(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        content_length,
        head_len: end + blank,
        body: Vec::new(),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A response: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    pub fn json(body: String) -> Response {
        Response {
            status: 200,
            content_type: "application/json",
            body,
        }
    }

    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: \
             no-store\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// Reads one request from `stream`, its head and (with a Content-Length)
/// its body, within [`HEAD_DEADLINE`].
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Parsed> {
    let mut buf = Vec::with_capacity(512);
    let read = async {
        loop {
            match parse(&buf) {
                Parsed::NeedMore => {}
                Parsed::Request(mut r) => {
                    let want = r.head_len + r.content_length.unwrap_or(0);
                    if buf.len() >= want {
                        r.body = buf[r.head_len..want].to_vec();
                        return Ok(Parsed::Request(r));
                    }
                }
                done => return Ok(done),
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    timeout(HEAD_DEADLINE, read)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// Writes `response` and closes the sending side.
pub async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &Response,
    head_only: bool,
) -> io::Result<()> {
    stream.write_all(&response.encode(head_only)).await?;
    stream.shutdown().await
}

/// A client's side of one request on `stream`: writes `request`, reads
/// the whole answer (at most `max` bytes) until the server closes. An
/// answer of nothing is an unexpected end of file.
pub async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
    max: u64,
) -> io::Result<Vec<u8>> {
    stream.write_all(request).await?;
    let mut answer = Vec::new();
    stream.take(max).read_to_end(&mut answer).await?;
    if answer.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(answer)
}

/// Splits a response into its status and body (for `peergate await`, which
/// reads what this module writes).
pub fn parse_response(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let end = find(bytes, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, &bytes[end + 4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, query: Option<&str>, head_len: usize) -> Parsed {
        Parsed::Request(Request {
            method: "GET".into(),
            path: path.into(),
            query: query.map(str::to_owned),
            head_len,
            ..Request::default()
        })
    }

    #[test]
    fn request_lines() {
        let probe = b"GET /readyz HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe/1.33\r\n\r\n";
        assert_eq!(parse(probe), req("/readyz", None, probe.len()));
        assert_eq!(
            parse(b"GET /peers?x=1 HTTP/1.0\n\n"),
            req("/peers", Some("x=1"), 25)
        );
        assert_eq!(parse(b"GET /readyz HTTP/1.1\r\nHost"), Parsed::NeedMore);
        assert_eq!(parse(b""), Parsed::NeedMore);
        for bad in [
            &b"GET /readyz\r\n\r\n"[..],
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET readyz HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/2\r\n\r\n",
            b"get /x HTTP/1.1\r\n\r\n",
            b"\xff\xfe /x HTTP/1.1\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"PGBR\x02\x01\0\0\0\x20\r\n\r\n",
        ] {
            assert!(matches!(parse(bad), Parsed::Bad(_)), "{bad:?}");
        }
        let huge = vec![b'a'; MAX_HEAD + 1];
        assert_eq!(parse(&huge), Parsed::Bad("request head too large"));
    }

    #[test]
    fn bodies_come_with_a_content_length_and_within_limits() {
        let Parsed::Request(r) =
            parse(b"PUT /v1/values/k?round=2&x HTTP/1.1\r\ncontent-LENGTH: 5\r\n\r\nhello")
        else {
            panic!()
        };
        assert_eq!((r.method.as_str(), r.content_length), ("PUT", Some(5)));
        assert_eq!(
            (r.param("round"), r.param("x"), r.param("y")),
            (Some("2"), Some(""), None)
        );
        for (bad, why) in [
            (
                &b"PUT / HTTP/1.1\r\nContent-Length: x\r\n\r\n"[..],
                "malformed Content-Length",
            ),
            (
                b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "conflicting Content-Length headers",
            ),
            (
                b"PUT / HTTP/1.1\r\nContent-Length: 8193\r\n\r\n",
                "request body too large",
            ),
        ] {
            assert_eq!(parse(bad), Parsed::Bad(why));
        }
    }

    #[tokio::test]
    async fn the_reader_waits_for_the_whole_body() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let read = tokio::spawn(async move { read_request(&mut server).await });
        client
            .write_all(b"PUT /v1/values/k HTTP/1.1\r\nContent-Length: 40\r\n\r\n")
            .await
            .unwrap();
        for _ in 0..4 {
            client.write_all(b"0123456789").await.unwrap();
        }
        let Parsed::Request(r) = read.await.unwrap().unwrap() else {
            panic!()
        };
        assert_eq!(r.body, b"0123456789".repeat(4));
    }

    #[test]
    fn responses_round_trip_through_the_client_parser() {
        let r = Response::json("{\"a\":1}".into());
        let bytes = r.encode(false);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 7\r\n"));
        assert_eq!(parse_response(&bytes), Some((200, &b"{\"a\":1}"[..])));
        let head = Response::text(503, "waiting").encode(true);
        assert_eq!(parse_response(&head), Some((503, &b""[..])));
        assert_eq!(parse_response(b"garbage"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_cut_off() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let read = tokio::spawn(async move { read_request(&mut server).await });
        tokio::time::sleep(HEAD_DEADLINE + Duration::from_millis(1)).await;
        let err = read.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client.write_all(b"late").await);
    }

    /// The fuzz target's invariant over a fixed corpus: never panic, and a
    /// parsed request's path starts with `/` and has no query.
    #[test]
    fn parser_invariants_on_mutated_input() {
        let seed = b"GET /metrics?a=b HTTP/1.1\r\nHost: p\r\n\r\n".to_vec();
        crate::corpus::mutated(&[seed], 20_000, 80, check_invariants);
    }

    pub(crate) fn check_invariants(data: &[u8]) {
        if let Parsed::Request(r) = parse(data) {
            assert!(r.path.starts_with('/') && !r.path.contains('?'));
            assert!(!r.method.is_empty());
        }
    }
}
