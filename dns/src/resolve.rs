//! Answers for the cluster's names, after the Kubernetes DNS specification
//! (`kubernetes/dns` docs/specification.md, schema 1.1.0) and CoreDNS's `kubernetes` plugin
//! as kubeadm configures it (`pods insecure`, TTL 30):
//!
//! | name | answer |
//! |---|---|
//! | `<svc>.<ns>.svc.<zone>` | A/AAAA: the cluster IPs; headless: the ready endpoints (NXDOMAIN when none); ExternalName: CNAME |
//! | `<host>.<svc>.<ns>.svc.<zone>` | A/AAAA of the endpoint with that hostname (or dashed address) |
//! | `_<port>._<proto>.<svc>.<ns>.svc.<zone>` | SRV per named port (headless: per endpoint), addresses in additional |
//! | `<a-b-c-d>.<ns>.pod.<zone>` | A `a.b.c.d` |
//! | `d.c.b.a.in-addr.arpa`, `….ip6.arpa` | PTR of a cluster IP or a headless endpoint |
//! | `dns-version.<zone>` | TXT `1.1.0` |
//!
//! A name in the zone that does not exist is NXDOMAIN, one without records of the asked type is
//! NODATA, both with the zone's SOA. Everything else is [`Resolution::Forward`]ed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::records::{Kind, Port, Records};

/// The version of the Kubernetes DNS specification these answers follow.
const SCHEMA_VERSION: &str = "1.1.0";

/// The cluster's zone and how its answers are stamped.
#[derive(Clone, Debug)]
pub struct Zone {
    /// Lower case, without the trailing dot (`cluster.local`).
    pub domain: String,
    pub ttl: u32,
}

/// How a question is answered.
#[derive(Debug, PartialEq)]
pub enum Resolution {
    /// An authoritative answer from the zone.
    Answer(Answer),
    /// An ExternalName's CNAME; the answer for the target follows it when asked for addresses.
    Alias(Box<Alias>),
    /// Not a name of the cluster: ask the upstream resolvers.
    Forward,
}

/// An ExternalName's CNAME record and the name it points to.
#[derive(Debug, PartialEq)]
pub struct Alias {
    pub cname: Record,
    pub target: Name,
}

/// An authoritative answer.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The zone's SOA, in the authority section of NXDOMAIN and NODATA answers.
    pub authority: Vec<Record>,
}

impl Zone {
    /// Answers `name`/`kind` from `records`; `serial` is the SOA's.
    pub fn resolve(
        &self,
        records: &Records,
        name: &Name,
        kind: RecordType,
        serial: u32,
    ) -> Resolution {
        let labels: Vec<String> = name
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        if let Some(ip) = arpa_address(&labels) {
            return self.reverse(records, name, &ip, kind, serial);
        }
        let Some(inner) = labels
            .len()
            .checked_sub(self.domain.split('.').count())
            .filter(|&n| {
                labels[n..]
                    .iter()
                    .map(String::as_str)
                    .eq(self.domain.split('.'))
            })
            .map(|n| &labels[..n])
        else {
            return Resolution::Forward;
        };
        let found = match inner.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            [] => self.apex(records, kind, serial),
            ["dns-version"] => {
                Found::Records(vec![RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()]))])
            }
            ["ns", "dns"] => Found::Addresses(self.own_addresses(records)),
            ["svc"] | ["pod"] => Found::Empty,
            [ns, "svc"] if records.has_namespace(ns) => Found::Empty,
            [svc, ns, "svc"] => return self.service(records, name, svc, ns, kind, serial),
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                self.srv(records, svc, ns, Some((&port[1..], &proto[1..])))
            }
            [host, svc, ns, "svc"] => self.endpoint(records, host, svc, ns),
            [ip, _ns, "pod"] => match undashed(ip) {
                Some(ip) => Found::Addresses(vec![ip]),
                None => Found::Nothing,
            },
            _ => Found::Nothing,
        };
        Resolution::Answer(self.answer(name, kind, found, serial))
    }

    fn apex(&self, records: &Records, kind: RecordType, serial: u32) -> Found {
        match kind {
            RecordType::SOA => Found::Records(vec![RData::SOA(self.soa_data(serial))]),
            RecordType::NS => match self.name("ns.dns") {
                Some(ns) if !self.own_addresses(records).is_empty() => {
                    Found::Records(vec![RData::NS(NS(ns))])
                }
                _ => Found::Empty,
            },
            _ => Found::Empty,
        }
    }

    /// The DNS service's own addresses (`ns.dns.<zone>`, the SOA's primary).
    fn own_addresses(&self, records: &Records) -> Vec<IpAddr> {
        match records.service("kube-system", "kube-dns").map(|s| &s.kind) {
            Some(Kind::ClusterIp(ips)) => ips.clone(),
            _ => Vec::new(),
        }
    }

    fn service(
        &self,
        records: &Records,
        name: &Name,
        svc: &str,
        ns: &str,
        kind: RecordType,
        serial: u32,
    ) -> Resolution {
        let found = match records.service(ns, svc).map(|s| &s.kind) {
            None => Found::Nothing,
            Some(Kind::ExternalName(target)) => {
                let Ok(target) = Name::from_ascii(format!("{}.", target.trim_end_matches('.')))
                else {
                    return Resolution::Answer(self.answer(name, kind, Found::Nothing, serial));
                };
                let cname = self.record(name.clone(), RData::CNAME(CNAME(target.clone())));
                return Resolution::Alias(Box::new(Alias { cname, target }));
            }
            Some(Kind::Headless) if records.endpoints(ns, svc).next().is_none() => Found::Nothing,
            Some(_) if kind == RecordType::SRV => self.srv(records, svc, ns, None),
            Some(Kind::ClusterIp(ips)) => Found::Addresses(ips.clone()),
            Some(Kind::Headless) => Found::Addresses(
                records
                    .endpoints(ns, svc)
                    .flat_map(|(e, _)| e.addresses.iter().copied())
                    .collect(),
            ),
        };
        Resolution::Answer(self.answer(name, kind, found, serial))
    }

    /// SRV records of a Service's named ports (only `port`/`proto` when given): one targeting
    /// the Service for a cluster IP, one per endpoint for a headless Service.
    fn srv(&self, records: &Records, svc: &str, ns: &str, only: Option<(&str, &str)>) -> Found {
        let Some(view) = records.service(ns, svc) else {
            return Found::Nothing;
        };
        let wanted = |p: &Port| only.is_none_or(|(n, proto)| p.name == n && p.protocol == proto);
        let base = format!("{svc}.{ns}.svc");
        let mut srv = Vec::new();
        let mut extra = Vec::new();
        match &view.kind {
            Kind::ClusterIp(ips) => {
                let Some(target) = self.name(&base) else {
                    return Found::Nothing;
                };
                for p in view.ports.iter().filter(|p| wanted(p)) {
                    srv.push(RData::SRV(SRV::new(0, 100, p.port, target.clone())));
                }
                if !srv.is_empty() {
                    extra.extend(ips.iter().map(|ip| (target.clone(), *ip)));
                }
            }
            Kind::Headless => {
                let endpoints: Vec<_> = records.endpoints(ns, svc).collect();
                let weight = u16::try_from(100 / endpoints.len().max(1)).unwrap_or(1);
                for (e, ports) in endpoints {
                    let Some(target) = e.label().and_then(|l| self.name(&format!("{l}.{base}")))
                    else {
                        continue;
                    };
                    let before = srv.len();
                    for p in ports.iter().filter(|p| wanted(p)) {
                        srv.push(RData::SRV(SRV::new(0, weight, p.port, target.clone())));
                    }
                    if srv.len() > before {
                        extra.extend(e.addresses.iter().map(|ip| (target.clone(), *ip)));
                    }
                }
            }
            Kind::ExternalName(_) => {}
        }
        if srv.is_empty() && only.is_some() {
            return Found::Nothing;
        }
        Found::Srv(srv, extra)
    }

    /// `<host>.<svc>.<ns>.svc`: the endpoint of a Service with that hostname or dashed address.
    fn endpoint(&self, records: &Records, host: &str, svc: &str, ns: &str) -> Found {
        let ips: Vec<IpAddr> = records
            .endpoints(ns, svc)
            .filter(|(e, _)| e.label().as_deref() == Some(host))
            .flat_map(|(e, _)| e.addresses.iter().copied())
            .collect();
        if ips.is_empty() {
            Found::Nothing
        } else {
            Found::Addresses(ips)
        }
    }

    fn reverse(
        &self,
        records: &Records,
        name: &Name,
        ip: &IpAddr,
        kind: RecordType,
        serial: u32,
    ) -> Resolution {
        let names: Vec<RData> = records
            .reverse(ip)
            .filter_map(|n| self.name(n))
            .map(|n| RData::PTR(PTR(n)))
            .collect();
        if names.is_empty() {
            return Resolution::Forward;
        }
        let found = if kind == RecordType::PTR {
            Found::Records(names)
        } else {
            Found::Empty
        };
        Resolution::Answer(self.answer(name, kind, found, serial))
    }

    /// Turns what a name holds into the answer to `kind`.
    fn answer(&self, name: &Name, kind: RecordType, found: Found, serial: u32) -> Answer {
        let mut answer = Answer::default();
        match found {
            Found::Nothing => answer.code = ResponseCode::NXDomain,
            Found::Empty => {}
            Found::Addresses(ips) => {
                answer.answers = addresses(&ips, kind)
                    .map(|d| self.record(name.clone(), d))
                    .collect();
            }
            Found::Records(data) => {
                answer.answers = data
                    .into_iter()
                    .filter(|d| d.record_type() == kind)
                    .map(|d| self.record(name.clone(), d))
                    .collect();
            }
            Found::Srv(srv, extra) if kind == RecordType::SRV => {
                answer.answers = srv
                    .into_iter()
                    .map(|d| self.record(name.clone(), d))
                    .collect();
                answer.additionals = extra
                    .into_iter()
                    .map(|(target, ip)| {
                        let data = match ip {
                            IpAddr::V4(v4) => RData::A(A(v4)),
                            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                        };
                        self.record(target, data)
                    })
                    .collect();
            }
            Found::Srv(..) => {}
        }
        if answer.answers.is_empty() {
            answer.authority = self.soa(serial).into_iter().collect();
        }
        answer
    }

    fn record(&self, name: Name, data: RData) -> Record {
        Record::from_rdata(name, self.ttl, data)
    }

    /// A name of the zone from its part before the zone (`web.default.svc`).
    pub fn name(&self, relative: &str) -> Option<Name> {
        Name::from_ascii(format!("{relative}.{}.", self.domain)).ok()
    }

    fn soa_data(&self, serial: u32) -> SOA {
        let primary = self.name("ns.dns").unwrap_or_else(Name::root);
        let mailbox = self.name("hostmaster").unwrap_or_else(Name::root);
        SOA::new(primary, mailbox, serial, 7200, 1800, 86400, self.ttl)
    }

    /// The zone's SOA record, for the authority section.
    pub fn soa(&self, serial: u32) -> Option<Record> {
        let apex = Name::from_ascii(format!("{}.", self.domain)).ok()?;
        Some(self.record(apex, RData::SOA(self.soa_data(serial))))
    }
}

/// What a name of the zone holds.
enum Found {
    /// The name does not exist.
    Nothing,
    /// The name exists but holds nothing (an empty non-terminal such as `svc.<zone>`).
    Empty,
    /// Addresses: A for IPv4, AAAA for IPv6.
    Addresses(Vec<IpAddr>),
    /// Records of any type; the asked type's are answered.
    Records(Vec<RData>),
    /// SRV records and the addresses of their targets.
    Srv(Vec<RData>, Vec<(Name, IpAddr)>),
}

/// The records of `ips` that answer `kind` (A or AAAA), each address once.
fn addresses(ips: &[IpAddr], kind: RecordType) -> impl Iterator<Item = RData> + '_ {
    let mut seen = std::collections::HashSet::new();
    ips.iter()
        .filter(move |ip| seen.insert(**ip))
        .filter_map(move |ip| match (ip, kind) {
            (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(*v4))),
            (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        })
}

/// `10-244-1-5` → 10.244.1.5; IPv6 with `-` for `:`.
fn undashed(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3 {
        return label
            .replace('-', ".")
            .parse::<Ipv4Addr>()
            .ok()
            .map(IpAddr::V4);
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The address a reverse name (`5.1.244.10.in-addr.arpa`, 32 nibbles `.ip6.arpa`) names.
fn arpa_address(labels: &[String]) -> Option<IpAddr> {
    match labels {
        [d, c, b, a, in_addr, arpa] if in_addr == "in-addr" && arpa == "arpa" => {
            let octet = |s: &String| s.parse::<u8>().ok().filter(|_| !s.starts_with('+'));
            Some(IpAddr::V4(Ipv4Addr::new(
                octet(a)?,
                octet(b)?,
                octet(c)?,
                octet(d)?,
            )))
        }
        [nibbles @ .., ip6, arpa] if nibbles.len() == 32 && ip6 == "ip6" && arpa == "arpa" => {
            let mut bits: u128 = 0;
            for n in nibbles.iter().rev() {
                let [c] = n.as_bytes() else { return None };
                bits = bits << 4 | u128::from((*c as char).to_digit(16)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bits)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
