//! Just enough HTTP/1.1 for a Kubernetes client: one request per connection (every response
//! says `Connection: close`), bodies by Content-Length, and chunked streaming responses for
//! watches.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use serde_json::{json, Value};

/// Largest request head or body accepted; node patches are a few kilobytes.
const MAX_BODY: usize = 4 << 20;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path without the query.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// The first value of query parameter `name`.
pub fn query_param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        query_param(&self.query, name)
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Decodes `%XX` and `+` in a query component.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn read_request(stream: &TcpStream) -> io::Result<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(bad(format!("bad request line {line:?}")));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unescape(k), unescape(v))
        })
        .collect();
    let mut length = 0usize;
    let mut content_type = String::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            return Err(bad("connection closed inside the request head"));
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                length = value
                    .parse()
                    .map_err(|_| bad(format!("bad content-length {value:?}")))?
            }
            "content-type" => content_type = value.to_owned(),
            "transfer-encoding" if value.eq_ignore_ascii_case("chunked") => {
                return Err(bad("chunked request bodies are not supported"))
            }
            _ => {}
        }
    }
    if length > MAX_BODY {
        return Err(bad("request body too large"));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        content_type,
        body,
    })
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Internal Server Error",
    }
}

pub fn respond(stream: &TcpStream, code: u16, body: &Value) -> io::Result<()> {
    let body = serde_json::to_vec(body).expect("JSON values serialize");
    respond_with(stream, code, "application/json", None, &body)
}

/// A response with a `Retry-After` header when `retry_after` is set.
pub fn respond_with(
    mut stream: &TcpStream,
    code: u16,
    content_type: &str,
    retry_after: Option<u32>,
    body: &[u8],
) -> io::Result<()> {
    let retry = retry_after
        .map(|s| format!("Retry-After: {s}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\n{retry}Content-Length: {}\r\nConnection: close\r\n\r\n",
        reason(code),
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}

/// A `metav1.Status` failure, as the API server returns it.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// A chunked 200 response; each [`Chunked::line`] is one watch event.
pub struct Chunked<'a> {
    stream: &'a TcpStream,
}

impl<'a> Chunked<'a> {
    pub fn start(mut stream: &'a TcpStream) -> io::Result<Chunked<'a>> {
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )?;
        stream.flush()?;
        Ok(Chunked { stream })
    }

    pub fn line(&mut self, v: &Value) -> io::Result<()> {
        let mut data = serde_json::to_vec(v).expect("JSON values serialize");
        data.push(b'\n');
        write!(self.stream, "{:x}\r\n", data.len())?;
        self.stream.write_all(&data)?;
        self.stream.write_all(b"\r\n")?;
        self.stream.flush()
    }

    pub fn finish(self) -> io::Result<()> {
        let mut s = self.stream;
        s.write_all(b"0\r\n\r\n")?;
        s.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_unescaped() {
        assert_eq!(unescape("a%3Db+c"), "a=b c");
        assert_eq!(unescape("100%"), "100%");
    }
}
