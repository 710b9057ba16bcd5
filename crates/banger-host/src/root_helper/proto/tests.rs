//! Round trips, the frame limit, and that decoding checks names and
//! firewall states again.

use super::*;
use crate::net::firewall::GuestRule;

fn bridge() -> BridgeName {
    BridgeName::new("banger0").expect("bridge")
}

fn firewall() -> FirewallState {
    FirewallState {
        bridge: bridge(),
        bridge_ip: Ipv4Addr::new(172, 30, 0, 1),
        cidr: "172.30.0.0/24".parse().expect("cidr"),
        dns_ports: vec![53],
        allowed_host_ports: Vec::new(),
        dns_redirect: None,
        guests: vec![GuestRule {
            tap: TapName::new(1),
            ip: Ipv4Addr::new(172, 30, 0, 2),
            nat: false,
        }],
    }
}

fn every_request() -> Vec<Request> {
    vec![
        Request::Hello,
        Request::EnsureBridge {
            bridge: bridge(),
            ip: Ipv4Addr::new(172, 30, 0, 1),
            prefix: 24,
        },
        Request::DeleteBridge { bridge: bridge() },
        Request::CreateTap {
            tap: TapName::new(0),
            bridge: bridge(),
        },
        Request::DeleteTap {
            tap: TapName::new(9),
        },
        Request::ListBangerTaps,
        Request::ApplyFirewall { state: firewall() },
        Request::RemoveFirewall,
        Request::RouteVmDomain {
            bridge: bridge(),
            server: "172.30.0.1:53".parse().expect("addr"),
        },
    ]
}

fn decode<T: serde::de::DeserializeOwned>(frame: &[u8]) -> T {
    let len = u32::from_be_bytes(frame[..4].try_into().expect("header")) as usize;
    assert_eq!(len, frame.len() - 4, "header counts the body");
    serde_json::from_slice(&frame[4..]).expect("decode")
}

#[test]
fn every_request_and_reply_round_trips() {
    for request in every_request() {
        let frame = encode(&request).expect("encode");
        assert_eq!(decode::<Request>(&frame), request);
    }
    let replies = [
        Response::Ok(Reply::Done),
        Response::Ok(Reply::Taps(vec![TapName::new(0), TapName::new(4)])),
        Response::Ok(Reply::Hello(HelloReply {
            version: "0.1.0".into(),
            pid: 7,
            owner_uid: 1000,
            bridge: bridge(),
            allowed_cidrs: vec!["172.30.0.0/16".parse().expect("cidr")],
        })),
        Response::Ok(Reply::Routing(VmDomainRouting::NoResolved {
            reason: "absent".into(),
        })),
        Response::Err(ErrorReply {
            code: ErrorCode::Forbidden,
            message: "no".into(),
        }),
    ];
    for reply in replies {
        let frame = encode(&reply).expect("encode");
        assert_eq!(decode::<Response>(&frame), reply);
    }
}

#[test]
fn the_wire_form_is_plain_json() {
    let json = serde_json::to_value(Request::CreateTap {
        tap: TapName::new(2),
        bridge: bridge(),
    })
    .expect("json");
    assert_eq!(
        json,
        serde_json::json!({"create_tap": {"tap": "bgtap2", "bridge": "banger0"}})
    );
    assert_eq!(
        serde_json::to_value(Request::Hello).expect("json"),
        serde_json::json!("hello")
    );
    let error = serde_json::to_value(Response::Err(ErrorReply {
        code: ErrorCode::BadRequest,
        message: "x".into(),
    }))
    .expect("json");
    assert_eq!(error["err"]["code"], "bad_request");
}

#[test]
fn decoding_checks_names_fields_and_states_again() {
    let refused = [
        // A TAP name banger would not make.
        r#"{"create_tap": {"tap": "eth0", "bridge": "banger0"}}"#,
        r#"{"delete_tap": {"tap": "bgtap01"}}"#,
        // A bridge name that is not an interface name.
        r#"{"ensure_bridge": {"bridge": "../x", "ip": "172.30.0.1", "prefix": 24}}"#,
        // An owner uid: the request has no such field.
        r#"{"create_tap": {"tap": "bgtap0", "bridge": "banger0", "owner_uid": 0}}"#,
        // Unknown operations and garbage.
        r#"{"run_command": {"argv": ["sh"]}}"#,
        r#"not json"#,
        // A firewall state that does not validate (guest outside the CIDR).
        r#"{"apply_firewall": {"state": {"bridge": "banger0", "bridge_ip": "172.30.0.1",
            "cidr": "172.30.0.0/24", "dns_ports": [53], "allowed_host_ports": [],
            "guests": [{"tap": "bgtap0", "ip": "10.0.0.2", "nat": true}]}}}"#,
    ];
    for text in refused {
        assert!(
            serde_json::from_str::<Request>(text).is_err(),
            "accepted {text}"
        );
    }
}

#[test]
fn frames_over_the_limit_are_refused_both_ways() {
    let huge = Request::ApplyFirewall {
        state: FirewallState {
            cidr: "10.0.0.0/8".parse().expect("cidr"),
            bridge_ip: Ipv4Addr::new(10, 0, 0, 1),
            guests: (2..40_000u32)
                .map(|index| GuestRule {
                    tap: TapName::new(index),
                    ip: Ipv4Addr::from(0x0a00_0000 + index),
                    nat: true,
                })
                .collect(),
            ..firewall()
        },
    };
    assert!(matches!(encode(&huge), Err(FrameError::TooLarge { .. })));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let header = (MAX_FRAME + 1).to_be_bytes();
        let mut reader: &[u8] = &header;
        assert!(matches!(
            read_frame(&mut reader).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut empty: &[u8] = &[];
        assert!(matches!(read_frame(&mut empty).await, Ok(None)));
        let mut short: &[u8] = &[0, 0, 0, 9, b'{'];
        assert!(matches!(
            read_frame(&mut short).await,
            Err(FrameError::Truncated)
        ));
        let mut half_header: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut half_header).await,
            Err(FrameError::Truncated)
        ));
    });
    let mut reader: &[u8] = &(MAX_FRAME + 1).to_be_bytes();
    assert!(matches!(
        read_frame_blocking(&mut reader),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn a_firewall_with_thousands_of_guests_fits() {
    let state = FirewallState {
        cidr: "10.0.0.0/16".parse().expect("cidr"),
        bridge_ip: Ipv4Addr::new(10, 0, 0, 1),
        guests: (2..4_002u32)
            .map(|index| GuestRule {
                tap: TapName::new(index),
                ip: Ipv4Addr::from(0x0a00_0000 + index),
                nat: index % 2 == 0,
            })
            .collect(),
        ..firewall()
    };
    let frame = encode(&Request::ApplyFirewall { state }).expect("4000 guests fit");
    assert!(frame.len() < 300 << 10, "{} bytes", frame.len());
}
