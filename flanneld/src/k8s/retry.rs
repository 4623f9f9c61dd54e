//! Retrying what the API server asks to be retried, as client-go does, and saying so.
//!
//! client-go's REST client (`rest/request.go`, `checkWait`) retries a response whose status
//! is 429 or 5xx *and* that carries a `Retry-After` header, after that many seconds, up to
//! 10 times; anything else goes back to the caller. kube-rs's default retry layer instead
//! retries 429/503/504 with its own backoff, silently. flanneld uses client-go's rule (the
//! server's pace, every verb) and logs one line per retry, so a throttling or restarting
//! API server is visible in the log.

use std::time::Duration;

use hyper::{Request, Response};
use kube::client::Body;
use tower::retry::Policy;
use tower::BoxError;

/// client-go's `maxRetries` for Retry-After responses.
pub const MAX_RETRIES: u32 = 10;
/// A Retry-After beyond this is waited for this long only; the caller's own retry takes over.
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// A [`tower::retry::Policy`]; one per request (tower clones it for each).
#[derive(Debug, Clone, Default)]
pub struct RetryAfter {
    retries: u32,
}

/// Whole seconds from a `Retry-After` header, for the statuses client-go honours it on.
pub fn retry_after(status: u16, header: Option<&str>) -> Option<Duration> {
    if status != 429 && status < 500 {
        return None;
    }
    let secs: u64 = header?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(LONGEST_WAIT))
}

impl<B> Policy<Request<Body>, Response<B>, BoxError> for RetryAfter {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<B>, BoxError>,
    ) -> Option<Self::Future> {
        let res = result.as_ref().ok()?;
        let header = res.headers().get(hyper::header::RETRY_AFTER);
        let wait = retry_after(res.status().as_u16(), header.and_then(|h| h.to_str().ok()))?;
        let what = format!(
            "{} {}",
            req.method(),
            req.uri().path_and_query().map_or("", |p| p.as_str())
        );
        if self.retries >= MAX_RETRIES {
            log::warn!(
                "API server answered {} to {what} {MAX_RETRIES} times in a row; giving up on this request",
                res.status()
            );
            return None;
        }
        self.retries += 1;
        log::warn!(
            "API server answered {} to {what}; retrying in {}s as its Retry-After asks ({}/{MAX_RETRIES})",
            res.status(),
            wait.as_secs(),
            self.retries
        );
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        let mut copy = Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone())
            .version(req.version())
            .body(req.body().try_clone()?)
            .ok()?;
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_429_and_5xx_with_a_retry_after_are_retried() {
        assert_eq!(retry_after(429, Some("1")), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(503, Some(" 2 ")), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(500, Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(500, None), None);
        assert_eq!(retry_after(409, Some("1")), None);
        // An HTTP date is not whole seconds; client-go ignores it too.
        assert_eq!(
            retry_after(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(retry_after(429, Some("86400")), Some(LONGEST_WAIT));
    }
}
