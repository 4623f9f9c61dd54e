//! The lease records in the v2 keyspace as a [`LeaseStore`] and [`SubnetStore`]: list,
//! create, reuse, renew, delete, watch.
//!
//! Each family's subnet is claimed for one node ([`crate::subnet::claims`]). The v2 API has no
//! transaction over several keys, so a create goes in steps, undoing what it did when one
//! fails: claim each family's subnet (create-only keys), create the record (create-only, as
//! upstream), then confirm each claim with a write conditional on the claim's index. A claim
//! whose record does not exist may be taken over by another node with a write conditional on
//! the same index, so of a confirmation and a takeover exactly one succeeds: a node whose
//! claim was taken over between its steps withdraws its record. Two flannel-rs nodes
//! therefore never keep one subnet; for a few milliseconds a withdrawn record may be visible,
//! which peers ride out ([`crate::subnet::peers`]).

use std::time::SystemTime;

use std::time::Duration;

use async_trait::async_trait;
use hyper::Method;
use ipnet::{Ipv4Net, Ipv6Net};
use tokio::sync::mpsc;

use super::wire::{self, code};
use super::{watch_subnets, Served, V2Error, V2Registry, REQUEST_TIMEOUT};
use crate::stop::Stop;
use crate::subnet::claims::{has_v4, v4_claim_key, v6_claim_key};
use crate::subnet::store::{
    join_key, LeaseStore, Listing, Owner, Slot, SubnetError, SubnetStore, WatchMsg,
};
use crate::subnet::{subnet_key, LeaseAttrs};

/// What a write requires of the key's current state, checked by etcd atomically with it.
#[derive(Debug, Clone, Copy)]
enum Precondition<'a> {
    /// Any state: the write creates or overwrites.
    None,
    /// The key must not exist (`prevExist=false`).
    Absent,
    /// The key must hold exactly this value (`prevValue`).
    Holds(&'a str),
    /// The key must be unchanged since this index (`prevIndex`).
    Unchanged(u64),
}

/// Whether an error is etcd's answer `code`.
fn is(e: &V2Error, code: u64) -> bool {
    e.code() == Some(code)
}

impl V2Registry {
    /// One PUT of `value` at `key` with `ttl` seconds (none: the key keeps no TTL).
    async fn put_key(
        &self,
        op: &'static str,
        key: &str,
        value: &str,
        ttl: Option<&str>,
        precondition: Precondition<'_>,
    ) -> Result<Served, V2Error> {
        let mut form = vec![("value", value)];
        // Without `ttl` a v2 write leaves the key without one, as upstream's reuse of a
        // reservation did (its TTL 0).
        if let Some(ttl) = ttl {
            form.push(("ttl", ttl));
        }
        let index;
        match precondition {
            Precondition::None => {}
            Precondition::Absent => form.push(("prevExist", "false")),
            Precondition::Holds(v) => form.push(("prevValue", v)),
            Precondition::Unchanged(i) => {
                index = i.to_string();
                form.push(("prevIndex", &index));
            }
        }
        self.call(op, Method::PUT, key, &[], Some(&form), REQUEST_TIMEOUT)
            .await
    }

    /// The value of `key` and the index it was last written at; `None` when it does not
    /// exist.
    async fn get_node(&self, key: &str) -> Result<Option<(String, u64)>, V2Error> {
        match self
            .call("claim", Method::GET, key, &[], None, REQUEST_TIMEOUT)
            .await
        {
            Ok(served) => Ok(served
                .response
                .node
                .map(|n| (n.value.unwrap_or_default(), n.modified_index))),
            Err(e) if is(&e, code::KEY_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The value of `key`; `None` when it does not exist.
    async fn get_value(&self, op: &'static str, key: &str) -> Result<Option<String>, V2Error> {
        match self
            .call(op, Method::GET, key, &[], None, REQUEST_TIMEOUT)
            .await
        {
            Ok(served) => Ok(served.response.node.and_then(|n| n.value)),
            Err(e) if is(&e, code::KEY_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes `key` while it holds `value`; gone or changed meanwhile is fine.
    async fn delete_if(&self, key: &str, value: &str) -> Result<(), V2Error> {
        let query = [("prevValue", value)];
        match self
            .call("delete", Method::DELETE, key, &query, None, REQUEST_TIMEOUT)
            .await
        {
            Err(e) if !is(&e, code::KEY_NOT_FOUND) && !is(&e, code::TEST_FAILED) => Err(e),
            _ => Ok(()),
        }
    }

    fn claim_keys(&self, subnet: Ipv4Net, ipv6_subnet: Option<Ipv6Net>) -> Vec<String> {
        let v4 = has_v4(subnet).then(|| v4_claim_key(&self.prefix, subnet));
        let v6 = ipv6_subnet.map(|s| v6_claim_key(&self.prefix, s));
        v4.into_iter().chain(v6).collect()
    }

    /// Makes the claim at `claim` name `holder`: creates it, or takes over one that names
    /// `holder` already (an earlier life of this record) or a record that does not exist.
    /// Returns the index it was written at, or `None` when another record holds it.
    async fn claim(
        &self,
        claim: &str,
        holder: &str,
        ttl: Option<&str>,
    ) -> Result<Option<u64>, V2Error> {
        let created = self
            .put_key("claim", claim, holder, ttl, Precondition::Absent)
            .await;
        match created {
            Ok(served) => return Ok(Some(written_at(&served))),
            Err(e) if !is(&e, code::NODE_EXIST) => return Err(e),
            Err(_) => {}
        }
        let Some((current, index)) = self.get_node(claim).await? else {
            // Released meanwhile: the next attempt may have it.
            return Ok(None);
        };
        if current != holder {
            let record = join_key(&self.subnets_dir(), &current);
            if self.get_value("claim", &record).await?.is_some() {
                return Ok(None);
            }
        }
        // Unchanged since we looked: its holder has not confirmed it since (see the module
        // docs), so its record does not exist, or will be withdrawn.
        match self
            .put_key("claim", claim, holder, ttl, Precondition::Unchanged(index))
            .await
        {
            Ok(served) => {
                if current != holder {
                    log::info!("took over the claim of {current} on {claim}: that record is gone");
                }
                Ok(Some(written_at(&served)))
            }
            Err(e) if is(&e, code::TEST_FAILED) || is(&e, code::KEY_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Withdraws the claims `claims` that still name `holder`.
    async fn release_claims(&self, claims: &[String], holder: &str) -> Result<(), V2Error> {
        for claim in claims {
            self.delete_if(claim, holder).await?;
        }
        Ok(())
    }

    /// After a write of our record: its claims get the same lifetime; a missing one is made
    /// again. One another record holds is left to the conflict resolution of the peers.
    async fn refresh_claims(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        ttl: Option<&str>,
    ) -> Result<(), V2Error> {
        let holder = subnet_key(subnet, ipv6_subnet);
        for claim in self.claim_keys(subnet, ipv6_subnet) {
            let refreshed = self
                .put_key("claim", &claim, &holder, ttl, Precondition::Holds(&holder))
                .await;
            match refreshed {
                Ok(_) => {}
                Err(e) if is(&e, code::KEY_NOT_FOUND) => {
                    if self.claim(&claim, &holder, ttl).await?.is_none() {
                        log::warn!("{claim} is held by another record; {holder} shares its subnet");
                    }
                }
                Err(e) if is(&e, code::TEST_FAILED) => {
                    log::warn!("{claim} is held by another record; {holder} shares its subnet")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes our record with a fresh TTL (none for a `reservation`), provided the key is in
    /// the state `precondition` demands. Returns the expiration.
    async fn put_lease(
        &self,
        op: &'static str,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        precondition: Precondition<'_>,
        reservation: bool,
    ) -> Result<Option<SystemTime>, V2Error> {
        let key = self.subnet_path(subnet, ipv6_subnet);
        let ttl = self.ttl_secs();
        let ttl = (!reservation).then_some(ttl.as_str());
        let served = self
            .put_key(op, &key, &attrs.to_json(), ttl, precondition)
            .await?;
        let ttl = served.response.node.and_then(|n| n.ttl);
        Ok(wire::expiration(ttl))
    }

    /// Refreshes the TTL of our record, only while it still holds exactly what we wrote:
    /// after an expiry another node may own the subnet. `LeaseLost` tells the caller to
    /// re-acquire.
    pub async fn renew_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
    ) -> Result<SystemTime, SubnetError> {
        let renewed = self.rewrite_subnet(subnet, ipv6_subnet, attrs, attrs, false);
        renewed
            .await?
            .ok_or_else(|| no_ttl("renew", &subnet_key(subnet, ipv6_subnet)))
    }
}

#[async_trait]
impl LeaseStore for V2Registry {
    /// The records for acquisition. The v2 API cannot list only what changed after an
    /// index, so every listing is a full one (`since` is ignored).
    async fn list_slots(&self, owner: &Owner, _since: Option<i64>) -> Result<Listing, SubnetError> {
        let (nodes, _) = self.list_nodes().await?;
        let slots = nodes
            .iter()
            .filter_map(|n| {
                if n.dir {
                    log::warn!("Ignoring bad subnet node {}", n.key);
                    return None;
                }
                let value = n.value.as_deref().unwrap_or_default();
                Slot::from_record(&n.key, value.as_bytes(), n.ttl.is_none(), owner)
            })
            .collect();
        Ok(Listing {
            slots,
            revision: None,
            changes_only: false,
        })
    }

    /// The v2 API has no count without the values, so acquisition re-reads after every lost
    /// race.
    async fn count_records(&self) -> Result<Option<usize>, SubnetError> {
        Ok(None)
    }

    /// Creates the record only if nothing holds its subnets (no record at its key, no claim
    /// of another live record on either family's subnet); `AlreadyExists` otherwise. The v2
    /// store judges stale claims itself, so `replacing` is not needed. Returns the expiration.
    async fn create_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        _replacing: Option<&str>,
    ) -> Result<SystemTime, SubnetError> {
        let holder = subnet_key(subnet, ipv6_subnet);
        let ttl = self.ttl_secs();
        let claims = self.claim_keys(subnet, ipv6_subnet);
        let mut made: Vec<(String, u64)> = Vec::new();
        let release = |made: &[(String, u64)]| {
            let keys: Vec<String> = made.iter().map(|(k, _)| k.clone()).collect();
            async move {
                self.release_claims(&keys, &holder_of(subnet, ipv6_subnet))
                    .await
            }
        };
        for claim in &claims {
            match self.claim(claim, &holder, Some(&ttl)).await {
                Ok(Some(index)) => made.push((claim.clone(), index)),
                Ok(None) => {
                    release(&made).await?;
                    return Err(SubnetError::AlreadyExists);
                }
                Err(e) => {
                    release(&made).await?;
                    return Err(e.into());
                }
            }
        }
        let put = self
            .put_lease(
                "create",
                subnet,
                ipv6_subnet,
                attrs,
                Precondition::Absent,
                false,
            )
            .await;
        let expiration = match put {
            Ok(Some(expiration)) => expiration,
            Ok(None) => return Err(no_ttl("create", &holder)),
            Err(e) => {
                release(&made).await?;
                if is(&e, code::NODE_EXIST) {
                    return Err(SubnetError::AlreadyExists);
                }
                return Err(e.into());
            }
        };
        for (claim, index) in &made {
            let confirmed = self
                .put_key(
                    "claim",
                    claim,
                    &holder,
                    Some(&ttl),
                    Precondition::Unchanged(*index),
                )
                .await;
            match confirmed {
                Ok(_) => {}
                Err(e) if is(&e, code::TEST_FAILED) || is(&e, code::KEY_NOT_FOUND) => {
                    log::info!("{claim} was taken over while {holder} was created; withdrawing it");
                    let record = self.subnet_path(subnet, ipv6_subnet);
                    self.delete_if(&record, &attrs.to_json()).await?;
                    release(&made).await?;
                    return Err(SubnetError::AlreadyExists);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(expiration)
    }

    /// Overwrites the record with a fresh TTL, or none with `reservation` (reuse of our own
    /// record after a restart); its claims get the same.
    async fn update_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        reservation: bool,
    ) -> Result<Option<SystemTime>, SubnetError> {
        let expiration = self
            .put_lease(
                "update",
                subnet,
                ipv6_subnet,
                attrs,
                Precondition::None,
                reservation,
            )
            .await?;
        let ttl = self.ttl_secs();
        let ttl = (!reservation).then_some(ttl.as_str());
        self.refresh_claims(subnet, ipv6_subnet, ttl).await?;
        Ok(expiration)
    }

    /// flannel ≤ v0.17 reused a reservation with TTL 0 (none) and, its expiration being Go's
    /// zero time, never renewed it.
    fn keeps_reservations(&self) -> bool {
        true
    }

    /// Deletes the record and the claims that name it; a record that is already gone is fine.
    async fn delete_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
    ) -> Result<(), SubnetError> {
        let key = self.subnet_path(subnet, ipv6_subnet);
        match self
            .call("delete", Method::DELETE, &key, &[], None, REQUEST_TIMEOUT)
            .await
        {
            Err(e) if !is(&e, code::KEY_NOT_FOUND) => return Err(e.into()),
            _ => {}
        }
        let holder = subnet_key(subnet, ipv6_subnet);
        self.release_claims(&self.claim_keys(subnet, ipv6_subnet), &holder)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SubnetStore for V2Registry {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Replaces our record's attributes `current` with `next` and refreshes its TTL (keeps
    /// none for a `reservation`), only while it still holds `current` (`LeaseLost`
    /// otherwise). Returns the new expiration.
    async fn rewrite_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        current: &LeaseAttrs,
        next: &LeaseAttrs,
        reservation: bool,
    ) -> Result<Option<SystemTime>, SubnetError> {
        let current = current.to_json();
        let put = self
            .put_lease(
                "renew",
                subnet,
                ipv6_subnet,
                next,
                Precondition::Holds(&current),
                reservation,
            )
            .await;
        let expiration = match put {
            Err(e) if is(&e, code::KEY_NOT_FOUND) || is(&e, code::TEST_FAILED) => {
                return Err(SubnetError::LeaseLost)
            }
            Err(e) => return Err(e.into()),
            Ok(expiration) => expiration,
        };
        let ttl = self.ttl_secs();
        let ttl = (!reservation).then_some(ttl.as_str());
        self.refresh_claims(subnet, ipv6_subnet, ttl).await?;
        Ok(expiration)
    }

    fn spawn_watch(&self, tx: mpsc::Sender<WatchMsg>, stop: Stop) {
        drop(tokio::spawn(watch_subnets(self.clone(), tx, stop)));
    }
}

/// The index a write was made at.
fn written_at(served: &Served) -> u64 {
    served
        .response
        .node
        .as_ref()
        .map_or(0, |n| n.modified_index)
}

fn holder_of(subnet: Ipv4Net, ipv6_subnet: Option<Ipv6Net>) -> String {
    subnet_key(subnet, ipv6_subnet)
}

/// A write that asked for a TTL was answered with a node without one.
fn no_ttl(op: &'static str, key: &str) -> SubnetError {
    V2Error::Decode {
        op,
        key: key.to_owned(),
        detail: "the written key has no TTL".into(),
    }
    .into()
}
