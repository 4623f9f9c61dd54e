//! The udp backend's packet counters, read from its datapath at every scrape. They are
//! totals the datapath keeps itself, so they are exposed as constant samples rather than
//! mirrored into counters of our own.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use crate::backend::udp::DropReason;
use crate::backend::CounterSource;

pub(super) struct UdpCollector(pub CounterSource);

impl std::fmt::Debug for UdpCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UdpCollector")
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    by_direction: [(&str, u64); 2],
) -> std::fmt::Result {
    let c = ConstCounter::new(0u64);
    let mut family = encoder.encode_descriptor(name, help, None, c.metric_type())?;
    for (direction, value) in by_direction {
        ConstCounter::new(value).encode(family.encode_family(&[("direction", direction)])?)?;
    }
    Ok(())
}

impl Collector for UdpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let snap = (self.0)();
        counter(
            &mut encoder,
            "flannel_udp_packets",
            "Inner IPv4 packets forwarded by the udp backend (out: TUN to peers, in: peers to TUN).",
            [("in", snap.packets_in), ("out", snap.packets_out)],
        )?;
        counter(
            &mut encoder,
            "flannel_udp_bytes",
            "Bytes of inner IPv4 packets forwarded by the udp backend.",
            [("in", snap.bytes_in), ("out", snap.bytes_out)],
        )?;
        let c = ConstCounter::new(0u64);
        let mut drops = encoder.encode_descriptor(
            "flannel_udp_dropped_packets",
            "Packets the udp backend did not forward, by reason.",
            None,
            c.metric_type(),
        )?;
        for reason in DropReason::ALL {
            ConstCounter::new(snap.dropped(reason))
                .encode(drops.encode_family(&[("reason", reason.as_str())])?)?;
        }
        let icmp = ConstCounter::new(snap.icmp_unreachable);
        icmp.encode(encoder.encode_descriptor(
            "flannel_udp_icmp_unreachable_sent",
            "ICMP net-unreachable replies written back for packets to subnets no peer serves.",
            None,
            icmp.metric_type(),
        )?)
    }
}
