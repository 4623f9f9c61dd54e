//! The lease records (etcd v3) as a [`LeaseStore`] and [`SubnetStore`]: list, create,
//! reuse, renew, delete, watch.
//!
//! A create claims each family's subnet for this node alone (see [`crate::subnet::claims`]):
//! one transaction checks that no record holds the IPv4 subnet (the `10.244.53.0-24` key and
//! every `10.244.53.0-24&…` key) and that no claim holds the IPv6 one, then writes the record
//! and the IPv6 claim on one etcd lease. Upstream's create checks only the exact key
//! (`pkg/subnet/etcd/registry.go` `createSubnet`), which let two nodes share a subnet.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use ipnet::{Ipv4Net, Ipv6Net};
use tokio::sync::mpsc;

use super::{timed, watch_subnets, Grant, Registry};
use crate::stop::Stop;
use crate::subnet::claims::{has_v4, v6_claim_key};
use crate::subnet::store::{LeaseStore, Listing, Owner, Slot, SubnetError, SubnetStore, WatchMsg};
use crate::subnet::{subnet_key, LeaseAttrs};

impl Registry {
    async fn grant(&self) -> Result<(i64, SystemTime), SubnetError> {
        let mut lc = self.client.lease_client();
        let secs = i64::try_from(self.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let resp = timed(lc.grant(secs, None)).await?;
        let ttl = Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(0));
        Ok((resp.id(), SystemTime::now() + ttl))
    }

    /// A lease for a new record: the spare one while nearly all of its lifetime is left (so
    /// the record lives about as long as on a fresh grant, and the lease cannot run out
    /// before the put), else a fresh grant.
    async fn grant_for_create(&self) -> Result<Grant, SubnetError> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(spare) = spare {
            if spare.expiration > SystemTime::now() + self.ttl.mul_f64(0.9) {
                return Ok(spare);
            }
            self.revoke(spare.id).await;
        }
        let (id, expiration) = self.grant().await?;
        Ok(Grant { id, expiration })
    }

    async fn keep_spare(&self, grant: Grant) {
        let displaced = self
            .spare
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(grant);
        if let Some(old) = displaced {
            self.revoke(old.id).await;
        }
    }

    async fn revoke(&self, id: i64) {
        let mut lc = self.client.lease_client();
        if let Err(e) = timed(lc.revoke(id)).await {
            log::warn!("failed to revoke unused etcd lease {id:x}: {e}");
        }
    }

    fn v6_claim(&self, ipv6_subnet: Option<Ipv6Net>) -> Option<String> {
        ipv6_subnet.map(|s| v6_claim_key(&self.prefix, s))
    }

    /// The puts of a record and of its IPv6 claim, on etcd lease `lease` (none: 0).
    fn record_puts(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        value: String,
        lease: i64,
    ) -> Vec<TxnOp> {
        let opts = || (lease != 0).then(|| PutOptions::new().with_lease(lease));
        let mut ops = vec![TxnOp::put(
            self.subnet_path(subnet, ipv6_subnet),
            value,
            opts(),
        )];
        if let Some(claim) = self.v6_claim(ipv6_subnet) {
            ops.push(TxnOp::put(claim, subnet_key(subnet, ipv6_subnet), opts()));
        }
        ops
    }

    /// Renews our record on a fresh lease, but only while it still holds exactly what we
    /// wrote: after an expiry another node may own the subnet, and a blind put (upstream's
    /// renewal) would silently take it back. `LeaseLost` tells the caller to re-acquire.
    pub async fn renew_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
    ) -> Result<SystemTime, SubnetError> {
        let renewed = self.rewrite_subnet(subnet, ipv6_subnet, attrs, attrs, false);
        Ok(renewed.await?.unwrap_or_else(SystemTime::now))
    }
}

#[async_trait]
impl LeaseStore for Registry {
    /// The records for acquisition in one Range; with `since`, only those modified after
    /// that revision. etcd (3.4) still reads every record to filter them, but neither
    /// encodes nor sends the others, and the client decodes none of them: the answer is the
    /// few records written since, not all of them (1.2 MB with 5,000 nodes).
    async fn list_slots(&self, owner: &Owner, since: Option<i64>) -> Result<Listing, SubnetError> {
        let mut opts = GetOptions::new().with_prefix();
        if let Some(revision) = since {
            opts = opts.with_min_mod_revision(revision + 1);
        }
        let mut kv = self.client.kv_client();
        let resp = timed(kv.get(self.subnets_dir(), Some(opts))).await?;
        let slots = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                Slot::from_record(&key, kv.value(), kv.lease() == 0, owner)
            })
            .collect();
        Ok(Listing {
            slots,
            revision: resp.header().map(|h| h.revision()),
            changes_only: since.is_some(),
        })
    }

    /// How many keys the subnets directory holds: a count-only Range, which etcd answers
    /// from its index without reading a record.
    async fn count_records(&self) -> Result<Option<usize>, SubnetError> {
        let opts = GetOptions::new().with_prefix().with_count_only();
        let mut kv = self.client.kv_client();
        let resp = timed(kv.get(self.subnets_dir(), Some(opts))).await?;
        Ok(Some(usize::try_from(resp.count()).unwrap_or(0)))
    }

    /// Creates the record only if nothing holds its subnets: no record with its key or its
    /// IPv4 subnet, no claim on its IPv6 subnet, or, with `replacing`, a claim that still
    /// names that record while the record is gone (a stale claim). `AlreadyExists` when a
    /// record was first, `Claimed` when only the IPv6 claim stood in the way. Returns the
    /// expiration.
    async fn create_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        replacing: Option<&str>,
    ) -> Result<SystemTime, SubnetError> {
        let key = self.subnet_path(subnet, ipv6_subnet);
        let mut guards = vec![Compare::version(key.clone(), CompareOp::Equal, 0)];
        let count = || Some(GetOptions::new().with_count_only());
        let mut otherwise = Vec::new();
        if has_v4(subnet) {
            let v4_only = self.subnet_path(subnet, None);
            let dual = format!("{v4_only}&");
            guards.push(Compare::version(v4_only.clone(), CompareOp::Equal, 0));
            guards.push(Compare::version(dual.clone(), CompareOp::Equal, 0).with_prefix());
            otherwise.push(TxnOp::get(v4_only, count()));
            otherwise.push(TxnOp::get(
                dual,
                Some(GetOptions::new().with_prefix().with_count_only()),
            ));
        } else {
            otherwise.push(TxnOp::get(key.clone(), count()));
        }
        let claim = self.v6_claim(ipv6_subnet);
        if let Some(claim) = &claim {
            match replacing {
                None => guards.push(Compare::version(claim.clone(), CompareOp::Equal, 0)),
                Some(holder) => {
                    let gone = crate::subnet::etcd::join_key(&self.subnets_dir(), holder);
                    guards.push(Compare::value(claim.clone(), CompareOp::Equal, holder));
                    guards.push(Compare::version(gone, CompareOp::Equal, 0));
                }
            }
            otherwise.push(TxnOp::get(claim.clone(), None));
        }
        let grant = self.grant_for_create().await?;
        let txn = Txn::new()
            .when(guards)
            .and_then(self.record_puts(subnet, ipv6_subnet, attrs.to_json(), grant.id))
            .or_else(otherwise);
        let mut kv = self.client.kv_client();
        match timed(kv.txn(txn)).await {
            Ok(resp) if resp.succeeded() => Ok(grant.expiration),
            Ok(resp) => {
                self.keep_spare(grant).await;
                let mut records = 0;
                let mut holder = None;
                for op in resp.op_responses() {
                    let TxnOpResponse::Get(get) = op else {
                        continue;
                    };
                    match get.kvs().first() {
                        Some(kv) if claim.as_deref().map(str::as_bytes) == Some(kv.key()) => {
                            holder = Some((
                                String::from_utf8_lossy(kv.value()).into_owned(),
                                kv.mod_revision(),
                            ));
                        }
                        _ => records += get.count(),
                    }
                }
                match (records, holder, ipv6_subnet) {
                    (0, Some((holder, revision)), Some(ipv6_subnet)) => Err(SubnetError::Claimed {
                        ipv6_subnet,
                        holder,
                        revision,
                    }),
                    _ => Err(SubnetError::AlreadyExists),
                }
            }
            Err(e) => {
                // The put may have happened after all: revoking removes a record nobody
                // would renew.
                self.revoke(grant.id).await;
                Err(e)
            }
        }
    }

    /// Overwrites the record (and its IPv6 claim) on a fresh lease (reuse), or with
    /// `reservation` on none. The previous etcd lease is left to expire on its own, keyless,
    /// as upstream does.
    async fn update_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        reservation: bool,
    ) -> Result<Option<SystemTime>, SubnetError> {
        let mut kv = self.client.kv_client();
        if reservation {
            let txn =
                Txn::new().and_then(self.record_puts(subnet, ipv6_subnet, attrs.to_json(), 0));
            timed(kv.txn(txn)).await?;
            return Ok(None);
        }
        let (id, expiration) = self.grant().await?;
        let txn = Txn::new().and_then(self.record_puts(subnet, ipv6_subnet, attrs.to_json(), id));
        if let Err(e) = timed(kv.txn(txn)).await {
            self.revoke(id).await;
            return Err(e);
        }
        Ok(Some(expiration))
    }

    /// Upstream's etcd v3 code turns a reservation its node reuses into a lease (it reads the
    /// missing lease's lifetime as -1 s, never as "none").
    fn keeps_reservations(&self) -> bool {
        false
    }

    /// Deletes the record, and its IPv6 claim while the claim names it.
    async fn delete_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
    ) -> Result<(), SubnetError> {
        let key = self.subnet_path(subnet, ipv6_subnet);
        let mut kv = self.client.kv_client();
        let Some(claim) = self.v6_claim(ipv6_subnet) else {
            timed(kv.delete(key, None)).await?;
            return Ok(());
        };
        let txn = Txn::new()
            .when([Compare::value(
                claim.clone(),
                CompareOp::Equal,
                subnet_key(subnet, ipv6_subnet),
            )])
            .and_then([TxnOp::delete(key.clone(), None), TxnOp::delete(claim, None)])
            .or_else([TxnOp::delete(key, None)]);
        timed(kv.txn(txn)).await?;
        Ok(())
    }
}

#[async_trait]
impl SubnetStore for Registry {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Replaces our record's attributes `current` with `next` on a fresh lease (none for a
    /// `reservation`), only while it still holds `current` (`LeaseLost` otherwise); the IPv6
    /// claim moves with it. Returns the new expiration.
    async fn rewrite_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        current: &LeaseAttrs,
        next: &LeaseAttrs,
        reservation: bool,
    ) -> Result<Option<SystemTime>, SubnetError> {
        let key = self.subnet_path(subnet, ipv6_subnet);
        let (id, expiration) = match reservation {
            true => (0, None),
            false => {
                let (id, expiration) = self.grant().await?;
                (id, Some(expiration))
            }
        };
        let txn = Txn::new()
            .when([Compare::value(key, CompareOp::Equal, current.to_json())])
            .and_then(self.record_puts(subnet, ipv6_subnet, next.to_json(), id));
        let mut kv = self.client.kv_client();
        let result = timed(kv.txn(txn)).await;
        if !matches!(&result, Ok(resp) if resp.succeeded()) && id != 0 {
            self.revoke(id).await;
        }
        match result {
            Ok(resp) if resp.succeeded() => Ok(expiration),
            Ok(_) => Err(SubnetError::LeaseLost),
            Err(e) => Err(e),
        }
    }

    fn spawn_watch(&self, tx: mpsc::Sender<WatchMsg>, stop: Stop) {
        drop(tokio::spawn(watch_subnets(self.clone(), tx, stop)));
    }
}
