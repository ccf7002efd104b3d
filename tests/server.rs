//! The `reel serve` contract: listening line, TLS, config file + environment, generated
//! root key, metrics, audit log and graceful shutdown.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Options, Reel, write_file};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn sdk_talks_to_self_signed_tls_with_generated_ca_trusted() {
    let reel = Reel::start_with(Options { args: vec!["--tls-self-signed".into()], ..Default::default() });
    assert!(reel.url.starts_with("https://127.0.0.1:"), "url {}", reel.url);
    assert!(reel.ca_path().exists(), "CA certificate written to the data dir");
    rt().block_on(async {
        let kvs = reel.kvs();
        let arn =
            kvs.create_signaling_channel().channel_name("tls-cam").send().await.expect("create over TLS").channel_arn;
        let endpoints = kvs
            .get_signaling_channel_endpoint()
            .channel_arn(arn.clone().expect("arn"))
            .single_master_channel_endpoint_configuration(
                aws_sdk_kinesisvideo::types::SingleMasterChannelEndpointConfiguration::builder()
                    .protocols(aws_sdk_kinesisvideo::types::ChannelProtocol::Wss)
                    .protocols(aws_sdk_kinesisvideo::types::ChannelProtocol::Https)
                    .role(aws_sdk_kinesisvideo::types::ChannelRole::Master)
                    .build(),
            )
            .send()
            .await
            .expect("endpoints");
        let urls: Vec<String> = endpoints
            .resource_endpoint_list()
            .iter()
            .filter_map(|e| e.resource_endpoint().map(str::to_owned))
            .collect();
        assert!(urls.iter().any(|u| u.starts_with("wss://")), "TLS advertises wss://: {urls:?}");
        assert!(urls.iter().any(|u| u.starts_with("https://")), "TLS advertises https://: {urls:?}");
    });
    // A client that does not trust the CA fails certificate verification (curl exit 60;
    // a refused connection would be 7), and the same request trusting the CA succeeds.
    reel::testkit::probe::require(&["curl"]);
    let curl = |extra: &[&std::ffi::OsStr]| {
        std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(extra)
            .arg(format!("{}/metrics", reel.url))
            .output()
            .expect("curl")
    };
    let untrusted = curl(&[]);
    assert_eq!(
        untrusted.status.code(),
        Some(60),
        "an untrusted client fails certificate verification: {}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    let trusted = curl(&["--cacert".as_ref(), reel.ca_path().as_os_str()]);
    assert_eq!(String::from_utf8_lossy(&trusted.stdout), "200", "{}", String::from_utf8_lossy(&trusted.stderr));
}

#[test]
fn config_file_and_environment_are_merged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_file(dir.path(), "reel.toml", "region = \"eu-central-1\"\naccount_id = \"000000000042\"\n");
    let reel = Reel::start_with(Options {
        args: vec!["--config".into(), cfg.display().to_string()],
        // The environment beats the file.
        env: vec![("REEL_ACCOUNT_ID".into(), "999999999999".into())],
        ..Default::default()
    });
    rt().block_on(async {
        let arn = reel.kvs().create_signaling_channel().channel_name("cfg").send().await.expect("create").channel_arn;
        let arn = arn.expect("arn");
        assert!(arn.starts_with("arn:aws:kinesisvideo:eu-central-1:999999999999:channel/cfg/"), "{arn}");
    });
}

#[test]
fn first_start_generates_and_persists_a_root_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let opts = Options { data_dir: Some(data.clone()), no_root_key: true, ..Default::default() };
    let reel = Reel::start_with(opts.clone());
    let find = |prefix: &str| {
        reel.preamble
            .iter()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {prefix} in {:?}", reel.preamble))
    };
    let (id, secret) = (find("export AWS_ACCESS_KEY_ID="), find("export AWS_SECRET_ACCESS_KEY="));
    let stored: Vec<_> = std::fs::read_dir(&data)
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&secret)))
        .collect();
    assert_eq!(stored.len(), 1, "the generated secret is stored in exactly one file");
    let mode = stored[0].metadata().expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "generated credentials are private");
    rt().block_on(async {
        reel.kvs_as(&id, &secret).list_signaling_channels().send().await.expect("generated key works");
    });
    assert!(reel.stop());
    // The second start reuses the key and prints nothing about it.
    let again = Reel::start_with(opts);
    assert!(again.preamble.iter().all(|l| !l.contains("AWS_SECRET_ACCESS_KEY")), "{:?}", again.preamble);
    rt().block_on(async {
        again.kvs_as(&id, &secret).list_signaling_channels().send().await.expect("persisted key works");
    });
}

#[test]
fn metrics_and_audit_log_record_each_call() {
    reel::testkit::probe::require(&["curl"]);
    let reel = Reel::start_with(Options { args: vec!["--node-id".into(), "node-a".into()], ..Default::default() });
    rt().block_on(async {
        let kvs = reel.kvs();
        kvs.create_signaling_channel().channel_name("audited").send().await.expect("create");
        let missing = kvs.describe_signaling_channel().channel_name("missing").send().await;
        assert!(missing.is_err());
    });
    let metrics =
        std::process::Command::new("curl").args(["-s", &format!("{}/metrics", reel.url)]).output().expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let node = ("node", "node-a");
    let created = [node, ("operation", "CreateSignalingChannel"), ("outcome", "ok")];
    assert_eq!(common::metric(&metrics, "reel_requests_total", &created), Some(1.0), "{metrics}");
    let failed = [node, ("operation", "DescribeSignalingChannel")];
    assert_eq!(common::metric(&metrics, "reel_failure_total", &failed), Some(1.0), "{metrics}");
    let latency = [node, ("operation", "CreateSignalingChannel"), ("le", "+Inf")];
    assert!(common::metric(&metrics, "reel_latency_ms_bucket", &latency).is_some(), "{metrics}");
    // Liveness for load balancers: unsigned, 200.
    let health = std::process::Command::new("curl")
        .args(["-s", "-w", " %{http_code}", &format!("{}/healthz", reel.url)])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&health.stdout), "ok\n 200");
    // The audit writer is asynchronous; give it a moment.
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(reel.data_dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let events: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).expect("json line")).collect();
    let create = events.iter().find(|e| e["operation"] == "CreateSignalingChannel").expect("create audited");
    assert_eq!(create["access_key_id"], common::ROOT_KEY_ID);
    assert_eq!(create["source_ip"], "127.0.0.1");
    assert_eq!(create["request_parameters"]["ChannelName"], "audited");
    assert_eq!(create["outcome"], "Success");
    assert!(create["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    let failed = events.iter().find(|e| e["operation"] == "DescribeSignalingChannel").expect("failure audited");
    assert_eq!(failed["outcome"], "ResourceNotFoundException");
    assert_eq!(failed["status"], 404);
}

#[test]
fn listening_line_is_printed_once_and_sigterm_exits_zero() {
    let reel = Reel::start();
    let before = reel.preamble.clone();
    // The launcher returned at the first listening line; the rest of stdout comes after exit.
    let (clean, after) = reel.stop_with_stdout();
    assert!(clean, "exit status 0 after SIGTERM");
    let again = before.iter().chain(&after).filter(|l| l.starts_with("reel listening on")).count();
    assert_eq!(again, 0, "the listening line is printed once; stdout before it {before:?}, after it {after:?}");
}

#[test]
fn invalid_settings_fail_with_a_clear_message() {
    for (flag, value, says) in [
        ("--account-id", "12ab", "account-id"),
        ("--cors-origin", "app.example.com", "--cors-origin \"app.example.com\""),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_reel"))
            .args(["serve", "--listen", "127.0.0.1:0", flag, value])
            .output()
            .expect("run reel");
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn unreachable_cluster_services_fail_startup_with_a_clear_message() {
    // Nothing listens on these ports (bound and released just now).
    let free = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let (pg_port, nats_port) = (free(), free());
    let dir = tempfile::tempdir().expect("tempdir");
    let s3_port = free();
    let run_with = |extra: &[String], flag: &str, url: String| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_reel"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .args([flag, &url])
            .output()
            .expect("run reel");
        assert!(!out.status.success(), "{flag} {url} must fail startup");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let run = |flag: &str, url: String| run_with(&[], flag, url);
    let pg = format!("postgres://reel:sekrit@127.0.0.1:{pg_port}/reel");
    // Cluster mode keeps media in S3: without it, startup names what is missing.
    let err = run("--metadata-url", pg.clone());
    assert!(err.contains("needs the S3 backend") && !err.contains("sekrit"), "{err}");
    let s3: Vec<String> = [
        "--s3-bucket",
        "b",
        "--s3-endpoint-url",
        &format!("http://127.0.0.1:{s3_port}"),
        "--s3-access-key-id",
        "k",
        "--s3-secret-access-key",
        "s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let err = run_with(&s3, "--metadata-url", pg);
    assert!(err.contains("cannot open postgres://reel:***@127.0.0.1") && !err.contains("sekrit"), "{err}");
    let err = run("--bus-url", format!("nats://127.0.0.1:{nats_port}"));
    assert!(err.contains("cannot connect to the cluster bus"), "{err}");
}

#[test]
fn tls_from_pem_files() {
    // Produce a certificate chain and key with the self-signed mode, then serve them as files.
    let first = Reel::start_with(Options { args: vec!["--tls-self-signed".into()], ..Default::default() });
    let tls_dir = tempfile::tempdir().expect("tempdir");
    for f in ["cert.pem", "key.pem", "ca.pem"] {
        std::fs::copy(first.data_dir.join("tls").join(f), tls_dir.path().join(f)).expect("copy pem");
    }
    drop(first);
    let reel = Reel::start_with(Options {
        args: vec![
            "--tls-cert".into(),
            tls_dir.path().join("cert.pem").display().to_string(),
            "--tls-key".into(),
            tls_dir.path().join("key.pem").display().to_string(),
        ],
        ..Default::default()
    });
    assert!(reel.url.starts_with("https://"), "{}", reel.url);
    reel::testkit::probe::require(&["curl"]);
    let ok = std::process::Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(tls_dir.path().join("ca.pem"))
        .args(["-o", "/dev/null", "-w", "%{http_code}", &format!("{}/metrics", reel.url)])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "200");
}

#[test]
fn streams_own_media_directories_that_delete_stream_removes() {
    let reel = Reel::start();
    let media_dirs = || -> usize {
        std::fs::read_dir(reel.data_dir.join("media").join("streams"))
            .map(|d| {
                d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("stream-")).count()
            })
            .unwrap_or(0)
    };
    rt().block_on(async {
        let kvs = reel.kvs();
        let arn = kvs
            .create_stream()
            .stream_name("cam")
            .data_retention_in_hours(24)
            .send()
            .await
            .expect("create")
            .stream_arn
            .expect("arn");
        assert_eq!(media_dirs(), 1, "CreateStream makes the stream's media directory");
        let version =
            kvs.describe_stream().stream_arn(&arn).send().await.expect("describe").stream_info.expect("info").version;
        kvs.delete_stream().stream_arn(&arn).set_current_version(version).send().await.expect("delete");
        assert_eq!(media_dirs(), 0, "DeleteStream removes the stream's media");
    });
}
