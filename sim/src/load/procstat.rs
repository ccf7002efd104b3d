//! Process CPU time and resident memory from `/proc` (Linux), parsed sans-IO.

use std::io;

/// Clock ticks per second of `/proc/<pid>/stat` times (`sysconf(_SC_CLK_TCK)`, 100 on Linux
/// for every mainstream architecture; `getconf CLK_TCK` overrides when it says otherwise).
pub fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`.
///
/// The command name (field 2) is in parentheses and may itself contain spaces and `)`, so
/// fields are counted after the *last* `)`: `state` is field 3, `utime` 14, `stime` 15.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state) → field n is rest[n - 3].
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A process's CPU time so far, in ms.
pub fn cpu_ms(pid: u32, ticks_per_sec: u64) -> io::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_cpu_ticks(&text).ok_or_else(|| io::Error::other("unparsable /proc/<pid>/stat"))?;
    Ok(ticks_ms(ticks, ticks_per_sec))
}

/// Clock ticks of `/proc` CPU times as ms.
fn ticks_ms(ticks: u64, ticks_per_sec: u64) -> f64 {
    ticks as f64 * 1000.0 / ticks_per_sec as f64
}

/// CPU time so far, in ms, of this process's threads whose name starts with `prefix` (a
/// server the generator hosts in-process, such as the cluster's S3 server, whose work is
/// neither the generator's nor the recorder's). 0 when none matches.
pub fn own_threads_cpu_ms(prefix: &str, ticks_per_sec: u64) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let ticks: u64 = tasks
        .filter_map(Result::ok)
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end().starts_with(prefix)))
        .filter_map(|t| parse_cpu_ticks(&std::fs::read_to_string(t.path().join("stat")).ok()?))
        .sum();
    ticks_ms(ticks, ticks_per_sec)
}

/// A process's resident set size, in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss_kib(&text).ok_or_else(|| io::Error::other("no VmRSS in /proc/<pid>/status"))
}

/// Sum of the `drops` column of `/proc/net/udp` over sockets bound to `ip` (IPv4): datagrams
/// the kernel discarded because a socket's receive buffer was full. Per network namespace.
pub fn parse_udp_drops(proc_net_udp: &str, ip: std::net::Ipv4Addr) -> u64 {
    // Addresses are the IP's bytes in host order (little-endian on x86/arm), as hex.
    let want = format!("{:08X}", u32::from_le_bytes(ip.octets()));
    proc_net_udp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?;
            (local.split(':').next()? == want).then(|| f.last()?.parse::<u64>().ok())?
        })
        .sum()
}

/// [`parse_udp_drops`] of this namespace's `/proc/net/udp`.
pub fn udp_drops(ip: std::net::IpAddr) -> Option<u64> {
    let std::net::IpAddr::V4(v4) = ip else { return None };
    std::fs::read_to_string("/proc/net/udp").ok().map(|t| parse_udp_drops(&t, v4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_after_the_last_paren() {
        let stat = "4242 (re el) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 731 269 0 0 20 0 9 0 100 1000 300 1844 0";
        assert_eq!(parse_cpu_ticks(stat), Some(731 + 269));
        assert_eq!(parse_cpu_ticks("1 (x) S 1"), None);
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn rss_from_status() {
        let status = "Name:\treel\nVmPeak:\t  99 kB\nVmRSS:\t   52340 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss_kib(status), Some(52_340));
        assert_eq!(parse_vm_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn udp_drops_of_one_address() {
        let t = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            1: 010012C6:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 1234\n\
            2: 010012C6:0050 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 6\n\
            3: 020012C6:0050 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 99\n";
        assert_eq!(parse_udp_drops(t, "198.18.0.1".parse().unwrap()), 1240);
        assert_eq!(parse_udp_drops(t, "198.18.0.2".parse().unwrap()), 99);
        assert_eq!(parse_udp_drops(t, "10.0.0.1".parse().unwrap()), 0);
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id();
        assert!(cpu_ms(me, clock_ticks_per_sec()).unwrap() >= 0.0);
        assert!(rss_kib(me).unwrap() > 0);
    }

    #[test]
    fn cpu_of_named_threads() {
        let busy = std::thread::Builder::new()
            .name("procstat-busy".into())
            .spawn(|| {
                let t = std::time::Instant::now();
                let mut x = 0u64;
                while t.elapsed() < std::time::Duration::from_millis(300) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            })
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(350));
        let ms = own_threads_cpu_ms("procstat-busy", clock_ticks_per_sec());
        busy.join().unwrap();
        assert!(ms >= 100.0, "the busy thread's CPU is counted: {ms}");
        assert_eq!(own_threads_cpu_ms("no-such-thread", clock_ticks_per_sec()), 0.0);
    }
}
