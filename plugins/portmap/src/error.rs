//! portmap failures, worded like upstream where users know the wording.

use netops::firewall::iptables::IptablesError;

#[derive(Debug, thiserror::Error)]
pub enum PortmapError {
    #[error("failed to parse config: {0}")]
    Config(String),
    /// Backend selection (`unrecognized backend "x"`, options of the other backend).
    #[error("{0}")]
    Backend(String),
    #[error("must be called as chained plugin")]
    NotChained,
    #[error("Required prevResult missing")]
    CheckWithoutPrevResult,
    #[error("failed to open iptables: {0}")]
    OpenIptables(#[source] IptablesError),
    #[error("unable to setup DNAT: {0}")]
    Setup(#[source] IptablesError),
    #[error("could not teardown {family} dnat: {source}")]
    Teardown {
        family: &'static str,
        #[source]
        source: IptablesError,
    },
    #[error("neither iptables nor ip6tables is usable, (iptables) {v4}, (ip6tables) {v6}")]
    NoIptables { v4: String, v6: String },
    #[error("unable to enable route_localnet: {0}")]
    RouteLocalnet(String),
    #[error("chain {0} not found in iptables table nat")]
    CheckChainMissing(String),
    #[error("rule {rule} in chain {chain} not found in table nat")]
    CheckRuleMissing { rule: String, chain: String },
    #[error("nftables: {0}")]
    Nft(String),
}
