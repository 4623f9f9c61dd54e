use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::json;

use super::*;
use crate::subnet::store::Slot;

/// An in-memory lease store with etcd's revisions: every write bumps the revision and stamps
/// the record, and a listing `since` a revision returns only records stamped after it.
#[derive(Default)]
struct Fake {
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    revision: i64,
    /// Key → (raw value, revision of its last write).
    records: BTreeMap<String, (Vec<u8>, i64)>,
    /// The `since` of every listing, in order.
    lists: Vec<Option<i64>>,
    /// How often the records were counted.
    counts: usize,
    /// Every create asked for, won or lost.
    creates: Vec<Ipv4Net>,
    /// For the next creates: another node writes this record at our key just before us.
    rivals: VecDeque<LeaseAttrs>,
    /// Keys that disappear (their lease expired) the moment a rival wins.
    expire_on_loss: Vec<String>,
    /// Records other nodes create the moment a rival wins.
    crowd_on_loss: Vec<String>,
    /// Records without a lifetime (reservations).
    reserved: Vec<String>,
    /// Whether this store keeps a reused reservation one (etcd v2) or not (v3).
    keeps_reservations: bool,
    /// Every update: the subnet and whether it was written as a reservation.
    updates: Vec<(Ipv4Net, bool)>,
}

impl FakeState {
    fn put(&mut self, key: &str, value: &[u8]) {
        self.revision += 1;
        self.records
            .insert(key.to_owned(), (value.to_vec(), self.revision));
    }
}

impl Fake {
    fn with(records: &[(&str, &str)]) -> Fake {
        let fake = Fake::default();
        for (k, v) in records {
            fake.state().put(k, v.as_bytes());
        }
        fake
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }
}

fn key(subnet: Ipv4Net) -> String {
    crate::subnet::subnet_key(subnet, None)
}

#[async_trait::async_trait]
impl LeaseStore for Fake {
    async fn list_slots(&self, owner: &Owner, since: Option<i64>) -> Result<Listing, SubnetError> {
        let mut st = self.state();
        st.lists.push(since);
        let slots = st
            .records
            .iter()
            .filter(|(_, (_, rev))| since.map_or(true, |s| *rev > s))
            .filter_map(|(k, (v, _))| Slot::from_record(k, v, st.reserved.contains(k), owner))
            .collect();
        Ok(Listing {
            slots,
            revision: Some(st.revision),
            changes_only: since.is_some(),
        })
    }

    async fn count_records(&self) -> Result<Option<usize>, SubnetError> {
        let mut st = self.state();
        st.counts += 1;
        Ok(Some(st.records.len()))
    }

    async fn create_subnet(
        &self,
        subnet: Ipv4Net,
        _: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        _: Option<&str>,
    ) -> Result<SystemTime, SubnetError> {
        let mut st = self.state();
        st.creates.push(subnet);
        if let Some(rival) = st.rivals.pop_front() {
            st.put(&key(subnet), rival.to_json().as_bytes());
            for gone in std::mem::take(&mut st.expire_on_loss) {
                st.revision += 1;
                st.records.remove(&gone);
            }
            for (i, crowd) in std::mem::take(&mut st.crowd_on_loss).iter().enumerate() {
                st.put(crowd, record(&format!("172.17.0.{i}")).as_bytes());
            }
        }
        if st.records.contains_key(&key(subnet)) {
            return Err(SubnetError::AlreadyExists);
        }
        st.put(&key(subnet), attrs.to_json().as_bytes());
        Ok(SystemTime::now())
    }

    async fn update_subnet(
        &self,
        subnet: Ipv4Net,
        _: Option<Ipv6Net>,
        attrs: &LeaseAttrs,
        reservation: bool,
    ) -> Result<Option<SystemTime>, SubnetError> {
        let mut st = self.state();
        st.put(&key(subnet), attrs.to_json().as_bytes());
        st.updates.push((subnet, reservation));
        if !reservation {
            st.reserved.retain(|k| *k != key(subnet));
        }
        Ok((!reservation).then(SystemTime::now))
    }

    fn keeps_reservations(&self) -> bool {
        self.state().keeps_reservations
    }

    async fn delete_subnet(&self, subnet: Ipv4Net, _: Option<Ipv6Net>) -> Result<(), SubnetError> {
        let mut st = self.state();
        st.revision += 1;
        st.records.remove(&key(subnet));
        Ok(())
    }
}

fn config(json: &str) -> NetworkConfig {
    let mut c = NetworkConfig::parse(json.as_bytes()).unwrap();
    c.check().unwrap();
    c
}

fn attrs(ip: [u8; 4]) -> LeaseAttrs {
    LeaseAttrs {
        public_ip: Ipv4Addr::from(ip),
        public_ipv6: None,
        backend_type: "vxlan".into(),
        backend_data: Some(json!({"VNI": 1, "VtepMAC": "02:00:00:00:00:01"}).into()),
        backend_v6_data: None,
    }
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn record(ip: &str) -> String {
    format!(r#"{{"PublicIP":"{ip}","PublicIPv6":null,"BackendType":"vxlan"}}"#)
}

async fn acquire(store: &Fake, cfg: &NetworkConfig, me: &LeaseAttrs) -> Result<Lease, SubnetError> {
    let req = AcquireRequest {
        config: cfg,
        attrs: me,
        previous: None,
    };
    acquire_lease(store, &req).await
}

#[test]
fn only_records_that_could_be_ours_are_decoded() {
    let cfg = config(r#"{"Network":"10.5.0.0/16"}"#);
    let owner = Owner::new(&cfg, &attrs([172, 16, 0, 1]));
    let slot = |value: &str| Slot::from_record("10.5.3.0-24", value.as_bytes(), false, &owner);
    // Another node's record: its subnet, nothing decoded (a broken one likewise).
    let other = slot(&record("172.16.0.10")).unwrap();
    assert_eq!((other.subnet, other.attrs), (net("10.5.3.0/24"), None));
    assert_eq!(slot("{not json").unwrap().attrs, None);
    // Ours, however spelled: plain, key in another case, the address escaped.
    for ours in [
        record("172.16.0.1"),
        r#"{"publicip":"172.16.0.1"}"#.to_owned(),
        r#"{"PublicIP":"172.16.0.\u0031"}"#.to_owned(),
    ] {
        let decoded = slot(&ours).unwrap().attrs.expect("decoded");
        assert!(owner.owns(&decoded), "{ours}");
    }
    assert_eq!(slot("{}").unwrap().attrs, None);
    assert_eq!(
        Slot::from_record("not-a-subnet", b"{}", false, &owner),
        None
    );

    // A node without PublicIP matches records without one: nothing can be skipped.
    let nobody = Owner::new(&cfg, &attrs([0, 0, 0, 0]));
    assert!(nobody.could_own(b"{}"));
    // IPv6-only: matched by PublicIPv6, whose spellings vary, so every record is decoded;
    // without an IPv6 address no record can be ours.
    let v6 = config(r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48"}"#);
    assert!(!Owner::new(&v6, &attrs([172, 16, 0, 1])).could_own(b"{}"));
    let mut me6 = attrs([172, 16, 0, 1]);
    me6.public_ipv6 = Some("fc00::1".parse().unwrap());
    let owner6 = Owner::new(&v6, &me6);
    assert!(owner6.could_own(br#"{"PublicIPv6":"fc00:0::1"}"#));
}

#[test]
fn skipping_never_misses_a_record_the_decoder_would_call_ours() {
    let cfg = config(r#"{"Network":"10.5.0.0/16"}"#);
    let me = attrs([10, 1, 2, 3]);
    let owner = Owner::new(&cfg, &me);
    let values = [
        r#"{"PublicIP":"10.1.2.3"}"#,
        r#"{"PublicIP":"10.1.2.30"}"#,
        r#"{"PublicIP":"110.1.2.3"}"#,
        r#"{"PublicIP":"010.1.2.3"}"#,
        r#"{"PublicIP":"10.1.2.03"}"#,
        r#"{"PublicIP":" 10.1.2.3"}"#,
        r#"{"PUBLICIP":"10.1.2.3","BackendType":"host-gw"}"#,
        r#"{"PublicIP":"10.1.2.3","PublicIP":"10.1.2.4"}"#,
        r#"{"PublicIP":"10.1.2.4","publicIp":"10.1.2.3"}"#,
        r#"{"Public\u0049P":"10.1.2.3"}"#,
        r#"{"PublicIP":"\u0031\u0030.1.2.3"}"#,
        r#"{"PublicIP":null}"#,
        r#"{"PublicIP":10}"#,
        r#"{"BackendData":{"PublicIP":"10.1.2.3"}}"#,
        r#"["10.1.2.3"]"#,
    ];
    for v in values {
        let decodes_ours = LeaseAttrs::from_json(v.as_bytes()).is_ok_and(|a| owner.owns(&a));
        if decodes_ours {
            assert!(
                owner.could_own(v.as_bytes()),
                "{v} is ours but would be skipped"
            );
        }
    }
    // The shortcut is not vacuous: most of these are ruled out unread.
    let skipped = values
        .iter()
        .filter(|v| !owner.could_own(v.as_bytes()))
        .count();
    assert_eq!(skipped, 7);
}

#[tokio::test(flavor = "current_thread")]
async fn a_loser_picks_again_from_what_it_knows_when_little_is_unseen() {
    let fake = Fake::with(&[
        ("10.5.1.0-24", &record("172.16.0.7")),
        ("10.5.2.0-24", &record("172.16.0.8")),
    ]);
    fake.state().rivals.push_back(attrs([172, 16, 0, 9]));
    let cfg = config(r#"{"Network":"10.5.0.0/16"}"#);
    let got = acquire(&fake, &cfg, &attrs([172, 16, 0, 1])).await.unwrap();
    let st = fake.state();
    // The store holds no record the node has not seen (the rival's is where it lost).
    assert_eq!((st.lists.as_slice(), st.counts), (&[None][..], 1));
    let lost = st.creates[0];
    assert_eq!(st.creates, vec![lost, got.subnet]);
    assert_ne!(got.subnet, lost);
    assert!(![net("10.5.1.0/24"), net("10.5.2.0/24")].contains(&got.subnet));
    assert_eq!(st.records.len(), 4);
}

#[tokio::test(flavor = "current_thread")]
async fn a_loser_rereads_only_what_changed_when_unseen_records_crowd_the_pool() {
    // 255 subnets; while the node loses its first claim, 80 others are taken.
    let fake = Fake::with(&[
        ("10.5.1.0-24", &record("172.16.0.7")),
        ("10.5.2.0-24", &record("172.16.0.8")),
    ]);
    let crowd: Vec<String> = (100..180).map(|n| format!("10.5.{n}.0-24")).collect();
    fake.state().rivals.push_back(attrs([172, 16, 0, 9]));
    fake.state().crowd_on_loss = crowd.clone();
    let cfg = config(r#"{"Network":"10.5.0.0/16"}"#);
    let got = acquire(&fake, &cfg, &attrs([172, 16, 0, 1])).await.unwrap();
    let st = fake.state();
    assert_eq!(
        st.lists,
        vec![None, Some(2)],
        "the re-read asks for changes after revision 2"
    );
    assert_eq!(st.creates.len(), 2, "{:?}", st.creates);
    assert!(!crowd.contains(&key(got.subnet)), "{}", got.subnet);
}

#[tokio::test(flavor = "current_thread")]
async fn a_pool_that_looks_full_after_change_listings_is_listed_again_in_full() {
    // Three /28s: two held, the third taken by a rival while we claim it, and meanwhile the
    // first one's lease runs out. Only a full listing shows that it is free.
    let cfg = config(r#"{"Network":"10.9.0.0/26"}"#);
    let fake = Fake::with(&[
        ("10.9.0.16-28", &record("172.16.0.7")),
        ("10.9.0.32-28", &record("172.16.0.8")),
    ]);
    fake.state().rivals.push_back(attrs([172, 16, 0, 9]));
    fake.state().expire_on_loss.push("10.9.0.16-28".into());
    let got = acquire(&fake, &cfg, &attrs([172, 16, 0, 1])).await.unwrap();
    assert_eq!(got.subnet, net("10.9.0.16/28"));
    {
        let st = fake.state();
        assert_eq!(st.lists, vec![None, None]);
        assert_eq!(st.creates, vec![net("10.9.0.48/28"), net("10.9.0.16/28")]);
    }

    // A pool that a full listing shows full is out of subnets, as before.
    let err = acquire(&fake, &cfg, &attrs([172, 16, 0, 2]))
        .await
        .unwrap_err();
    assert!(matches!(err, SubnetError::OutOfSubnets), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_lone_node_picks_among_the_first_hundred_and_a_loser_among_more() {
    fastrand::seed(8);
    let cfg = config(r#"{"Network":"10.5.0.0/16"}"#); // 255 /24s: 10.5.1.0 .. 10.5.255.0
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for _ in 0..16 {
        let fake = Fake::default();
        fake.state().rivals.push_back(attrs([172, 16, 0, 9]));
        acquire(&fake, &cfg, &attrs([172, 16, 0, 1])).await.unwrap();
        let creates = fake.state().creates.clone();
        first.push(creates[0].addr().octets()[2]);
        second.push(creates[1].addr().octets()[2]);
    }
    // Upstream's choice first: one of the first 100 free subnets.
    assert!(first.iter().all(|&o| (1..=100).contains(&o)), "{first:?}");
    // After a loss, among 1,600 (here: all 254 free ones). That every one of 16 picks lands
    // in the first 101 has odds of (101/254)^16, about 4e-7.
    assert!(second.iter().any(|&o| o > 101), "{second:?}");
    assert_eq!(window(0), alloc::MAX_CANDIDATES);
    assert_eq!(window(1), 1600);
    assert_eq!(window(2), 25_600);
    assert_eq!(window(5), 25_600);
}

#[test]
fn a_loser_widens_past_unseen_records_and_rereads_only_where_it_cannot() {
    // No unseen records: one step wider, as after any lost race.
    assert_eq!(after_loss(0, Some(0), 25_600), (1, false));
    assert_eq!(after_loss(1, Some(0), 25_600), (2, false));
    assert_eq!(after_loss(2, Some(0), 25_600), (2, false));
    // A storm in a /8: 2,000 records written since the listing would crowd 1,600 choices,
    // not 25,600.
    assert_eq!(after_loss(0, Some(2_000), 60_000), (2, false));
    assert_eq!(after_loss(0, Some(300), 60_000), (1, false));
    // A /16 with 252 subnets free by the view and 80 taken unseen: no window dilutes them.
    assert_eq!(after_loss(0, Some(80), 252), (1, true));
    assert_eq!(after_loss(0, Some(60), 252), (1, false));
    // A store that cannot count is re-read after every lost race.
    assert_eq!(after_loss(0, None, 60_000), (1, true));
}

#[tokio::test(flavor = "current_thread")]
async fn a_subnet_held_by_an_unreadable_record_is_not_claimed() {
    // The record's text mentions our address, so it is decoded, and fails to decode.
    let fake = Fake::with(&[("10.5.7.0-24", r#"{"PublicIP":"172.16.0.1","#)]);
    let cfg = config(r#"{"Network":"10.5.0.0/16"}"#);
    let me = attrs([172, 16, 0, 1]);
    let req = AcquireRequest {
        config: &cfg,
        attrs: &me,
        previous: Some((net("10.5.7.0/24"), None)),
    };
    let got = acquire_lease(&fake, &req).await.unwrap();
    assert_ne!(got.subnet, net("10.5.7.0/24"));
    assert_eq!(
        fake.state().creates,
        vec![got.subnet],
        "no claim on the held subnet"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn our_record_is_reused_and_a_free_previous_subnet_is_taken_back() {
    let cfg = config(r#"{"Network":"10.5.0.0/16"}"#);
    let me = attrs([172, 16, 0, 1]);
    let fake = Fake::with(&[
        ("10.5.3.0-24", &record("172.16.0.7")),
        ("10.5.4.0-24", &record("172.16.0.1")),
    ]);
    let got = acquire(&fake, &cfg, &me).await.unwrap();
    assert_eq!(got.subnet, net("10.5.4.0/24"));
    assert!(fake.state().creates.is_empty());

    let fresh = Fake::with(&[("10.5.3.0-24", &record("172.16.0.7"))]);
    let req = AcquireRequest {
        config: &cfg,
        attrs: &me,
        previous: Some((net("10.5.9.0/24"), None)),
    };
    assert_eq!(
        acquire_lease(&fresh, &req).await.unwrap().subnet,
        net("10.5.9.0/24")
    );
    assert_eq!(fresh.state().records.len(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn a_reservation_is_reused_as_the_keyspace_does_upstream() {
    let cfg = config(r#"{"Network":"10.5.0.0/16"}"#);
    let me = attrs([172, 16, 0, 1]);
    for keeps in [true, false] {
        let store = Fake::with(&[
            ("10.5.7.0-24", &record("172.16.0.1")),
            ("10.5.8.0-24", &record("172.16.0.2")),
        ]);
        {
            let mut st = store.state();
            st.reserved = vec!["10.5.7.0-24".into(), "10.5.8.0-24".into()];
            st.keeps_reservations = keeps;
        }
        let lease = acquire(&store, &cfg, &me).await.unwrap();
        assert_eq!(lease.subnet, net("10.5.7.0/24"));
        // v2 keeps it a reservation (no expiration, never renewed); v3 puts it on a lease.
        assert_eq!(lease.expiration.is_none(), keeps);
        let st = store.state();
        assert_eq!(st.updates, vec![(net("10.5.7.0/24"), keeps)]);
        // Another node's reservation is neither touched nor handed out.
        assert!(st.reserved.contains(&"10.5.8.0-24".to_owned()));
        assert!(st.creates.is_empty());
    }
}
