//! What the server answers: the `vm.` zone built on the fly from
//! [`VmRecords`], and the hickory-server request handler around it.
//!
//! The zone follows RFC 6303's shape for locally served zones: the apex is
//! its own name server (`vm. NS vm.`) and the SOA's contact is
//! `nobody.invalid.`. Its negative TTL (SOA minimum) is as short as the
//! record TTL, so a resolver that cached "no such VM" learns about a new VM
//! within seconds.

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, NS, SOA};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::records::VmRecords;

/// TTL of every record served, in seconds. Short because VMs come and go;
/// the server itself has no cache, so this only bounds client-side caches.
pub const RECORD_TTL: u32 = 5;

/// The zone banger is authoritative for.
pub const ZONE: &str = "vm.";

/// The answer to one question, before it is put on the wire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub(crate) code: ResponseCode,
    /// Set for everything inside `vm.`; REFUSED answers are not ours.
    pub(crate) authoritative: bool,
    pub(crate) answers: Vec<Record>,
    pub(crate) authority: Vec<Record>,
}

impl Answer {
    fn refused() -> Self {
        Self {
            code: ResponseCode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
        }
    }
}

/// The zone apex as a [`Name`]; parsing a constant cannot fail, but the
/// fallback keeps the no-unwrap rule without a panic path.
fn zone_name() -> Name {
    Name::from_ascii(ZONE).unwrap_or_else(|_| Name::root())
}

fn soa_record(records: &VmRecords) -> Record {
    let apex = zone_name();
    let contact = Name::from_ascii("nobody.invalid.").unwrap_or_else(|_| Name::root());
    // refresh/retry/expire only matter to secondaries, which banger has
    // none of; they get conventional values.
    let soa = SOA::new(
        apex.clone(),
        contact,
        records.serial(),
        3600,
        600,
        86400,
        RECORD_TTL,
    );
    Record::from_rdata(apex, RECORD_TTL, RData::SOA(soa))
}

fn ns_record() -> Record {
    let apex = zone_name();
    Record::from_rdata(apex.clone(), RECORD_TTL, RData::NS(NS(apex)))
}

/// Answers one question from the current records.
pub(crate) fn answer(
    records: &VmRecords,
    qname: &LowerName,
    qtype: RecordType,
    qclass: DNSClass,
) -> Answer {
    let zone = LowerName::from(zone_name());
    // Only IN data exists here, and anything outside `vm.` is somebody
    // else's: refusing (rather than recursing) keeps this server from being
    // an open resolver on the bridge.
    if !zone.zone_of(qname) || !matches!(qclass, DNSClass::IN | DNSClass::ANY) {
        return Answer::refused();
    }
    let mut out = Answer {
        code: ResponseCode::NoError,
        authoritative: true,
        answers: Vec::new(),
        authority: Vec::new(),
    };
    if *qname == zone {
        match qtype {
            RecordType::SOA => out.answers.push(soa_record(records)),
            RecordType::NS => out.answers.push(ns_record()),
            RecordType::ANY => {
                out.answers.push(soa_record(records));
                out.answers.push(ns_record());
            }
            _ => out.authority.push(soa_record(records)),
        }
        return out;
    }
    // `<name>.vm.` has exactly two labels; deeper names (`www.alpha.vm.`)
    // do not exist, so they fall through to NXDOMAIN.
    let ip = if qname.num_labels() == 2 {
        qname
            .iter()
            .next()
            .and_then(|label| std::str::from_utf8(label).ok())
            .and_then(|label| records.get(label))
    } else {
        None
    };
    match ip {
        Some(ip) if matches!(qtype, RecordType::A | RecordType::ANY) => {
            out.answers.push(Record::from_rdata(
                Name::from(qname),
                RECORD_TTL,
                RData::A(A(ip)),
            ));
        }
        // NODATA: the name exists but has no record of this type (AAAA:
        // guests are IPv4-only). The SOA lets resolvers cache that.
        Some(_) => out.authority.push(soa_record(records)),
        None => {
            out.code = ResponseCode::NXDomain;
            out.authority.push(soa_record(records));
        }
    }
    out
}

/// The hickory-server [`RequestHandler`] serving the `vm.` zone.
#[derive(Debug, Clone)]
pub(crate) struct VmHandler {
    pub(crate) records: VmRecords,
}

#[async_trait::async_trait]
impl RequestHandler for VmHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        // EDNS is echoed in its minimal form (version 0, the client's
        // payload size), like hickory's own catalog does; versions above 0
        // are answered BADVERS as RFC 6891 requires.
        let mut response_edns = None;
        if let Some(req_edns) = request.edns.as_ref() {
            let mut edns = Edns::new();
            edns.set_max_payload(req_edns.max_payload().max(512));
            edns.set_version(0);
            response_edns = Some((edns, req_edns.version() > 0));
        }
        let edns_ref = response_edns.as_ref().map(|(edns, _)| edns);
        let builder = MessageResponseBuilder::new(&request.queries, edns_ref);

        let code = if matches!(response_edns, Some((_, true))) {
            Some(ResponseCode::BADVERS)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else {
            None
        };
        let result = match (code, request.request_info()) {
            (Some(code), _) => {
                let msg = builder.error_msg(&request.metadata, code);
                response_handle.send_response(msg).await
            }
            // Not exactly one question.
            (None, Err(_)) => {
                let msg = builder.error_msg(&request.metadata, ResponseCode::FormErr);
                response_handle.send_response(msg).await
            }
            (None, Ok(info)) => {
                let query = info.query;
                let ans = answer(
                    &self.records,
                    query.name(),
                    query.query_type(),
                    query.query_class(),
                );
                tracing::debug!(
                    name = %query.name(),
                    qtype = %query.query_type(),
                    code = %ans.code,
                    src = %request.src(),
                    "dns query"
                );
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.authoritative = ans.authoritative;
                metadata.response_code = ans.code;
                let msg = builder.build(
                    metadata,
                    ans.answers.iter(),
                    ans.authority.iter(),
                    std::iter::empty(),
                    std::iter::empty(),
                );
                response_handle.send_response(msg).await
            }
        };
        match result {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, src = %request.src(), "sending DNS response failed");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_server::proto::op::Header {
                    metadata,
                    counts: Default::default(),
                })
            }
        }
    }
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "answer_properties.rs"]
mod properties;
