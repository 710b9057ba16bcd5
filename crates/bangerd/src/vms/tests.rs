//! Unit tests of the resource bounds, without any VM lifecycle.

use super::*;

const HOST_MIB: u64 = 8192;
const MAX_DISK: u64 = 1 << 40;

fn check(request: ResourceRequest) -> Result<(), VmError> {
    check_bounds(request, 4, MAX_DISK, || Ok(HOST_MIB))
}

#[test]
fn values_within_bounds_pass_and_each_bound_is_named() {
    let at_limits = ResourceRequest {
        vcpus: Some(32),
        memory_mib: Some(8192),
        disk_bytes: Some(MAX_DISK),
    };
    check(at_limits).expect("values at the limits are accepted");
    check(ResourceRequest::default()).expect("nothing requested");

    let error = check(ResourceRequest {
        memory_mib: Some(8193),
        ..ResourceRequest::default()
    })
    .expect_err("over host memory");
    assert!(matches!(
        error,
        VmError::MemoryTooLarge {
            memory_mib: 8193,
            host_mib: 8192
        }
    ));
    assert_eq!(error.code(), ErrorCode::BadRequest);
    assert!(error.to_string().contains("8192 MiB"), "{error}");

    let error = check(ResourceRequest {
        disk_bytes: Some(4000 << 40),
        ..ResourceRequest::default()
    })
    .expect_err("4000T disk");
    assert_eq!(error.code(), ErrorCode::BadRequest);
    let message = error.to_string();
    assert!(
        message.contains("4000T") && message.contains("(1T)"),
        "{message}"
    );
    assert!(message.contains("max_disk_size"), "{message}");

    for vcpus in [0, 33] {
        let error = check(ResourceRequest {
            vcpus: Some(vcpus),
            ..ResourceRequest::default()
        })
        .expect_err("vcpus out of range");
        assert_eq!(error.code(), ErrorCode::BadRequest);
        assert!(error.to_string().contains("1 to 32"), "{error}");
    }
    let error = check(ResourceRequest {
        memory_mib: Some(MIN_MEMORY_MIB - 1),
        ..ResourceRequest::default()
    })
    .expect_err("too little memory");
    assert!(matches!(error, VmError::MemoryTooSmall { .. }));
}

#[test]
fn host_memory_is_asked_only_for_memory_requests_and_its_failure_is_typed() {
    let unreadable = || {
        Err(VmError::HostMemoryUnknown {
            path: PathBuf::from(MEMINFO),
            problem: HostMemoryProblem::NoMemTotal,
        })
    };
    check_bounds(
        ResourceRequest {
            vcpus: Some(2),
            disk_bytes: Some(1 << 30),
            memory_mib: None,
        },
        4,
        MAX_DISK,
        unreadable,
    )
    .expect("memory not asked for");
    let error = check_bounds(
        ResourceRequest {
            memory_mib: Some(1024),
            ..ResourceRequest::default()
        },
        4,
        MAX_DISK,
        unreadable,
    )
    .expect_err("memory cannot be checked");
    assert_eq!(error.code(), ErrorCode::Unavailable);
    assert!(error.to_string().contains("/proc/meminfo"), "{error}");
}

#[test]
fn mem_total_is_parsed_in_kib() {
    let meminfo = "MemTotal:       16318504 kB\nMemFree:         1000 kB\n";
    assert_eq!(parse_mem_total(meminfo), Some(16_318_504));
    assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    assert_eq!(parse_mem_total("MemTotal: lots kB\n"), None);
    assert!(host_memory_mib().expect("this host's /proc/meminfo") > 0);
}
