//! Which address families this host can use, decided as glibc's
//! `AI_ADDRCONFIG` decides it: ask DNS only for the families the host has a
//! usable address for. Without it a single-stack host sends an AAAA query
//! (or an A query) per peer and attempt whose answer it could never use.
//!
//! A static binary cannot ask libc (`getifaddrs` is fine, but name
//! resolution through NSS is not, and netlink would need a crate), so the
//! kernel's view is read from `/proc`:
//!
//! - IPv4: a route through an interface other than loopback in
//!   `/proc/net/route` (an address on an interface brings its subnet route;
//!   a point-to-point pod network brings at least a default route);
//! - IPv6: an address of global scope in `/proc/net/if_inet6` (link-local
//!   `fe80::` addresses are on nearly every interface and reach no DNS
//!   answer; a kernel without IPv6 has no such file).
//!
//! Where glibc counts any non-loopback IPv6 address, link-local ones
//! included, this does not: a pod or VM on an IPv4-only network has them and
//! would otherwise still ask for AAAA records.

/// The IPv4 routing table (main table).
pub const ROUTE: &str = "/proc/net/route";
/// The IPv6 addresses of every interface.
pub const IF_INET6: &str = "/proc/net/if_inet6";

/// The families the host can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFamilies {
    pub v4: bool,
    pub v6: bool,
}

/// Decides from the two files' contents (`None`: unreadable). Returns
/// `None` when that tells nothing: neither file could be read, or neither
/// family is usable (then, as glibc does, both are asked for).
pub fn host_families(route: Option<&str>, if_inet6: Option<&str>) -> Option<HostFamilies> {
    if route.is_none() && if_inet6.is_none() {
        return None;
    }
    let families = HostFamilies {
        // Routes unreadable while IPv6 addresses are: assume IPv4 works.
        v4: route.is_none_or(has_ipv4_route),
        // No if_inet6 file: the kernel has no IPv6.
        v6: if_inet6.is_some_and(has_global_ipv6),
    };
    (families.v4 || families.v6).then_some(families)
}

/// `RTF_UP`: the route is usable.
const RTF_UP: u32 = 0x1;

/// Whether `/proc/net/route` has an up route through a non-loopback
/// interface. Lines: `Iface Destination Gateway Flags ...`, hexadecimal,
/// after one header line.
fn has_ipv4_route(table: &str) -> bool {
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(iface), Some(flags)) = (fields.first(), fields.get(3)) else {
            return false;
        };
        let up = u32::from_str_radix(flags, 16).is_ok_and(|f| f & RTF_UP != 0);
        up && *iface != "lo"
    })
}

/// Scope of an address in `/proc/net/if_inet6` (the kernel's
/// `IPV6_ADDR_SCOPE_*` values shifted into the low byte): global and the
/// deprecated site-local are usable; host (loopback) and link are not.
const SCOPE_GLOBAL: u32 = 0x00;
const SCOPE_SITE: u32 = 0x40;
/// `IFA_F_DADFAILED`: the address is a duplicate and is not used.
const IFA_F_DADFAILED: u32 = 0x08;

/// Whether `/proc/net/if_inet6` lists a usable global address. Lines:
/// `address ifindex prefixlen scope flags name`, hexadecimal.
fn has_global_ipv6(addresses: &str) -> bool {
    addresses.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let hex = |i: usize| fields.get(i).and_then(|f| u32::from_str_radix(f, 16).ok());
        match (hex(3), hex(4)) {
            (Some(scope), Some(flags)) => {
                (scope == SCOPE_GLOBAL || scope == SCOPE_SITE) && flags & IFA_F_DADFAILED == 0
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE_HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    /// A pod on an IPv4 network: default route and subnet route on eth0.
    fn route_v4() -> String {
        format!(
            "{ROUTE_HEADER}eth0\t00000000\t0101F40A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t0000F40A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
        )
    }

    /// Loopback and the link-local address every interface gets.
    const IF_INET6_LINK_ONLY: &str = "\
00000000000000000000000000000001 01 80 10 80       lo
fe80000000000000a8c1abfffe123456 02 40 20 80     eth0
";

    /// A global (ULA) address on eth0 besides the link-local one.
    const IF_INET6_GLOBAL: &str = "\
00000000000000000000000000000001 01 80 10 80       lo
fd000010024400000000000000000005 02 40 00 80     eth0
fe80000000000000a8c1abfffe123456 02 40 20 80     eth0
";

    fn families(v4: bool, v6: bool) -> Option<HostFamilies> {
        Some(HostFamilies { v4, v6 })
    }

    #[test]
    fn an_ipv4_host_with_link_local_ipv6_asks_for_ipv4_only() {
        assert_eq!(
            host_families(Some(&route_v4()), Some(IF_INET6_LINK_ONLY)),
            families(true, false)
        );
    }

    #[test]
    fn a_kernel_without_ipv6_asks_for_ipv4_only() {
        assert_eq!(
            host_families(Some(&route_v4()), None),
            families(true, false)
        );
    }

    #[test]
    fn a_dual_stack_host_asks_for_both() {
        assert_eq!(
            host_families(Some(&route_v4()), Some(IF_INET6_GLOBAL)),
            families(true, true)
        );
    }

    #[test]
    fn an_ipv6_only_host_asks_for_ipv6_only() {
        // The IPv4 table is only its header (loopback lives in the local
        // table, which /proc/net/route does not show).
        assert_eq!(
            host_families(Some(ROUTE_HEADER), Some(IF_INET6_GLOBAL)),
            families(false, true)
        );
        let loopback_only =
            format!("{ROUTE_HEADER}lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n");
        assert_eq!(
            host_families(Some(&loopback_only), Some(IF_INET6_GLOBAL)),
            families(false, true)
        );
    }

    #[test]
    fn routes_that_are_down_and_failed_addresses_do_not_count() {
        let down =
            format!("{ROUTE_HEADER}eth0\t00000000\t0101F40A\t0002\t0\t0\t0\t00000000\t0\t0\t0\n");
        let dad_failed = "fd000010024400000000000000000005 02 40 00 88     eth0\n";
        assert_eq!(host_families(Some(&down), Some(dad_failed)), None);
        let site = "fec00000000000000000000000000005 02 40 40 80     eth0\n";
        assert_eq!(
            host_families(Some(&down), Some(site)),
            families(false, true)
        );
    }

    #[test]
    fn knowing_nothing_asks_for_both() {
        assert_eq!(host_families(None, None), None);
        assert_eq!(
            host_families(Some(ROUTE_HEADER), Some(IF_INET6_LINK_ONLY)),
            None,
            "no usable family at all: glibc then asks for both"
        );
        assert_eq!(host_families(Some(""), Some("garbage line\n")), None);
        // Routes unreadable, IPv6 readable: IPv4 is assumed.
        assert_eq!(
            host_families(None, Some(IF_INET6_LINK_ONLY)),
            families(true, false)
        );
    }
}
