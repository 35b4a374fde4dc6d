//! The access log: one line per request, in the shape of the other log
//! lines, written by a thread of its own (see [`AccessLog`] for why).

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::HeaderValue;
use sessiond_core::metric;

/// The wall-clock time of `at`, from one reading of both clocks at start
/// (one `clock_gettime` per request saved).
pub(super) fn wall_clock(at: Instant) -> std::time::SystemTime {
    static ANCHOR: OnceLock<(Instant, std::time::SystemTime)> = OnceLock::new();
    let (instant, system) = *ANCHOR.get_or_init(|| (Instant::now(), std::time::SystemTime::now()));
    match at.checked_duration_since(instant) {
        Some(since) => system + since,
        None => system - instant.duration_since(at),
    }
}

/// A W3C trace id, 32 hex digits.
pub(super) type TraceId = [u8; 32];

/// One request, as the access log needs it.
#[derive(Debug)]
pub struct AccessRecord {
    pub(super) at: std::time::SystemTime,
    pub(super) id: HeaderValue,
    pub(super) method: &'static str,
    pub(super) route: &'static str,
    pub(super) status: u16,
    pub(super) latency: Duration,
    pub(super) trace: Option<TraceId>,
    /// The client address (through trusted proxies only).
    pub(super) client: Option<std::net::IpAddr>,
}

/// The access log: one line per request (target `sessiond::access`, in the
/// same text or JSON shape as the other log lines), written by a thread of
/// its own.
///
/// Why not a `tracing` event: formatting and writing a line costs 3-4 µs,
/// about 30% of a `GET /api/profile`, on the request's thread. Here the
/// request hands a small record to a bounded channel (tens of ns) and the
/// writer formats batches and writes each batch with one system call. When
/// the writer falls behind, lines are dropped and counted
/// (`sessiond_access_log_dropped_total`), never waited for.
pub struct AccessLog {
    queue: Arc<LogQueue>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Records waiting for the writer. A plain mutex over a vector: an
/// uncontended lock and a push cost less than a channel send, and the
/// writer takes the whole batch with one swap.
struct LogQueue {
    records: std::sync::Mutex<Vec<AccessRecord>>,
    closed: std::sync::atomic::AtomicBool,
}

/// More queued lines than this and new ones are dropped (and counted).
const MAX_QUEUED: usize = 64 * 1024;

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Lines to stderr, if `sessiond::access` is enabled at INFO by the
    /// log filter (`SESSIOND_LOG`); `json` picks the JSON shape.
    pub fn stderr(json: bool) -> Option<Self> {
        tracing::enabled!(target: "sessiond::access", tracing::Level::INFO)
            .then(|| Self::to_writer(json, Box::new(std::io::stderr())))
    }

    /// Lines to `out`.
    pub fn to_writer(json: bool, mut out: Box<dyn std::io::Write + Send>) -> Self {
        let queue = Arc::new(LogQueue {
            records: std::sync::Mutex::new(Vec::with_capacity(4096)),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let shared = queue.clone();
        let writer = std::thread::Builder::new()
            .name("sessiond-access-log".into())
            .spawn(move || {
                let mut buf = Vec::with_capacity(64 * 1024);
                let mut batch = Vec::with_capacity(4096);
                // Poll rather than wait on a condition: waking the writer
                // for every line would cost a futex call per request.
                loop {
                    let closed = shared.closed.load(Ordering::Acquire);
                    if let Ok(mut records) = shared.records.lock() {
                        std::mem::swap(&mut *records, &mut batch);
                    }
                    for record in batch.drain(..) {
                        format_line(&mut buf, &record, json);
                        if buf.len() >= 60 * 1024 {
                            let _ = out.write_all(&buf);
                            buf.clear();
                        }
                    }
                    let _ = out.write_all(&buf);
                    let _ = out.flush();
                    buf.clear();
                    if closed {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .ok();
        Self { queue, writer }
    }

    pub(super) fn log(&self, record: AccessRecord) {
        let queued = match self.queue.records.lock() {
            Ok(mut records) if records.len() < MAX_QUEUED => {
                records.push(record);
                true
            }
            _ => false,
        };
        if !queued {
            static DROPPED: OnceLock<metrics::Counter> = OnceLock::new();
            DROPPED
                .get_or_init(|| metrics::counter!(metric::ACCESS_LOG_DROPPED))
                .increment(1);
        }
    }
}

impl Drop for AccessLog {
    /// Writes what is queued before returning.
    fn drop(&mut self) {
        self.queue.closed.store(true, Ordering::Release);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Appends one line in the shape `tracing-subscriber` uses for its text or
/// JSON output. Every value is plain by construction (validated or generated
/// request id, route templates, hex, IP addresses), so nothing needs escaping. Digits are
/// written by hand: `write!` with a float made formatting the writer's
/// largest cost, on a core the requests share.
fn format_line(buf: &mut Vec<u8>, r: &AccessRecord, json: bool) {
    let id = r.id.as_bytes();
    let micros = u64::try_from(r.latency.as_micros()).unwrap_or(u64::MAX);
    let trace = r.trace.as_ref();
    if json {
        buf.extend_from_slice(br#"{"timestamp":""#);
        push_timestamp(buf, r.at);
        buf.extend_from_slice(br#"","level":"INFO","fields":{"message":"request","status":"#);
        push_digits(buf, u64::from(r.status), 1);
        buf.extend_from_slice(br#","latency_ms":"#);
        push_millis(buf, micros);
        buf.extend_from_slice(br#"},"target":"sessiond::access","span":{"request_id":""#);
        buf.extend_from_slice(id);
        buf.extend_from_slice(br#"","method":""#);
        buf.extend_from_slice(r.method.as_bytes());
        buf.extend_from_slice(br#"","route":""#);
        buf.extend_from_slice(r.route.as_bytes());
        if let Some(ip) = r.client {
            buf.extend_from_slice(br#"","client_ip":""#);
            let _ = write!(buf, "{ip}");
        }
        if let Some(t) = trace {
            buf.extend_from_slice(br#"","trace_id":""#);
            buf.extend_from_slice(t);
        }
        buf.extend_from_slice(br#"","name":"request"}}"#);
    } else {
        push_timestamp(buf, r.at);
        buf.extend_from_slice(b"  INFO request{request_id=");
        buf.extend_from_slice(id);
        buf.extend_from_slice(b" method=");
        buf.extend_from_slice(r.method.as_bytes());
        buf.extend_from_slice(b" route=");
        buf.extend_from_slice(r.route.as_bytes());
        if let Some(ip) = r.client {
            let _ = write!(buf, " client_ip={ip}");
        }
        if let Some(t) = trace {
            buf.extend_from_slice(b" trace_id=");
            buf.extend_from_slice(t);
        }
        buf.extend_from_slice(b"}: sessiond::access: request status=");
        push_digits(buf, u64::from(r.status), 1);
        buf.extend_from_slice(b" latency_ms=");
        push_millis(buf, micros);
    }
    buf.push(b'\n');
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn push_digits(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    while n > 0 || digits.len() - i < width {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Microseconds as milliseconds with three decimals.
fn push_millis(buf: &mut Vec<u8>, micros: u64) {
    push_digits(buf, micros / 1000, 1);
    buf.push(b'.');
    push_digits(buf, micros % 1000, 3);
}

/// `2026-11-24T06:29:06.883813Z`.
fn push_timestamp(buf: &mut Vec<u8>, at: std::time::SystemTime) {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    push_digits(buf, year, 4);
    buf.push(b'-');
    push_digits(buf, month, 2);
    buf.push(b'-');
    push_digits(buf, day, 2);
    buf.push(b'T');
    push_digits(buf, rem / 3600, 2);
    buf.push(b':');
    push_digits(buf, rem % 3600 / 60, 2);
    buf.push(b':');
    push_digits(buf, rem % 60, 2);
    buf.push(b'.');
    push_digits(buf, u64::from(since.subsec_micros()), 6);
    buf.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn record(n: u64, trace: Option<TraceId>) -> AccessRecord {
        AccessRecord {
            at: std::time::UNIX_EPOCH + Duration::from_micros(1_795_500_000_123_456 + n),
            id: HeaderValue::from_str(&format!("req-{n}")).unwrap(),
            method: "GET",
            route: "/api/sessions/{id}",
            status: 200,
            latency: Duration::from_micros(1234),
            trace,
            client: Some("203.0.113.9".parse().unwrap()),
        }
    }

    #[test]
    fn the_access_log_writes_one_json_line_per_request_in_order() {
        let out = Shared::default();
        let log = AccessLog::to_writer(true, Box::new(out.clone()));
        let trace: TraceId = *b"4bf92f3577b34da6a3ce929d0e0e4736";
        for n in 0..100 {
            log.log(record(n, (n == 7).then_some(trace)));
        }
        drop(log); // flushes
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 100);
        assert_eq!(lines[0]["timestamp"], "2026-11-24T06:00:00.123456Z");
        assert_eq!(lines[0]["target"], "sessiond::access");
        assert_eq!(lines[0]["fields"]["status"], 200);
        assert_eq!(lines[0]["fields"]["latency_ms"], 1.234);
        assert_eq!(lines[0]["span"]["request_id"], "req-0");
        assert_eq!(lines[0]["span"]["route"], "/api/sessions/{id}");
        assert_eq!(lines[0]["span"]["client_ip"], "203.0.113.9");
        assert_eq!(
            lines[7]["span"]["trace_id"],
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(lines[99]["span"]["request_id"], "req-99");
    }

    #[test]
    fn the_text_access_log_reads_like_the_other_log_lines() {
        let out = Shared::default();
        let log = AccessLog::to_writer(false, Box::new(out.clone()));
        log.log(record(0, None));
        drop(log);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "2026-11-24T06:00:00.123456Z  INFO request{request_id=req-0 method=GET route=/api/sessions/{id} client_ip=203.0.113.9}: sessiond::access: request status=200 latency_ms=1.234\n"
        );
    }
}
