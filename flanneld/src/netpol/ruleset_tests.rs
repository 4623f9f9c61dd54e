use super::*;

fn addr(s: &str) -> Element {
    Element::Addr(s.parse().unwrap())
}

fn set(family: Family, kind: SetKind, elements: &[Element]) -> NftSet {
    NftSet {
        family,
        kind,
        elements: elements.iter().copied().collect(),
    }
}

fn sample() -> Ruleset {
    let mut rs = Ruleset::default();
    rs.sets.insert(
        "t1-4".into(),
        set(
            Family::V4,
            SetKind::Addr,
            &[addr("10.244.1.2"), addr("10.244.1.3")],
        ),
    );
    rs.sets.insert(
        "b1-6".into(),
        set(
            Family::V6,
            SetKind::Net,
            &[Element::Net("fd00::/64".parse().unwrap())],
        ),
    );
    rs.sets.insert(
        "n1-4".into(),
        set(
            Family::V4,
            SetKind::AddrPort,
            &[Element::AddrPort("10.244.1.2".parse().unwrap(), 80)],
        ),
    );
    rs.chains.insert(
        INGRESS,
        vec!["ip daddr @t1-4 return comment \"x/p\"".into()],
    );
    rs.chains.insert(FORWARD, vec!["jump ingress".into()]);
    rs
}

#[test]
fn full_script_replaces_the_table_in_one_transaction() {
    let script = full_script(&sample());
    assert_eq!(
        script,
        "add table inet flannel-netpol\n\
         delete table inet flannel-netpol\n\
         add table inet flannel-netpol\n\
         add counter inet flannel-netpol denied-ingress\n\
         add counter inet flannel-netpol denied-egress\n\
         add set inet flannel-netpol b1-6 { type ipv6_addr; flags interval; }\n\
         add element inet flannel-netpol b1-6 { fd00::/64 }\n\
         add set inet flannel-netpol n1-4 { type ipv4_addr . inet_service; }\n\
         add element inet flannel-netpol n1-4 { 10.244.1.2 . 80 }\n\
         add set inet flannel-netpol t1-4 { type ipv4_addr; }\n\
         add element inet flannel-netpol t1-4 { 10.244.1.2, 10.244.1.3 }\n\
         add chain inet flannel-netpol egress\n\
         add chain inet flannel-netpol ingress\n\
         add chain inet flannel-netpol forward { type filter hook forward priority filter; policy accept; }\n\
         add chain inet flannel-netpol input { type filter hook input priority filter; policy accept; }\n\
         add rule inet flannel-netpol ingress ip daddr @t1-4 return comment \"x/p\"\n\
         add rule inet flannel-netpol forward jump ingress\n"
    );
}

#[test]
fn a_pod_change_is_element_commands_only() {
    let old = sample();
    let mut new = old.clone();
    let t = new.sets.get_mut("t1-4").unwrap();
    t.elements.remove(&addr("10.244.1.3"));
    t.elements.insert(addr("10.244.1.9"));
    assert_eq!(
        diff_script(&old, &new),
        "delete element inet flannel-netpol t1-4 { 10.244.1.3 }\n\
         add element inet flannel-netpol t1-4 { 10.244.1.9 }\n"
    );
    assert_eq!(diff_script(&new, &new), "");
}

#[test]
fn a_policy_change_adds_sets_before_rules_and_drops_them_after() {
    let old = sample();
    let mut new = old.clone();
    new.sets.remove("n1-4");
    new.sets.insert(
        "s2-4".into(),
        set(Family::V4, SetKind::Addr, &[addr("10.244.2.5")]),
    );
    new.chains.insert(
        INGRESS,
        vec!["ip daddr @t1-4 ip saddr @s2-4 return comment \"x/q\"".into()],
    );
    assert_eq!(
        diff_script(&old, &new),
        "add set inet flannel-netpol s2-4 { type ipv4_addr; }\n\
         add element inet flannel-netpol s2-4 { 10.244.2.5 }\n\
         flush chain inet flannel-netpol ingress\n\
         add rule inet flannel-netpol ingress ip daddr @t1-4 ip saddr @s2-4 return comment \"x/q\"\n\
         delete set inet flannel-netpol n1-4\n"
    );
}

#[test]
fn a_set_that_changed_type_falls_back_to_a_full_replacement() {
    let old = sample();
    let mut new = old.clone();
    new.sets.get_mut("t1-4").unwrap().kind = SetKind::Net;
    assert_eq!(diff_script(&old, &new), full_script(&new));
}

#[test]
fn large_sets_are_written_in_chunks() {
    let mut rs = Ruleset::default();
    let elements: Vec<Element> = (0..600u32)
        .map(|i| Element::Addr(std::net::Ipv4Addr::from(0x0af4_0000 + i).into()))
        .collect();
    rs.sets
        .insert("t-4".into(), set(Family::V4, SetKind::Addr, &elements));
    let script = full_script(&rs);
    let commands: Vec<&str> = script
        .lines()
        .filter(|l| l.starts_with("add element"))
        .collect();
    assert_eq!(commands.len(), 3);
    assert_eq!(commands[2].matches(", ").count(), 600 - 2 * 256 - 1);
    assert_eq!(rs.element_count(), 600);
}
