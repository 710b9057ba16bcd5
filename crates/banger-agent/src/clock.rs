//! [`Request::SetClock`](banger_agent_proto::Request::SetClock): the host
//! sets the guest's wall clock right after a resume. A paused guest did not
//! see the paused time pass (its clocks stopped with its vCPUs), so without
//! this its `date` would lag by the whole pause until NTP (if any) caught up.

use banger_agent_proto::Response;

/// Sets `CLOCK_REALTIME` to `unix_secs.nanos`; the reply says why not.
pub fn set(unix_secs: u64, nanos: u32) -> Response {
    if nanos >= 1_000_000_000 {
        return Response::Error {
            message: format!("nanos {nanos} is not below 1000000000"),
        };
    }
    let Ok(tv_sec) = i64::try_from(unix_secs) else {
        return Response::Error {
            message: format!("unix_secs {unix_secs} is out of range"),
        };
    };
    let time = rustix::time::Timespec {
        tv_sec,
        tv_nsec: i64::from(nanos),
    };
    match rustix::time::clock_settime(rustix::time::ClockId::Realtime, time) {
        Ok(()) => Response::Done,
        Err(error) => Response::Error {
            message: format!("cannot set the clock: {error}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_are_refused_without_touching_the_clock() {
        assert!(matches!(set(0, 1_000_000_000), Response::Error { .. }));
        assert!(matches!(set(u64::MAX, 0), Response::Error { .. }));
    }
}
