//! Unit tests of the answer logic, driven through the real request handler:
//! queries are built and encoded with hickory-proto, decoded by
//! hickory-server's `Request`, and the handler's response is encoded and
//! parsed back into a `Message`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;

use super::*;

const ALPHA: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);

/// A response sink that keeps the encoded bytes instead of sending them.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

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
        *self.0.lock().expect("capture lock") = bytes;
        Ok(info)
    }
}

fn query_message(name: &str, qtype: RecordType) -> Message {
    let mut msg = Message::query();
    msg.metadata.id = 4242;
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    msg
}

async fn ask_message(records: &VmRecords, msg: &Message) -> Message {
    let bytes = msg.to_vec().expect("encode query");
    let src: SocketAddr = "127.0.0.1:5353".parse().expect("addr");
    let request = Request::from_bytes(bytes, src, Protocol::Udp).expect("decode request");
    let capture = Capture::default();
    let handler = VmHandler {
        records: records.clone(),
    };
    handler
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    let bytes = capture.0.lock().expect("capture lock").clone();
    let response = Message::from_vec(&bytes).expect("decode response");
    assert_eq!(response.metadata.id, 4242);
    assert_eq!(response.metadata.message_type, MessageType::Response);
    assert!(!response.metadata.recursion_available);
    response
}

async fn ask(records: &VmRecords, name: &str, qtype: RecordType) -> Message {
    ask_message(records, &query_message(name, qtype)).await
}

fn alpha_records() -> VmRecords {
    let records = VmRecords::new();
    records.set("alpha", ALPHA).expect("valid name");
    records
}

fn a_of(msg: &Message) -> Vec<Ipv4Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn has_soa_authority(msg: &Message) -> bool {
    msg.authorities.len() == 1
        && msg.authorities[0].record_type() == RecordType::SOA
        && msg.authorities[0].name.to_ascii() == "vm."
}

#[tokio::test]
async fn a_hit_is_authoritative_with_short_ttl() {
    let msg = ask(&alpha_records(), "alpha.vm.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    assert!(msg.metadata.recursion_desired, "RD is copied");
    assert_eq!(a_of(&msg), vec![ALPHA]);
    assert_eq!(msg.answers[0].ttl, RECORD_TTL);
    assert_eq!(msg.answers[0].name.to_ascii(), "alpha.vm.");
    assert!(msg.authorities.is_empty());
}

#[tokio::test]
async fn unknown_name_is_nxdomain_with_soa() {
    let records = alpha_records();
    for name in ["nosuch.vm.", "www.alpha.vm.", "a.b.c.vm."] {
        let msg = ask(&records, name, RecordType::A).await;
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(msg.metadata.authoritative);
        assert!(msg.answers.is_empty());
        assert!(has_soa_authority(&msg), "{name}: {:?}", msg.authorities);
        let RData::SOA(soa) = &msg.authorities[0].data else {
            panic!("not an SOA");
        };
        assert_eq!(soa.minimum, RECORD_TTL, "negative TTL stays short");
    }
}

#[tokio::test]
async fn other_types_of_existing_name_are_nodata() {
    let records = alpha_records();
    for qtype in [RecordType::AAAA, RecordType::MX, RecordType::TXT] {
        let msg = ask(&records, "alpha.vm.", qtype).await;
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{qtype}");
        assert!(msg.metadata.authoritative);
        assert!(msg.answers.is_empty());
        assert!(has_soa_authority(&msg));
    }
}

#[tokio::test]
async fn outside_the_zone_is_refused() {
    let records = alpha_records();
    for name in ["example.com.", ".", "vm.example.com.", "alpha.vmx."] {
        let msg = ask(&records, name, RecordType::A).await;
        assert_eq!(msg.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(!msg.metadata.authoritative);
        assert!(msg.answers.is_empty() && msg.authorities.is_empty());
    }
}

#[tokio::test]
async fn names_are_case_insensitive() {
    let records = alpha_records();
    for name in ["ALPHA.VM.", "Alpha.Vm.", "alpha.VM."] {
        let msg = ask(&records, name, RecordType::A).await;
        assert_eq!(a_of(&msg), vec![ALPHA], "{name}");
    }
    let apex = ask(&records, "VM.", RecordType::SOA).await;
    assert_eq!(apex.answers.len(), 1);
}

#[tokio::test]
async fn apex_serves_soa_and_ns() {
    let records = alpha_records();
    let soa = ask(&records, "vm.", RecordType::SOA).await;
    assert!(soa.metadata.authoritative);
    assert_eq!(soa.answers.len(), 1);
    let RData::SOA(data) = &soa.answers[0].data else {
        panic!("not an SOA: {:?}", soa.answers);
    };
    assert_eq!(data.serial, records.serial());

    let ns = ask(&records, "vm.", RecordType::NS).await;
    let RData::NS(target) = &ns.answers[0].data else {
        panic!("not an NS: {:?}", ns.answers);
    };
    assert_eq!(target.0.to_ascii(), "vm.");

    let a = ask(&records, "vm.", RecordType::A).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.answers.is_empty() && has_soa_authority(&a));
}

#[tokio::test]
async fn changes_are_visible_to_the_next_query() {
    let records = VmRecords::new();
    let msg = ask(&records, "beta.vm.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);

    let ip = Ipv4Addr::new(172, 16, 0, 9);
    records.set("beta", ip).expect("valid");
    assert_eq!(a_of(&ask(&records, "beta.vm.", RecordType::A).await), [ip]);

    records.rename("beta", "gamma").expect("valid");
    let old = ask(&records, "beta.vm.", RecordType::A).await;
    assert_eq!(old.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(a_of(&ask(&records, "gamma.vm.", RecordType::A).await), [ip]);

    let moved = Ipv4Addr::new(172, 16, 0, 10);
    records.replace_all([("gamma", moved)]).expect("valid");
    assert_eq!(
        a_of(&ask(&records, "gamma.vm.", RecordType::A).await),
        [moved]
    );

    records.remove("gamma");
    let gone = ask(&records, "gamma.vm.", RecordType::A).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn edns_is_answered_and_unknown_versions_get_badvers() {
    let records = alpha_records();
    let mut msg = query_message("alpha.vm.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    msg.set_edns(edns.clone());
    let reply = ask_message(&records, &msg).await;
    assert_eq!(a_of(&reply), vec![ALPHA]);
    assert_eq!(reply.edns.as_ref().map(Edns::version), Some(0));

    edns.set_version(1);
    msg.set_edns(edns);
    let reply = ask_message(&records, &msg).await;
    // BADVERS and BADSIG share the value 16; the decoder picks BADSIG.
    assert_eq!(
        u16::from(reply.metadata.response_code),
        u16::from(ResponseCode::BADVERS)
    );
}

#[tokio::test]
async fn non_query_opcodes_are_not_implemented() {
    let mut msg = query_message("alpha.vm.", RecordType::A);
    msg.metadata.op_code = OpCode::Notify;
    let reply = ask_message(&alpha_records(), &msg).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
}
