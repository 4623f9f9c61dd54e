//! Kubernetes NetworkPolicy, enforced by flanneld itself (`--network-policy`, kube subnet
//! manager only).
//!
//! # Semantics (and where they are written down)
//!
//! The `networking.k8s.io/v1` API reference (NetworkPolicy, NetworkPolicySpec,
//! NetworkPolicyPeer, IPBlock, NetworkPolicyPort), the concepts page "Network Policies", the
//! API's defaulting (`pkg/apis/networking/v1/defaults.go`) and validation
//! (`pkg/apis/networking/validation/validation.go`), and the conformance-style e2e suite
//! `test/e2e/network/netpol/` (`network_policy.go`: the cases; `model.go`: namespaces x, y, z,
//! pods a, b, c, ports 80 and 81, container ports named `serve-<port>-<proto>`;
//! `reachability.go`: the truth table):
//!
//! - A pod is isolated for ingress (egress) when some policy selecting it has `Ingress`
//!   (`Egress`) in its `policyTypes`; `policyTypes` defaults to `["Ingress"]`, plus `"Egress"`
//!   when `egress` is non-empty ([`policy`]).
//! - Policies add up: a connection passes when some policy selecting the destination allows
//!   it on ingress (if the destination is isolated for ingress) and some policy selecting the
//!   source allows it on egress (if the source is isolated for egress). An empty rule list
//!   allows nothing; a rule without `from`/`to` allows every peer, without `ports` every port.
//! - `namespaceSelector` and `podSelector` in one peer are ANDed, separate peers ORed; a
//!   `podSelector` alone means the policy's namespace, `namespaceSelector: {}` every namespace.
//!   Namespaces always carry `kubernetes.io/metadata.name` ([`cluster`]).
//! - `ipBlock` matches addresses, pods' included; `except` carves out of `cidr`.
//! - `ports`: protocol TCP by default, UDP and SCTP; a numeric `port` with an optional
//!   `endPort`, or a container port name resolved on each destination pod by name and
//!   protocol.
//! - Reply traffic of an allowed connection passes (conntrack); traffic from the node to its
//!   own pods (kubelet probes) is never judged; pods with `hostNetwork` are neither selected
//!   nor peers (their traffic is the node's).
//! - IPv4 and IPv6 alike, per the families the flannel network carries.
//!
//! A policy flanneld cannot understand (a selector operator it does not know, a malformed
//! CIDR or port, …) fails closed: the pods it selects are isolated in its directions and it
//! allows nothing; the reason is logged, counted (`flannel_netpol_errors_total`) and shown in
//! `/status`.
//!
//! # Where it is enforced: one `inet flannel-netpol` table
//!
//! Each node judges ingress to its own pods and egress from its own pods. All pod traffic that
//! crosses a node passes the IP `forward` hook there, whatever the backend: vxlan
//! (`flannel.1`), host-gw (the external interface), udp (`flannel0`) and the userspace
//! WireGuard (`flannel-wg`) hand decapsulated packets to the kernel, which routes them to
//! `cni0`, and pod packets for other nodes are routed from `cni0` to those devices. Traffic
//! between two pods of one node is bridged on `cni0`; with `net.bridge.bridge-nf-call-iptables`
//! (and `-ip6tables`) it passes the same IP `forward` hook (br_netfilter). A bridge-family table
//! would see the bridged traffic without br_netfilter but not the routed traffic between
//! nodes, so one `inet` table covers every path (flanneld turns the sysctls on when the policy
//! feature is on). Pod traffic to this node itself passes the `input` hook, where egress is
//! judged too. Traffic the node sends (`output`) is not judged, so kubelet probes pass.
//!
//! Named sets keyed by pod address carry everything that changes with pods ([`compile`]), so a
//! pod coming, going or being relabelled changes set elements, not rules; every change is one
//! `nft -f -` transaction ([`ruleset`]). The table is left in place when flanneld exits and
//! replaced atomically once the first complete listing is known after a start, so there is no
//! window without policy; while the API server is unreachable, the last rules stay.

pub mod cluster;
pub mod compile;
#[cfg(feature = "kube")]
pub mod controller;
#[cfg(feature = "kube")]
pub mod objects;
pub mod policy;
pub mod ruleset;
pub mod selector;
pub mod table;

pub use cluster::{Cluster, NamedPort, PodInfo};
pub use compile::{compile, Compiled, Families, LocalPod};
pub use policy::{Policy, PolicyKey, Protocol};
pub use ruleset::Ruleset;
