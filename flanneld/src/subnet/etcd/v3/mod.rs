//! The etcd v3 store: the network config, lease records and their watch.
//!
//! Keys and values are upstream's (`<prefix>/config`, `<prefix>/subnets/<key>` holding
//! [`LeaseAttrs`] JSON on a 24 h etcd lease), so our nodes and upstream's share one store.

mod watch;
mod write;

pub use watch::{watch_subnets, watch_subnets_from};

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, KeyValue, TlsOptions,
};
use ipnet::{Ipv4Net, Ipv6Net};

use crate::subnet::store::{join_key, EtcdConfig, SubnetError};
use crate::subnet::{parse_subnet_key, subnet_key, Lease, LeaseAttrs};

/// How long a lease record lives unless renewed (upstream `subnetTTL`).
pub const SUBNET_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Unary requests that take longer than this are treated as failed and retried by callers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to the store plus the key layout. Cheap to clone (the client multiplexes).
#[derive(Clone)]
pub struct Registry {
    client: Client,
    prefix: String,
    ttl: Duration,
    /// The etcd lease of a create that lost its race, kept for the next create instead of
    /// revoked: a lost race then costs one Txn, not a grant, a Txn and a revoke, each a raft
    /// proposal. When no create follows, it expires keyless, as upstream leaves the lease of
    /// every renewal.
    spare: Arc<Mutex<Option<Grant>>>,
}

/// An etcd lease and when it runs out.
#[derive(Debug, Clone, Copy)]
struct Grant {
    id: i64,
    expiration: SystemTime,
}

async fn timed<T>(
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, SubnetError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(SubnetError::Timeout(REQUEST_TIMEOUT)),
    }
}

fn read_file(what: &'static str, path: &str) -> Result<Vec<u8>, SubnetError> {
    std::fs::read(path).map_err(|source| SubnetError::TlsFile {
        what,
        path: path.to_owned(),
        source,
    })
}

impl Registry {
    /// Builds the client. Nothing is dialled until the first request, so an unreachable etcd
    /// shows up as request errors (which callers retry), as with upstream's gRPC client.
    pub async fn connect(cfg: &EtcdConfig, ttl: Duration) -> Result<Registry, SubnetError> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            // A half-open connection would otherwise stall a watch forever.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if !cfg.keyfile.is_empty() && !cfg.certfile.is_empty() {
            let mut tls = TlsOptions::new().identity(Identity::from_pem(
                read_file("certificate", &cfg.certfile)?,
                read_file("key", &cfg.keyfile)?,
            ));
            if !cfg.cafile.is_empty() {
                tls = tls.ca_certificate(Certificate::from_pem(read_file("CA", &cfg.cafile)?));
            }
            opts = opts.with_tls(tls);
        } else {
            log::warn!("no certificate provided: connecting to etcd with http. This is insecure");
        }
        if !cfg.username.is_empty() || !cfg.password.is_empty() {
            opts = opts.with_user(cfg.username.clone(), cfg.password.clone());
        }
        let client = Client::connect(&cfg.endpoints, Some(opts)).await?;
        Ok(Registry {
            client,
            prefix: cfg.prefix.clone(),
            ttl,
            spare: Arc::default(),
        })
    }

    pub fn config_key(&self) -> String {
        join_key(&self.prefix, "config")
    }

    /// The directory of lease records, with a trailing slash so a prefix watch cannot match
    /// siblings such as `subnets-old`.
    pub fn subnets_dir(&self) -> String {
        format!("{}/", join_key(&self.prefix, "subnets"))
    }

    pub fn subnet_path(&self, subnet: Ipv4Net, ipv6_subnet: Option<Ipv6Net>) -> String {
        join_key(
            &join_key(&self.prefix, "subnets"),
            &subnet_key(subnet, ipv6_subnet),
        )
    }

    /// The raw network config JSON.
    pub async fn get_network_config(&self) -> Result<String, SubnetError> {
        let mut kv = self.client.kv_client();
        let resp = timed(kv.get(self.config_key(), None)).await?;
        let kv = resp.kvs().first().ok_or(SubnetError::ConfigNotFound)?;
        Ok(String::from_utf8_lossy(kv.value()).into_owned())
    }

    /// All lease records in one Range, and the store revision they were read at. A record's
    /// `expiration` is the time it was read: etcd keeps lifetimes on its leases, one lookup
    /// per record (upstream makes them), and nothing here reads a peer's expiration; this
    /// node's own comes from its grant and renewals.
    pub async fn list_subnets(&self) -> Result<(Vec<Lease>, i64), SubnetError> {
        let mut kv = self.client.kv_client();
        let resp = timed(kv.get(self.subnets_dir(), Some(GetOptions::new().with_prefix()))).await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let now = SystemTime::now();
        let leases = resp
            .kvs()
            .iter()
            .filter_map(|kv| decode_record(kv, now))
            .collect();
        Ok((leases, revision))
    }

    /// The client, for the watch loop.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }
}

/// A lease record's key and value as a [`Lease`] expiring at `expiration`, or never when the
/// record is on no etcd lease (a reservation); `None`, with a warning, for keys that are not
/// lease keys and values that do not decode (both skipped, as upstream does).
pub(super) fn decode_record(kv: &KeyValue, expiration: SystemTime) -> Option<Lease> {
    let key = String::from_utf8_lossy(kv.key());
    let Some((subnet, ipv6_subnet)) = parse_subnet_key(&key) else {
        log::warn!("Ignoring bad subnet node {key}");
        return None;
    };
    let attrs = match LeaseAttrs::from_json(kv.value()) {
        Ok(attrs) => attrs,
        Err(e) => {
            log::warn!("Ignoring lease {key}: {e}");
            return None;
        }
    };
    Some(Lease {
        // The etcd manager always treats leases as carrying IPv4 (upstream does the same).
        enable_ipv4: true,
        enable_ipv6: ipv6_subnet.is_some(),
        subnet,
        ipv6_subnet,
        attrs,
        expiration: (kv.lease() != 0).then_some(expiration),
        created: u64::try_from(kv.create_revision()).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use conformance::bench::scale::etcd_metrics::{GrpcCalls, Reading};
    use conformance::{Etcd, EtcdOptions};
    use netconf::flannel::NetworkConfig;

    use super::*;
    use crate::subnet::store::{LeaseStore, Owner};

    fn attrs(last: u8) -> LeaseAttrs {
        LeaseAttrs {
            public_ip: Ipv4Addr::new(192, 168, 1, last),
            public_ipv6: None,
            backend_type: "vxlan".into(),
            backend_data: None,
            backend_v6_data: None,
        }
    }

    async fn registry(etcd: &Etcd, ttl: Duration) -> Registry {
        let cfg = EtcdConfig {
            endpoints: vec![etcd.endpoint()],
            prefix: "/coreos.com/network".into(),
            ..EtcdConfig::default()
        };
        Registry::connect(&cfg, ttl).await.unwrap()
    }

    fn calls(etcd: &Etcd) -> GrpcCalls {
        Reading::read(etcd.client_addr()).unwrap().calls
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_lease_of_a_lost_race_serves_the_next_create() {
        let etcd = Etcd::start(EtcdOptions::loopback()).expect("etcd starts");
        let ttl = Duration::from_secs(20);
        let winner = registry(&etcd, ttl).await;
        let loser = registry(&etcd, ttl).await;
        let subnet = |n: u8| format!("10.3.{n}.0/24").parse::<Ipv4Net>().unwrap();
        let before = calls(&etcd);
        winner
            .create_subnet(subnet(1), None, &attrs(1), None)
            .await
            .unwrap();
        let lost = loser.create_subnet(subnet(1), None, &attrs(2), None).await;
        assert!(matches!(lost, Err(SubnetError::AlreadyExists)), "{lost:?}");
        let expiration = loser
            .create_subnet(subnet(2), None, &attrs(2), None)
            .await
            .unwrap();
        let used = calls(&etcd).since(&before);
        assert_eq!(used.get("etcdserverpb.Lease/LeaseGrant"), 2, "{used:?}");
        assert_eq!(used.get("etcdserverpb.Lease/LeaseRevoke"), 0, "{used:?}");
        let left = expiration.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(15), "{left:?}");
        let key = loser.subnet_path(subnet(2), None);
        let listed = etcd.etcdctl(&["get", "-w", "json", "--", &key]).unwrap();
        assert!(
            listed.contains("\"lease\":"),
            "the record is on a lease: {listed}"
        );

        // A spare that has lost a tenth of its lifetime is revoked, not used.
        let lost = loser.create_subnet(subnet(1), None, &attrs(2), None).await;
        assert!(matches!(lost, Err(SubnetError::AlreadyExists)), "{lost:?}");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let before = calls(&etcd);
        loser
            .create_subnet(subnet(3), None, &attrs(3), None)
            .await
            .unwrap();
        let used = calls(&etcd).since(&before);
        assert_eq!(used.get("etcdserverpb.Lease/LeaseGrant"), 1, "{used:?}");
        assert_eq!(used.get("etcdserverpb.Lease/LeaseRevoke"), 1, "{used:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn listing_the_records_is_one_range_without_lease_lookups() {
        let etcd = Etcd::start(EtcdOptions::loopback()).expect("etcd starts");
        let reg = registry(&etcd, Duration::from_secs(600)).await;
        for n in 1..=20u8 {
            let subnet = format!("10.3.{n}.0/24").parse::<Ipv4Net>().unwrap();
            reg.create_subnet(subnet, None, &attrs(n), None)
                .await
                .unwrap();
        }
        let before = calls(&etcd);
        let read_from = SystemTime::now();
        let (leases, _) = reg.list_subnets().await.unwrap();
        let used = calls(&etcd).since(&before);
        assert_eq!(leases.len(), 20);
        // A peer's lifetime would cost one call per record (5,000 at a large start-up).
        assert_eq!(
            used.get("etcdserverpb.Lease/LeaseTimeToLive"),
            0,
            "{used:?}"
        );
        assert_eq!(used.get("etcdserverpb.KV/Range"), 1, "{used:?}");
        assert!(leases.iter().all(|l| l.expiration >= Some(read_from)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_listing_since_a_revision_holds_only_later_writes() {
        let etcd = Etcd::start(EtcdOptions::loopback()).expect("etcd starts");
        let reg = registry(&etcd, Duration::from_secs(600)).await;
        let mut net = NetworkConfig::parse(br#"{"Network":"10.3.0.0/16"}"#).unwrap();
        net.check().unwrap();
        let owner = Owner::new(&net, &attrs(2));
        let subnet = |n: u8| format!("10.3.{n}.0/24").parse::<Ipv4Net>().unwrap();
        for n in 1..=3 {
            reg.create_subnet(subnet(n), None, &attrs(n), None)
                .await
                .unwrap();
        }
        let all = reg.list_slots(&owner, None).await.unwrap();
        assert!(!all.changes_only);
        assert_eq!(all.slots.len(), 3);
        let decoded: Vec<_> = all.slots.iter().filter(|s| s.attrs.is_some()).collect();
        assert_eq!(decoded.len(), 1, "only our own record is decoded");
        assert_eq!(decoded[0].subnet, subnet(2));
        let since = all.revision.expect("a revision");

        reg.create_subnet(subnet(4), None, &attrs(4), None)
            .await
            .unwrap();
        reg.update_subnet(subnet(1), None, &attrs(1), false)
            .await
            .unwrap();
        reg.delete_subnet(subnet(3), None).await.unwrap();
        let changed = reg.list_slots(&owner, Some(since)).await.unwrap();
        assert!(changed.changes_only);
        let mut got: Vec<_> = changed.slots.iter().map(|s| s.subnet).collect();
        got.sort();
        assert_eq!(got, vec![subnet(1), subnet(4)]);
        assert!(changed.revision > Some(since));
        let none = reg.list_slots(&owner, changed.revision).await.unwrap();
        assert!(none.slots.is_empty());
        assert_eq!(reg.count_records().await.unwrap(), Some(3));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn each_family_subnet_has_one_record() {
        let etcd = Etcd::start(EtcdOptions::loopback()).expect("etcd starts");
        let reg = registry(&etcd, Duration::from_secs(600)).await;
        let v4 = |s: &str| s.parse::<Ipv4Net>().unwrap();
        let v6 = |s: &str| Some(s.parse::<Ipv6Net>().unwrap());
        let a = (v4("10.3.5.0/24"), v6("fc00::1:0/112"));
        reg.create_subnet(a.0, a.1, &attrs(1), None).await.unwrap();
        // The race of the field report: same IPv4 subnet, another IPv6 one.
        let same_v4 = reg
            .create_subnet(a.0, v6("fc00::2:0/112"), &attrs(2), None)
            .await;
        assert!(
            matches!(same_v4, Err(SubnetError::AlreadyExists)),
            "{same_v4:?}"
        );
        // An IPv4-only record cannot take a dual-stack record's IPv4 subnet, nor the reverse.
        let v4_only = reg.create_subnet(a.0, None, &attrs(2), None).await;
        assert!(
            matches!(v4_only, Err(SubnetError::AlreadyExists)),
            "{v4_only:?}"
        );
        reg.create_subnet(v4("10.3.7.0/24"), None, &attrs(3), None)
            .await
            .unwrap();
        let onto_v4_only = reg
            .create_subnet(v4("10.3.7.0/24"), v6("fc00::7:0/112"), &attrs(4), None)
            .await;
        assert!(matches!(onto_v4_only, Err(SubnetError::AlreadyExists)));
        // Another IPv4 subnet, the same IPv6 one: the claim names its holder.
        let c = (v4("10.3.6.0/24"), v6("fc00::1:0/112"));
        match reg.create_subnet(c.0, c.1, &attrs(5), None).await {
            Err(SubnetError::Claimed { holder, .. }) => {
                assert_eq!(holder, "10.3.5.0-24&fc00::1:0-112")
            }
            other => panic!("{other:?}"),
        }
        // A live holder's claim cannot be taken over.
        let live = reg
            .create_subnet(c.0, c.1, &attrs(5), Some("10.3.5.0-24&fc00::1:0-112"))
            .await;
        assert!(matches!(live, Err(SubnetError::Claimed { .. })), "{live:?}");
        // Releasing the record releases its claim.
        reg.delete_subnet(a.0, a.1).await.unwrap();
        reg.create_subnet(c.0, c.1, &attrs(5), None).await.unwrap();
        let claim = crate::subnet::claims::v6_claim_key("/coreos.com/network", c.1.unwrap());
        assert_eq!(
            etcd.get(&claim).unwrap().as_deref(),
            Some("10.3.6.0-24&fc00::1:0-112")
        );
        // A record deleted by hand leaves its claim behind, which is taken over.
        etcd.delete(&reg.subnet_path(c.0, c.1)).unwrap();
        let d = (v4("10.3.8.0/24"), c.1);
        let stale = reg.create_subnet(d.0, d.1, &attrs(6), None).await;
        assert!(
            matches!(stale, Err(SubnetError::Claimed { .. })),
            "{stale:?}"
        );
        reg.create_subnet(d.0, d.1, &attrs(6), Some("10.3.6.0-24&fc00::1:0-112"))
            .await
            .unwrap();
        assert_eq!(
            etcd.get(&claim).unwrap().as_deref(),
            Some("10.3.8.0-24&fc00::1:0-112")
        );
        // IPv6-only records all carry 0.0.0.0/0, which is nobody's subnet.
        for (n, s6) in ["fc00::a:0/112", "fc00::b:0/112"].into_iter().enumerate() {
            reg.create_subnet(Ipv4Net::default(), v6(s6), &attrs(10 + n as u8), None)
                .await
                .unwrap();
        }
        // Renewal moves the claim to the new etcd lease with the record.
        reg.renew_subnet(d.0, d.1, &attrs(6)).await.unwrap();
        let listed = etcd.etcdctl(&["get", "-w", "json", "--", &claim]).unwrap();
        let record = etcd
            .etcdctl(&["get", "-w", "json", "--", &reg.subnet_path(d.0, d.1)])
            .unwrap();
        let lease_of = |json: &str| {
            serde_json::from_str::<serde_json::Value>(json).unwrap()["kvs"][0]["lease"].clone()
        };
        assert_eq!(lease_of(&listed), lease_of(&record));
    }
}
