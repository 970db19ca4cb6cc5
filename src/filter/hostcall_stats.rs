//! Host-call counting, for the `hostcall-stats` build only (off by default:
//! without the feature [`record`] is empty and nothing else here exists, so
//! the shipped module is unchanged).
//!
//! Every wrapper in `host` reports the host call it makes with [`record`].
//! Each HTTP context is wrapped in [`Counted`], which adds the calls made
//! during its callbacks (and the callbacks themselves) to its own tally; when
//! Envoy deletes the context the tally goes to counters
//! `signalbox_hostcalls.<role>.<kind>` plus `signalbox_hostcalls.<role>.contexts`,
//! which `bench/run.py --hostcalls` divides by the requests it sent. The time
//! spent inside each kind of callback (the filter's Wasm code plus the host
//! calls it makes, read on WASI's monotonic clock) goes to
//! `signalbox_hostcalls.<role>.ns_<callback>`: it says which callback to
//! look into, not how fast the shipped module is (the clock reads add a
//! little to each).

/// Declares [`Crossing`] and each kind's stat name, kept side by side.
macro_rules! crossings {
    ($($(#[$doc:meta])* $kind:ident => $name:literal,)*) => {
        /// A crossing between the VM and Envoy: a host call the filter makes, or a
        /// callback Envoy makes into the filter (both cost a VM transition).
        // Without the feature nothing counts the callbacks, so their kinds go unused.
        #[cfg_attr(not(feature = "hostcall-stats"), allow(dead_code))]
        #[derive(Clone, Copy)]
        pub enum Crossing {
            $($(#[$doc])* $kind,)*
        }

        #[cfg(feature = "hostcall-stats")]
        const NAMES: &[&str] = &[$($name,)*];
    };
}

crossings! {
    /// The whole request or response header map.
    HeaderMapRead => "header_map_read",
    /// One header's value.
    HeaderRead => "header_read",
    HeaderWrite => "header_write",
    HeaderRemove => "header_remove",
    BodyRead => "body_read",
    BodyWrite => "body_write",
    /// `get_property` of `filter_state` (`wasm.signalbox.*`).
    FilterStateRead => "filter_state_read",
    /// `set_property`: filter state the matcher, the other role and access logs read.
    FilterStateWrite => "filter_state_write",
    /// `get_property` of anything else (`plugin_root_id`, `response.code_details`).
    PropertyRead => "property_read",
    SharedDataRead => "shared_data_read",
    SharedDataWrite => "shared_data_write",
    /// proxy-wasm's wall clock (`now_ms`).
    WallClock => "wall_clock",
    /// WASI `clock_time_get` behind `Instant::now()` (two per timed phase).
    MonotonicClock => "monotonic_clock",
    MetricDefine => "metric_define",
    MetricIncrement => "metric_increment",
    MetricRecord => "metric_record",
    LocalReply => "local_reply",
    HttpCall => "http_call",
    /// `call_foreign_function` (`clear_route_cache`).
    ForeignFunction => "foreign_function",
    /// Resuming a paused stream (an awaited admission, a slow answer's headers).
    Resume => "resume",
    /// Configuration-time calls: the plugin configuration, the tick period.
    Configuration => "configuration",
    OnRequestHeaders => "on_request_headers",
    OnRequestBody => "on_request_body",
    OnRequestTrailers => "on_request_trailers",
    OnResponseHeaders => "on_response_headers",
    OnResponseBody => "on_response_body",
    OnResponseTrailers => "on_response_trailers",
    OnLog => "on_log",
    OnDone => "on_done",
    OnHttpCallResponse => "on_http_call_response",
}

#[cfg(not(feature = "hostcall-stats"))]
#[inline(always)]
pub fn record(_crossing: Crossing) {}

#[cfg(feature = "hostcall-stats")]
pub use counting::{record, Counted};

#[cfg(feature = "hostcall-stats")]
mod counting {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::time::Instant;

    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext};
    use proxy_wasm::types::{Action, MetricType};

    use super::{Crossing, NAMES};

    const KINDS: usize = NAMES.len();

    type Tally = [u64; KINDS];

    thread_local! {
        /// Calls since the last callback boundary; a VM runs one callback at a time.
        static PENDING: RefCell<Tally> = const { RefCell::new([0; KINDS]) };
        /// Counter ids by stat name, defined once per VM.
        static METRIC_IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
    }

    pub fn record(crossing: Crossing) {
        PENDING.with(|pending| pending.borrow_mut()[crossing as usize] += 1);
    }

    fn take_pending() -> Tally {
        PENDING.with(|pending| std::mem::replace(&mut *pending.borrow_mut(), [0; KINDS]))
    }

    /// Adds to counter `name`. These calls are the instrument's own, so they
    /// go straight to the host rather than through the counted wrappers.
    fn add(name: String, value: u64) {
        let id = METRIC_IDS.with(|ids| {
            let mut ids = ids.borrow_mut();
            if let Some(id) = ids.get(&name) {
                return Some(*id);
            }
            let id = hostcalls::define_metric(MetricType::Counter, &name).ok()?;
            ids.insert(name, id);
            Some(id)
        });
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// An HTTP context whose crossings are counted under `role`.
    pub struct Counted {
        role: &'static str,
        inner: Box<dyn HttpContext>,
        tally: Tally,
        /// Nanoseconds inside each kind of callback (indexed like `tally`).
        spent_ns: Tally,
    }

    impl Counted {
        pub fn new(role: &'static str, inner: Box<dyn HttpContext>) -> Counted {
            Counted {
                role,
                inner,
                tally: [0; KINDS],
                spent_ns: [0; KINDS],
            }
        }

        fn counted<R>(&mut self, callback: Crossing, run: impl FnOnce(&mut dyn HttpContext) -> R) -> R {
            // Calls made outside this context's callbacks (the root's ticks) are not its own.
            take_pending();
            let entered = Instant::now();
            let result = run(self.inner.as_mut());
            let spent = u64::try_from(entered.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.spent_ns[callback as usize] += spent;
            for (total, calls) in self.tally.iter_mut().zip(take_pending()) {
                *total += calls;
            }
            self.tally[callback as usize] += 1;
            result
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            for (name, calls) in NAMES.iter().zip(self.tally) {
                if calls > 0 {
                    add(format!("signalbox_hostcalls.{}.{name}", self.role), calls);
                }
            }
            for (name, spent) in NAMES.iter().zip(self.spent_ns) {
                if spent > 0 {
                    add(format!("signalbox_hostcalls.{}.ns_{name}", self.role), spent);
                }
            }
            add(format!("signalbox_hostcalls.{}.contexts", self.role), 1);
        }
    }

    impl Context for Counted {
        fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, num_trailers: usize) {
            self.counted(Crossing::OnHttpCallResponse, |inner| {
                inner.on_http_call_response(token_id, num_headers, body_size, num_trailers)
            })
        }

        fn on_done(&mut self) -> bool {
            self.counted(Crossing::OnDone, |inner| inner.on_done())
        }
    }

    impl HttpContext for Counted {
        fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
            self.counted(Crossing::OnRequestHeaders, |inner| {
                inner.on_http_request_headers(num_headers, end_of_stream)
            })
        }

        fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
            self.counted(Crossing::OnRequestBody, |inner| {
                inner.on_http_request_body(body_size, end_of_stream)
            })
        }

        fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
            self.counted(Crossing::OnRequestTrailers, |inner| {
                inner.on_http_request_trailers(num_trailers)
            })
        }

        fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
            self.counted(Crossing::OnResponseHeaders, |inner| {
                inner.on_http_response_headers(num_headers, end_of_stream)
            })
        }

        fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
            self.counted(Crossing::OnResponseBody, |inner| {
                inner.on_http_response_body(body_size, end_of_stream)
            })
        }

        fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
            self.counted(Crossing::OnResponseTrailers, |inner| {
                inner.on_http_response_trailers(num_trailers)
            })
        }

        fn on_log(&mut self) {
            self.counted(Crossing::OnLog, |inner| inner.on_log())
        }
    }
}
