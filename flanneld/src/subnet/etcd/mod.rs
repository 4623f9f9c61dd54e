//! The etcd v3 subnet manager: the network config, lease records and their watch.
//!
//! Keys and values are upstream's (`<prefix>/config`, `<prefix>/subnets/<key>` holding
//! [`LeaseAttrs`] JSON on a 24 h etcd lease), so our nodes and upstream's share one store.

mod acquire;
mod watch;

pub use acquire::{acquire_lease, AcquireRequest};
pub use watch::{watch_subnets, watch_subnets_from, WatchMsg};

use std::time::{Duration, SystemTime};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    PutOptions, TlsOptions, Txn, TxnOp,
};
use ipnet::{Ipv4Net, Ipv6Net};

use super::{parse_subnet_key, subnet_key, AttrsError, Lease, LeaseAttrs};

/// How long a lease record lives unless renewed (upstream `subnetTTL`).
pub const SUBNET_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Unary requests that take longer than this are treated as failed and retried by callers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Lease lookups in flight at once while listing (etcd serves ~100 streams per connection).
const LOOKUP_CONCURRENCY: usize = 64;

/// Upstream's message for a missing `<prefix>/config`, word for word.
pub const NOT_FOUND_V3: &str =
    "flannel config not found in etcd store. Did you create your config using etcdv3 API?";

#[derive(Debug, thiserror::Error)]
pub enum SubnetError {
    #[error("{NOT_FOUND_V3}")]
    ConfigNotFound,
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd request timed out after {0:?}")]
    Timeout(Duration),
    #[error("our lease record is gone or was overwritten")]
    LeaseLost,
    #[error("subnet already exists")]
    AlreadyExists,
    #[error("out of subnets")]
    OutOfSubnets,
    #[error("max retries reached trying to acquire a subnet")]
    MaxRetries,
    #[error("reading {what} {path}: {source}")]
    TlsFile {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("etcd request task failed: {0}")]
    Task(String),
    #[error("{key}: {source}")]
    BadRecord { key: String, source: AttrsError },
    #[error(transparent)]
    V2(#[from] crate::subnet::etcd_v2::V2Error),
}

/// How to reach etcd (the `--etcd-*` flags).
#[derive(Debug, Clone, Default)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub keyfile: String,
    pub certfile: String,
    pub cafile: String,
    pub username: String,
    pub password: String,
}

/// A connection to the store plus the key layout. Cheap to clone (the client multiplexes).
#[derive(Clone)]
pub struct Registry {
    client: Client,
    prefix: String,
    ttl: Duration,
}

/// Go's `path.Join(prefix, elem)`: joined with `/` and cleaned (`.`/`..`/double slashes).
pub fn join_key(prefix: &str, elem: &str) -> String {
    let joined = format!("{prefix}/{elem}");
    let rooted = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_owned(),
        (false, false) => body,
    }
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
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
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

    /// When the etcd lease `id` runs out (`now` for a key without a lease).
    async fn expiration_of(&self, id: i64) -> Result<SystemTime, SubnetError> {
        if id == 0 {
            return Ok(SystemTime::now());
        }
        let mut lc = self.client.lease_client();
        let ttl = timed(lc.time_to_live(id, None)).await?.ttl();
        Ok(SystemTime::now() + Duration::from_secs(u64::try_from(ttl).unwrap_or(0)))
    }

    /// Decodes a lease record; `Ok(None)` for keys that are not lease keys (skipped, as
    /// upstream does).
    pub async fn lease_from_kv(&self, kv: &KeyValue) -> Result<Option<Lease>, SubnetError> {
        let Some(mut lease) = decode_record(kv, SystemTime::now())? else {
            return Ok(None);
        };
        lease.expiration = self.expiration_of(kv.lease()).await?;
        Ok(Some(lease))
    }

    /// Every lease record in one Range request, without lifetime lookups: what acquisition
    /// needs (who holds which subnet, and with which PublicIP). Looking up each record's
    /// remaining lifetime cost one etcd call per record per attempt, 1,662 calls per lease
    /// with 1,000 nodes starting at once (`scripts/bench-scale.sh`). The records'
    /// `expiration` is therefore unknown here and set to the time of the listing.
    pub async fn list_records(&self) -> Result<Vec<Lease>, SubnetError> {
        let mut kv = self.client.kv_client();
        let resp =
            timed(kv.get(self.subnets_dir(), Some(GetOptions::new().with_prefix()))).await?;
        let now = SystemTime::now();
        let mut leases = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            match decode_record(kv, now) {
                Ok(Some(lease)) => leases.push(lease),
                Ok(None) => {}
                Err(SubnetError::BadRecord { key, source }) => {
                    log::warn!("Ignoring lease {key}: {source}")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(leases)
    }

    /// All lease records and the store revision they were read at. The expiration of each
    /// record costs one lease lookup; they run concurrently so a relist of a large cluster
    /// takes a few round trips, not one per node.
    pub async fn list_subnets(&self) -> Result<(Vec<Lease>, i64), SubnetError> {
        let mut kv = self.client.kv_client();
        let mut resp =
            timed(kv.get(self.subnets_dir(), Some(GetOptions::new().with_prefix()))).await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let kvs = resp.take_kvs();
        let mut slots: Vec<Option<Lease>> = vec![None; kvs.len()];
        for (chunk_no, chunk) in kvs.chunks(LOOKUP_CONCURRENCY).enumerate() {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, kv) in chunk.iter().enumerate() {
                let (reg, kv) = (self.clone(), kv.clone());
                let slot = chunk_no * LOOKUP_CONCURRENCY + i;
                tasks.spawn(async move { (slot, reg.lease_from_kv(&kv).await) });
            }
            while let Some(joined) = tasks.join_next().await {
                let (slot, result) = joined.map_err(|e| SubnetError::Task(e.to_string()))?;
                match result {
                    Ok(lease) => slots[slot] = lease,
                    Err(SubnetError::BadRecord { key, source }) => {
                        log::warn!("Ignoring lease {key}: {source}")
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((slots.into_iter().flatten().collect(), revision))
    }

    async fn grant(&self) -> Result<(i64, SystemTime), SubnetError> {
        let mut lc = self.client.lease_client();
        let secs = i64::try_from(self.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let resp = timed(lc.grant(secs, None)).await?;
        let ttl = Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(0));
        Ok((resp.id(), SystemTime::now() + ttl))
    }

    async fn revoke(&self, id: i64) {
        let mut lc = self.client.lease_client();
        if let Err(e) = timed(lc.revoke(id)).await {
            log::warn!("failed to revoke unused etcd lease {id:x}: {e}");
        }
    }

    /// Creates the record only if the key does not exist (compare-and-swap on its version);
    /// `AlreadyExists` when another node was first. Returns the expiration.
    pub async fn create_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
    ) -> Result<SystemTime, SubnetError> {
        let key = self.subnet_path(subnet, ipv6_subnet);
        let (id, expiration) = self.grant().await?;
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                attrs.to_json(),
                Some(PutOptions::new().with_lease(id)),
            )]);
        let mut kv = self.client.kv_client();
        match timed(kv.txn(txn)).await {
            Ok(resp) if resp.succeeded() => Ok(expiration),
            Ok(_) => {
                self.revoke(id).await;
                Err(SubnetError::AlreadyExists)
            }
            Err(e) => {
                self.revoke(id).await;
                Err(e)
            }
        }
    }

    /// Overwrites the record on a fresh lease (renewal and reuse). The previous etcd lease is
    /// left to expire on its own, keyless, as upstream does.
    pub async fn update_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
    ) -> Result<SystemTime, SubnetError> {
        let key = self.subnet_path(subnet, ipv6_subnet);
        let (id, expiration) = self.grant().await?;
        let mut kv = self.client.kv_client();
        if let Err(e) =
            timed(kv.put(key, attrs.to_json(), Some(PutOptions::new().with_lease(id)))).await
        {
            self.revoke(id).await;
            return Err(e);
        }
        Ok(expiration)
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
        let key = self.subnet_path(subnet, ipv6_subnet);
        let value = attrs.to_json();
        let (id, expiration) = self.grant().await?;
        let txn = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, value.clone())])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(id)),
            )]);
        let mut kv = self.client.kv_client();
        match timed(kv.txn(txn)).await {
            Ok(resp) if resp.succeeded() => Ok(expiration),
            Ok(_) => {
                self.revoke(id).await;
                Err(SubnetError::LeaseLost)
            }
            Err(e) => {
                self.revoke(id).await;
                Err(e)
            }
        }
    }

    pub async fn delete_subnet(
        &self,
        subnet: Ipv4Net,
        ipv6_subnet: Option<Ipv6Net>,
    ) -> Result<(), SubnetError> {
        let mut kv = self.client.kv_client();
        timed(kv.delete(self.subnet_path(subnet, ipv6_subnet), None)).await?;
        Ok(())
    }

    /// The client, for the watch loop.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }
}

/// A lease record's key and value as a [`Lease`] expiring at `expiration`; `Ok(None)` for
/// keys that are not lease keys (skipped with a warning, as upstream does).
fn decode_record(kv: &KeyValue, expiration: SystemTime) -> Result<Option<Lease>, SubnetError> {
    let key = String::from_utf8_lossy(kv.key()).into_owned();
    let Some((subnet, ipv6_subnet)) = parse_subnet_key(&key) else {
        log::warn!("Ignoring bad subnet node {key}");
        return Ok(None);
    };
    let attrs =
        LeaseAttrs::from_json(kv.value()).map_err(|source| SubnetError::BadRecord { key, source })?;
    Ok(Some(Lease {
        // The etcd manager always treats leases as carrying IPv4 (upstream does the same).
        enable_ipv4: true,
        enable_ipv6: ipv6_subnet.is_some(),
        subnet,
        ipv6_subnet,
        attrs,
        expiration,
    }))
}
