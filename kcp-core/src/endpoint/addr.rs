//! Peer addresses: what an endpoint keys sessions by, and the source host its admission
//! limits count.

/// A peer address as an endpoint keys sessions by. [`host`](Self::host) is what admission
/// limits count per source: the IP address of a socket address, whatever its port. Sessions
/// are found by a hash of the address (and conversation id), so it is [`Hash`](core::hash::Hash)
/// as well as ordered.
pub trait PeerAddr: Ord + Copy + core::hash::Hash {
    /// The part of the address that identifies a source host.
    type Host: Ord + Copy;
    /// The source host of this address.
    fn host(&self) -> Self::Host;
    /// The source host as admission limits count it: the address's network of `v4` leading
    /// bits (IPv4) or `v6` (IPv6). The default is [`host`](Self::host).
    fn host_prefix(&self, v4: u8, v6: u8) -> Self::Host {
        let _ = (v4, v6);
        self.host()
    }
}

impl PeerAddr for core::net::SocketAddr {
    type Host = core::net::IpAddr;
    fn host(&self) -> core::net::IpAddr {
        self.ip()
    }
    fn host_prefix(&self, v4: u8, v6: u8) -> core::net::IpAddr {
        use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let mask4 = |a: Ipv4Addr| {
            let bits = u32::from(v4.min(32));
            let m = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        };
        match self.ip() {
            IpAddr::V4(a) => mask4(a),
            // An IPv4 peer on a dual-stack socket counts as IPv4.
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a4) => mask4(a4),
                None => {
                    let bits = u32::from(v6.min(128));
                    let m = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                    IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
                }
            },
        }
    }
}

macro_rules! peer_addr_is_host {
    ($($t:ty),*) => {$(
        /// For tests and simulations: the whole value is the host.
        impl PeerAddr for $t {
            type Host = $t;
            fn host(&self) -> $t {
                *self
            }
        }
    )*};
}
peer_addr_is_host!(u8, u16, u32, u64, u128);
