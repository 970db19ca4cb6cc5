//! sb-load: closed-loop HTTP/1.1 load generator.
//!
//! Usage:
//!   sb-load --url http://127.0.0.1:PORT/path --body FILE --connections C --duration SECS
//!           [--warmup SECS] [--header 'k: v']... [--cpu-pid PID]...
//!
//! One thread per keep-alive connection, each POSTing the body, waiting for the full
//! response, and immediately sending the next (closed loop: offered load adapts to the
//! server, so throughput measures capacity). Only requests that complete inside the
//! measured window (after the warmup) count towards throughput and latency.
//!
//! `--cpu-pid PID` reads /proc/PID/stat (utime+stime, in clock ticks) exactly at the
//! start and end of the measured window, so a caller gets the server's CPU for the same
//! window that the request count covers. Our own CPU is always reported as "self", which
//! shows whether the load generator itself was short of CPU, and "host" is the busy time
//! (user+nice+system, all CPUs) of the whole machine, so a caller can tell how much CPU
//! something else was using during the window.
//!
//! Prints one JSON object on stdout.

use signalbox_bench::{read_head, skip_body};
use std::collections::BTreeMap;
use std::io::{self, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{env, fs, process, thread};

struct Config {
    host: String,
    port: u16,
    path: String,
    body: Vec<u8>,
    connections: usize,
    duration: f64,
    warmup: f64,
    headers: Vec<String>,
    cpu_pids: Vec<u32>,
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn connect(addr: &std::net::SocketAddr) -> io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect_timeout(addr, IO_TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(BufReader::with_capacity(64 * 1024, s))
}

/// Sends one request and reads the whole response. Returns (status, server_will_close).
/// `Ok(None)`: the server closed the connection before sending anything.
fn exchange(conn: &mut BufReader<TcpStream>, request: &[u8], line: &mut Vec<u8>) -> io::Result<Option<(u16, bool)>> {
    conn.get_mut().write_all(request)?;
    let Some(mut head) = read_head(conn, line)? else {
        return Ok(None);
    };
    skip_body(conn, &mut head, line, true)?;
    Ok(Some((head.status(), head.close)))
}

fn worker(addr: std::net::SocketAddr, request: Arc<Vec<u8>>, measure_start: Instant, end: Instant) -> Stats {
    let mut stats = Stats::default();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut line = Vec::with_capacity(256);
    loop {
        let start = Instant::now();
        if start >= end {
            break;
        }
        let mut result = Err(io::Error::other("not attempted"));
        // A reused keep-alive connection may have been closed by the server while idle;
        // that is not a failed request, so retry once on a fresh connection.
        for _attempt in 0..2 {
            let reused = conn.is_some();
            let mut c = match conn.take() {
                Some(c) => c,
                None => match connect(&addr) {
                    Ok(c) => c,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                },
            };
            match exchange(&mut c, &request, &mut line) {
                Ok(Some((status, close))) => {
                    if !close {
                        conn = Some(c);
                    }
                    result = Ok(status);
                    break;
                }
                Ok(None) if reused => continue,
                Ok(None) => {
                    result = Err(io::ErrorKind::UnexpectedEof.into());
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let done = Instant::now();
        let in_window = done >= measure_start && done < end;
        match result {
            Ok(status) if in_window => {
                let us = done.duration_since(start).as_micros().min(u32::MAX as u128) as u32;
                stats.latencies_us.push(us);
                *stats.statuses.entry(status).or_default() += 1;
            }
            Ok(_) => {}
            Err(_) => {
                if in_window {
                    stats.errors += 1;
                }
                // Do not spin on a refused connection; it would burn the CPU the server needs.
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    stats
}

/// utime + stime of a process, in clock ticks (all threads, fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it start past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so field N is f[N - 3].
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Machine-wide busy ticks: user + nice + system of the "cpu" line of /proc/stat. Softirq is
/// left out because loopback TCP work lands there without being charged to any process.
fn host_busy_ticks() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect();
    (f.len() == 3).then(|| f.iter().sum())
}

fn sample_cpu(pids: &[String]) -> Vec<Option<u64>> {
    pids.iter()
        .map(|p| if p == "host" { host_busy_ticks() } else { cpu_ticks(p) })
        .collect()
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest-rank percentile.
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn main() {
    let cfg = parse_args();
    let addr = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| die(&format!("cannot resolve {}:{}", cfg.host, cfg.port)));

    let mut req = format!(
        "POST {} HTTP/1.1\r\nhost: {}:{}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        cfg.path,
        cfg.host,
        cfg.port,
        cfg.body.len()
    );
    for h in &cfg.headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut request = req.into_bytes();
    request.extend_from_slice(&cfg.body);
    let request = Arc::new(request);

    let t0 = Instant::now();
    let measure_start = t0 + Duration::from_secs_f64(cfg.warmup);
    let end = measure_start + Duration::from_secs_f64(cfg.duration);
    let workers: Vec<_> = (0..cfg.connections)
        .map(|_| {
            let request = Arc::clone(&request);
            thread::spawn(move || worker(addr, request, measure_start, end))
        })
        .collect();

    let mut pids: Vec<String> = vec!["self".into(), "host".into()];
    pids.extend(cfg.cpu_pids.iter().map(|p| p.to_string()));
    thread::sleep(measure_start.saturating_duration_since(Instant::now()));
    let cpu_before = sample_cpu(&pids);
    thread::sleep(end.saturating_duration_since(Instant::now()));
    let cpu_after = sample_cpu(&pids);

    let mut all = Stats::default();
    for w in workers {
        let s = w.join().unwrap_or_default();
        all.latencies_us.extend(s.latencies_us);
        all.errors += s.errors;
        for (k, v) in s.statuses {
            *all.statuses.entry(k).or_default() += v;
        }
    }
    all.latencies_us.sort_unstable();
    let lat = &all.latencies_us;
    let requests = lat.len() as u64;

    let statuses: Vec<String> = all.statuses.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    let cpu: Vec<String> = pids
        .iter()
        .zip(cpu_before.iter().zip(&cpu_after))
        .filter_map(|(p, (b, a))| Some(format!("\"{p}\":{}", a.as_ref()?.checked_sub((*b)?)?)))
        .collect();
    println!(
        "{{\"requests\":{requests},\"errors\":{},\"statuses\":{{{}}},\"duration_s\":{},\"rps\":{:.1},\
\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{},\"connections\":{},\"cpu_ticks\":{{{}}}}}",
        all.errors,
        statuses.join(","),
        cfg.duration,
        requests as f64 / cfg.duration,
        percentile(lat, 0.50),
        percentile(lat, 0.90),
        percentile(lat, 0.99),
        lat.last().copied().unwrap_or(0),
        cfg.connections,
        cpu.join(","),
    );
}

fn parse_args() -> Config {
    let mut url = None;
    let mut body_file = None;
    let mut cfg = Config {
        host: String::new(),
        port: 80,
        path: String::new(),
        body: Vec::new(),
        connections: 32,
        duration: 10.0,
        warmup: 0.0,
        headers: Vec::new(),
        cpu_pids: Vec::new(),
    };
    let mut args = env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| die(&format!("{a} needs a value")));
        match a.as_str() {
            "--url" => url = Some(val()),
            "--body" => body_file = Some(val()),
            "--connections" => cfg.connections = val().parse().unwrap_or_else(|_| die("bad --connections")),
            "--duration" => cfg.duration = val().parse().unwrap_or_else(|_| die("bad --duration")),
            "--warmup" => cfg.warmup = val().parse().unwrap_or_else(|_| die("bad --warmup")),
            "--header" => {
                let h = val();
                if !h.contains(':') {
                    die("--header must look like 'name: value'");
                }
                cfg.headers.push(h)
            }
            "--cpu-pid" => cfg
                .cpu_pids
                .push(val().parse().unwrap_or_else(|_| die("bad --cpu-pid"))),
            _ => die(&format!("unknown argument {a}")),
        }
    }
    let url = url.unwrap_or_else(|| die("--url is required"));
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| die("only http:// URLs are supported"));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or_else(|_| die("bad port in --url"))),
        None => (authority, 80),
    };
    cfg.host = host.to_string();
    cfg.port = port;
    cfg.path = path.to_string();
    let body_file = body_file.unwrap_or_else(|| die("--body is required"));
    cfg.body = fs::read(&body_file).unwrap_or_else(|e| die(&format!("read {body_file}: {e}")));
    // Also rejects NaN and infinity, which Duration::from_secs_f64 would panic on.
    let bad_secs = |x: f64| !x.is_finite() || x < 0.0;
    if cfg.connections == 0 || bad_secs(cfg.duration) || cfg.duration == 0.0 || bad_secs(cfg.warmup) {
        die("--connections and --duration must be > 0, --warmup >= 0");
    }
    cfg
}

fn die(msg: &str) -> ! {
    eprintln!("sb-load: {msg}");
    eprintln!(
        "usage: sb-load --url http://HOST:PORT/path --body FILE --connections C --duration SECS \
[--warmup SECS] [--header 'k: v']... [--cpu-pid PID]..."
    );
    process::exit(2)
}
