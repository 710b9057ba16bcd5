//! Property tests of DNS packet handling: whatever bytes arrive, hickory's
//! decoder plus [`VmHandler`] never panic and answer with a well-formed
//! message; names inside `vm.` resolve exactly as the records say.
//!
//! Cases per property: proptest's default (256), or `PROPTEST_CASES=N`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use proptest::prelude::*;

use super::VmHandler;
use crate::records::{VmRecords, validate_name};

/// A response sink that keeps the encoded bytes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::new();
        let mut encoder = BinEncoder::new(&mut bytes);
        let info = response.destructive_emit(&mut encoder)?;
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes);
        Ok(info)
    }
}

/// Decodes `bytes` as the UDP listener does and, when that succeeds, runs
/// the handler. Returns the decoded response, `None` when the packet was
/// not a request (the listener drops those).
fn serve(records: &VmRecords, bytes: Vec<u8>) -> Result<Option<Message>, TestCaseError> {
    let src: SocketAddr = SocketAddr::from((Ipv4Addr::LOCALHOST, 5353));
    let Ok(request) = Request::from_bytes(bytes, src, Protocol::Udp) else {
        return Ok(None);
    };
    let capture = Capture::default();
    let handler = VmHandler {
        records: records.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    runtime.block_on(handler.handle_request::<_, TokioTime>(&request, capture.clone()));
    let sent = capture
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .ok_or_else(|| TestCaseError::fail("no response was sent"))?;
    let response = Message::from_vec(&sent).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(response.metadata.id, request.metadata.id);
    prop_assert_eq!(response.metadata.message_type, MessageType::Response);
    Ok(Some(response))
}

fn query_bytes(name: &Name, qtype: RecordType, id: u16) -> Result<Vec<u8>, TestCaseError> {
    let mut msg = Message::query();
    msg.metadata.id = id;
    msg.add_query(Query::query(name.clone(), qtype));
    msg.to_vec().map_err(|e| TestCaseError::fail(e.to_string()))
}

/// A VM name by the documented rule.
fn vm_name() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,61}[a-z0-9])?"
}

fn alpha_records() -> VmRecords {
    let records = VmRecords::new();
    // "alpha" is a valid name; a failure would show up as NXDOMAIN below.
    let _ = records.set("alpha", Ipv4Addr::new(172, 16, 0, 2));
    records
}

proptest! {
    /// Arbitrary bytes never panic the decoder or the handler.
    #[test]
    fn arbitrary_packets_are_answered_or_dropped(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        serve(&alpha_records(), bytes)?;
    }

    /// A valid query with bytes flipped, cut short or extended is answered
    /// with a well-formed message or dropped, never a panic.
    #[test]
    fn mutated_queries_are_answered_or_dropped(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let name = Name::from_ascii("alpha.vm.").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut bytes = query_bytes(&name, RecordType::A, 7)?;
        for (at, value) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        bytes.extend_from_slice(&tail);
        serve(&alpha_records(), bytes)?;
    }

    /// Any valid VM name with any address resolves to exactly that address,
    /// whatever the case of the query; a name not in the table is NXDOMAIN.
    #[test]
    fn every_valid_name_resolves_to_its_address(
        name in vm_name(),
        other in vm_name(),
        ip in any::<[u8; 4]>(),
        upper in any::<bool>(),
    ) {
        prop_assert!(validate_name(&name).is_ok());
        let records = VmRecords::new();
        let ip = Ipv4Addr::from(ip);
        records.set(&name, ip).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let asked = if upper { name.to_ascii_uppercase() } else { name.clone() };
        let qname = Name::from_ascii(format!("{asked}.vm.")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let response = serve(&records, query_bytes(&qname, RecordType::A, 1)?)?
            .ok_or_else(|| TestCaseError::fail("query not decoded"))?;
        prop_assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        let ips: Vec<Ipv4Addr> = response.answers.iter().filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        }).collect();
        prop_assert_eq!(ips, vec![ip]);
        if other != name {
            let qname = Name::from_ascii(format!("{other}.vm.")).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let response = serve(&records, query_bytes(&qname, RecordType::A, 2)?)?
                .ok_or_else(|| TestCaseError::fail("query not decoded"))?;
            prop_assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
            prop_assert!(response.answers.is_empty());
        }
    }

    /// Any name outside `vm.` is refused: the server is never a resolver.
    #[test]
    fn names_outside_the_zone_are_refused(labels in proptest::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,18}[a-zA-Z0-9])?", 1..4)) {
        let mut text = labels.join(".");
        if text.eq_ignore_ascii_case("vm") || text.to_ascii_lowercase().ends_with(".vm") {
            text.push_str(".example");
        }
        let qname = Name::from_ascii(format!("{text}.")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let response = serve(&alpha_records(), query_bytes(&qname, RecordType::A, 3)?)?
            .ok_or_else(|| TestCaseError::fail("query not decoded"))?;
        prop_assert_eq!(response.metadata.response_code, ResponseCode::Refused);
        prop_assert!(response.answers.is_empty());
    }

    /// `validate_name` accepts exactly `[a-z][a-z0-9-]{0,62}` not ending in
    /// `-`, and the table refuses every other name.
    #[test]
    fn record_names_follow_the_documented_rule(name in "[a-z0-9-]{0,70}|\\PC{0,6}") {
        let rule = name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.ends_with('-')
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        prop_assert_eq!(validate_name(&name).is_ok(), rule, "{:?}", name);
        prop_assert_eq!(VmRecords::new().set(&name, Ipv4Addr::LOCALHOST).is_ok(), rule);
    }
}
