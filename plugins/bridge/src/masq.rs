//! IP masquerade for container addresses, iptables backend (upstream's `SetupIPMasq` /
//! `TeardownIPMasq`), as one `iptables-restore` batch per family per operation.
//!
//! Per container and network, table `nat`:
//! ```text
//! -N CNI-<24 hex>
//! -A CNI-<24 hex> -d <container net> -m comment --comment "name: \"<net>\" id: \"<cid>\"" -j ACCEPT
//! -A CNI-<24 hex> ! -d 224.0.0.0/4 -m comment --comment "..." -j MASQUERADE
//! -A POSTROUTING -s <container ip>/32 -m comment --comment "..." -j CNI-<24 hex>
//! ```
//! Rule arguments are written in the form `iptables-save` prints, so uniqueness checks
//! recognise rules created by upstream's plugin too.

use ipnet::IpNet;
use netops::firewall::iptables::{self, Batch, IptablesError, PendingRestore};
use netops::Family;
use sha2::{Digest, Sha512};

use netops::firewall::sigterm::SigtermIgnored;

const CHAIN_PREFIX: &str = "CNI-";
/// iptables' limit on chain names.
const MAX_CHAIN_LEN: usize = 28;
const TABLE: &str = "nat";

#[derive(Debug, thiserror::Error)]
pub enum MasqError {
    #[error("{0}")]
    Iptables(#[from] IptablesError),
    #[error("unknown ipmasq backend {0:?}")]
    UnknownBackend(String),
    #[error(transparent)]
    Nft(#[from] netops::firewall::nft::NftError),
    #[error("the masquerade setup thread panicked")]
    Panicked,
}

/// Lowercase hex of SHA-512(`input`), truncated to `len` characters.
pub fn hash_hex(input: &str, len: usize) -> String {
    let digest = Sha512::digest(input.as_bytes());
    let mut hex = String::with_capacity(128);
    for b in digest.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex.truncate(len);
    hex
}

/// `CNI-` + the first 24 hex digits of SHA-512(network name + container id).
pub fn chain_name(network: &str, container_id: &str) -> String {
    let hash = hash_hex(
        &format!("{network}{container_id}"),
        MAX_CHAIN_LEN - CHAIN_PREFIX.len(),
    );
    format!("{CHAIN_PREFIX}{hash}")
}

pub fn comment(network: &str, container_id: &str) -> String {
    format!("name: \"{network}\" id: \"{container_id}\"")
}

fn multicast(family: Family) -> &'static str {
    match family {
        Family::V4 => "224.0.0.0/4",
        Family::V6 => "ff00::/8",
    }
}

fn host_net(net: &IpNet) -> String {
    IpNet::from(net.addr()).to_string()
}

/// Who a masquerade rule set belongs to.
#[derive(Debug, Clone)]
pub struct Owner {
    pub network: String,
    pub container_id: String,
    pub chain: String,
    pub comment: String,
}

impl Owner {
    pub fn new(network: &str, container_id: &str) -> Owner {
        Owner {
            network: network.to_string(),
            container_id: container_id.to_string(),
            chain: chain_name(network, container_id),
            comment: comment(network, container_id),
        }
    }

    /// Adds the rules for `ips` (all of `batch`'s family) unless they exist.
    pub fn plan_setup(&self, batch: &mut Batch, ips: &[IpNet]) -> Result<(), IptablesError> {
        let family = batch.family();
        let c = self.comment.as_str();
        batch.ensure_chain(&self.chain)?;
        for ip in ips {
            let net = ip.trunc().to_string();
            batch.append_unique(
                &self.chain,
                &["-d", &net, "-m", "comment", "--comment", c, "-j", "ACCEPT"],
            )?;
            batch.append_unique(
                &self.chain,
                &[
                    "!",
                    "-d",
                    multicast(family),
                    "-m",
                    "comment",
                    "--comment",
                    c,
                    "-j",
                    "MASQUERADE",
                ],
            )?;
            let src = host_net(ip);
            batch.append_unique(
                "POSTROUTING",
                &[
                    "-s",
                    &src,
                    "-m",
                    "comment",
                    "--comment",
                    c,
                    "-j",
                    &self.chain,
                ],
            )?;
        }
        Ok(())
    }

    /// Removes every POSTROUTING jump to this owner's chain, whatever source address it
    /// matches, then the chain. Upstream deletes only the jumps for addresses it can still
    /// read from the container; finding them by chain also works after the netns is gone.
    pub fn plan_teardown(&self, batch: &mut Batch) -> Result<(), IptablesError> {
        let jumps: Vec<Vec<String>> = batch
            .state()
            .rules_in("POSTROUTING")
            .filter(|args| jumps_to(args, &self.chain))
            .map(<[String]>::to_vec)
            .collect();
        for args in jumps {
            batch.delete_rule("POSTROUTING", &args)?;
        }
        batch.delete_chain(&self.chain)?;
        Ok(())
    }

    /// Installs the rules, one restore per family that has addresses; `pending` is used for
    /// its family's batch (or killed unused).
    pub fn setup(
        &self,
        ips: &[IpNet],
        mut pending: Option<PendingRestore>,
    ) -> Result<(), MasqError> {
        let _hold = SigtermIgnored::new();
        for family in Family::ALL {
            let mine: Vec<IpNet> = ips
                .iter()
                .copied()
                .filter(|ip| Family::of_net(ip) == family)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut batch = Batch::load_for_chain(family, TABLE, &self.chain)?;
            self.plan_setup(&mut batch, &mine)?;
            let restore = pending.take_if(|p| p.family() == family);
            batch.apply_with(restore)?;
        }
        Ok(())
    }

    /// Removes the rules of both families; absent rules are fine. Every family is attempted
    /// even when one fails; the first error is returned.
    pub fn teardown(&self) -> Result<(), MasqError> {
        let _hold = SigtermIgnored::new();
        let mut first = None;
        for family in Family::ALL {
            if iptables::chain_absent(family, TABLE, &self.chain) {
                continue; // nothing of ours can be there: no save, no restore
            }
            let outcome = Batch::load(family, TABLE).and_then(|mut batch| {
                self.plan_teardown(&mut batch)?;
                batch.apply()
            });
            if let Err(e) = outcome {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), |e| Err(e.into()))
    }
}

fn jumps_to(args: &[String], chain: &str) -> bool {
    args.windows(2).any(|w| w[0] == "-j" && w[1] == chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netops::firewall::iptables::SavedTable;

    fn batch(family: Family, rules: &str) -> Batch {
        let text = format!("*nat\n:POSTROUTING ACCEPT [0:0]\n{rules}COMMIT\n");
        Batch::with_state(family, SavedTable::parse(&text, "nat").unwrap()).unwrap()
    }

    #[test]
    fn chain_name_and_comment_match_upstream() {
        // Observed on upstream's plugin (cni.md §3.5).
        assert_eq!(chain_name("cbr0", "ctr1"), "CNI-9cccacf967e00a3c04e26966");
        assert_eq!(comment("cbr0", "ctr1"), r#"name: "cbr0" id: "ctr1""#);
        assert_eq!(chain_name("a", "b").len(), 28);
    }

    #[test]
    fn setup_renders_upstream_rules() {
        let owner = Owner::new("cbr0", "ctr1");
        let mut b = batch(Family::V4, "");
        owner
            .plan_setup(&mut b, &["10.244.1.2/24".parse().unwrap()])
            .unwrap();
        assert_eq!(
            b.render(),
            "*nat\n\
             -N CNI-9cccacf967e00a3c04e26966\n\
             -A CNI-9cccacf967e00a3c04e26966 -d 10.244.1.0/24 -m comment --comment \"name: \\\"cbr0\\\" id: \\\"ctr1\\\"\" -j ACCEPT\n\
             -A CNI-9cccacf967e00a3c04e26966 ! -d 224.0.0.0/4 -m comment --comment \"name: \\\"cbr0\\\" id: \\\"ctr1\\\"\" -j MASQUERADE\n\
             -A POSTROUTING -s 10.244.1.2/32 -m comment --comment \"name: \\\"cbr0\\\" id: \\\"ctr1\\\"\" -j CNI-9cccacf967e00a3c04e26966\n\
             COMMIT\n"
        );
    }

    #[test]
    fn setup_v6_and_two_ips_share_one_masquerade_rule() {
        let owner = Owner::new("n", "c");
        let mut b = batch(Family::V6, "");
        owner
            .plan_setup(
                &mut b,
                &[
                    "fd00:1::5/64".parse().unwrap(),
                    "fd00:2::5/64".parse().unwrap(),
                ],
            )
            .unwrap();
        let text = b.render();
        assert_eq!(text.matches("-j MASQUERADE").count(), 1, "{text}");
        assert!(text.contains("! -d ff00::/8 "), "{text}");
        assert!(text.contains("-d fd00:1::/64 "), "{text}");
        assert!(text.contains("-d fd00:2::/64 "), "{text}");
        assert!(text.contains("-A POSTROUTING -s fd00:1::5/128 "), "{text}");
        assert!(text.contains("-A POSTROUTING -s fd00:2::5/128 "), "{text}");
    }

    #[test]
    fn setup_is_a_no_op_when_rules_exist() {
        let owner = Owner::new("cbr0", "ctr1");
        let existing = "\
:CNI-9cccacf967e00a3c04e26966 - [0:0]
-A POSTROUTING -s 10.244.1.2/32 -m comment --comment \"name: \\\"cbr0\\\" id: \\\"ctr1\\\"\" -j CNI-9cccacf967e00a3c04e26966
-A CNI-9cccacf967e00a3c04e26966 -d 10.244.1.0/24 -m comment --comment \"name: \\\"cbr0\\\" id: \\\"ctr1\\\"\" -j ACCEPT
-A CNI-9cccacf967e00a3c04e26966 ! -d 224.0.0.0/4 -m comment --comment \"name: \\\"cbr0\\\" id: \\\"ctr1\\\"\" -j MASQUERADE
";
        let mut b = batch(Family::V4, existing);
        owner
            .plan_setup(&mut b, &["10.244.1.2/24".parse().unwrap()])
            .unwrap();
        assert!(b.is_empty(), "{}", b.render());
    }

    #[test]
    fn teardown_removes_all_jumps_to_the_chain_including_legacy_form() {
        let owner = Owner::new("cbr0", "ctr1");
        let existing = "\
:CNI-9cccacf967e00a3c04e26966 - [0:0]
:CNI-other - [0:0]
-A POSTROUTING -s 10.244.1.2/32 -m comment --comment \"name: \\\"cbr0\\\" id: \\\"ctr1\\\"\" -j CNI-9cccacf967e00a3c04e26966
-A POSTROUTING -s 10.244.1.0/24 -m comment --comment \"name: \\\"cbr0\\\" id: \\\"ctr1\\\"\" -j CNI-9cccacf967e00a3c04e26966
-A POSTROUTING -s 10.244.1.3/32 -j CNI-other
-A CNI-9cccacf967e00a3c04e26966 ! -d 224.0.0.0/4 -m comment --comment \"name: \\\"cbr0\\\" id: \\\"ctr1\\\"\" -j MASQUERADE
";
        let mut b = batch(Family::V4, existing);
        owner.plan_teardown(&mut b).unwrap();
        assert_eq!(
            b.render(),
            "*nat\n\
             -D POSTROUTING -s 10.244.1.2/32 -m comment --comment \"name: \\\"cbr0\\\" id: \\\"ctr1\\\"\" -j CNI-9cccacf967e00a3c04e26966\n\
             -D POSTROUTING -s 10.244.1.0/24 -m comment --comment \"name: \\\"cbr0\\\" id: \\\"ctr1\\\"\" -j CNI-9cccacf967e00a3c04e26966\n\
             -F CNI-9cccacf967e00a3c04e26966\n\
             -X CNI-9cccacf967e00a3c04e26966\n\
             COMMIT\n"
        );
        let mut b = batch(Family::V4, "");
        owner.plan_teardown(&mut b).unwrap();
        assert!(b.is_empty(), "nothing to remove renders nothing");
    }
}
