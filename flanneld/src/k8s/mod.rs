//! Talking to the Kubernetes API, for any resource kind: the client ([`client`]), the retry
//! rule for responses that carry `Retry-After` ([`retry`]) and the list + watch loop
//! ([`list_watch`]). The subnet manager's Node following is built on these; so can any
//! other consumer of the API.

pub mod client;
pub mod list_watch;
pub mod retry;

pub use client::{build_client, ClientError};
pub use list_watch::{describe, ListWatch, Update};
