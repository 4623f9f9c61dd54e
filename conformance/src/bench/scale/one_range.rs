//! The listing change the lease benchmark proposes, measured without editing the daemon:
//! a [`LeaseStore`] that answers `list_leases` with one etcd Range and delegates every
//! write to flanneld's own [`Registry`].
//!
//! `Registry::list_subnets` (what the shipped `LeaseStore for Registry` calls) asks etcd for
//! every record's remaining TTL, one LeaseTimeToLive call per record, so each acquisition
//! attempt costs as many calls as the cluster has nodes. Acquisition only needs who holds
//! which subnet; the expiration it would read is never used.

use std::time::SystemTime;

use etcd_client::{Client, GetOptions};
use flanneld::subnet::etcd::{Registry, SubnetError};
use flanneld::subnet::etcd_store::LeaseStore;
use flanneld::subnet::{parse_subnet_key, Lease, LeaseAttrs};
use ipnet::{Ipv4Net, Ipv6Net};

pub struct OneRange {
    registry: Registry,
    client: Client,
    dir: String,
}

impl OneRange {
    /// `client` should be a connection of its own, as the registry's is.
    pub fn new(registry: Registry, client: Client) -> OneRange {
        let dir = registry.subnets_dir();
        OneRange {
            registry,
            client,
            dir,
        }
    }
}

impl LeaseStore for OneRange {
    async fn list_leases(&self) -> Result<Vec<Lease>, SubnetError> {
        let mut kv = self.client.kv_client();
        let resp = kv
            .get(self.dir.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let (subnet, ipv6_subnet) = parse_subnet_key(&String::from_utf8_lossy(kv.key()))?;
                let attrs = LeaseAttrs::from_json(kv.value()).ok()?;
                Some(Lease {
                    enable_ipv4: true,
                    enable_ipv6: ipv6_subnet.is_some(),
                    subnet,
                    ipv6_subnet,
                    attrs,
                    // Never read by acquisition (the point of this listing).
                    expiration: SystemTime::UNIX_EPOCH,
                })
            })
            .collect())
    }

    async fn create_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
    ) -> Result<SystemTime, SubnetError> {
        self.registry
            .create_subnet(subnet, ipv6_subnet, attrs)
            .await
    }

    async fn update_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
    ) -> Result<SystemTime, SubnetError> {
        self.registry
            .update_subnet(subnet, ipv6_subnet, attrs)
            .await
    }

    async fn delete_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
    ) -> Result<(), SubnetError> {
        self.registry.delete_subnet(subnet, ipv6_subnet).await
    }
}
