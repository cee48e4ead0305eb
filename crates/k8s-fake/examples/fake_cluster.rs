//! A fake cluster for benchmarks (bench/k8s_scale.sh): serves the fake API
//! server, writes a kubeconfig for it, and plays the kubelet for every pod
//! in namespace `default` — a pending pod starts, prints one line and
//! succeeds a moment later. On SIGTERM or SIGINT it prints what the real
//! `oj` daemon cost the API server:
//!
//! ```text
//! pods: 500
//! API requests per container step: 5.00
//! watch connections (peak): 1
//! ```
//!
//! Usage: `cargo run --release -p oj-k8s-fake --example fake_cluster -- KUBECONFIG_PATH`

use std::collections::HashSet;
use std::time::Duration;

use oj_k8s_fake::FakeKube;

const NS: &str = "default";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: fake_cluster KUBECONFIG_PATH");
        std::process::exit(2);
    };
    let fake = FakeKube::start();
    if let Err(e) = fake.write_kubeconfig(std::path::Path::new(&path)) {
        eprintln!("fake_cluster: cannot write {path}: {e}");
        std::process::exit(1);
    }
    eprintln!("fake_cluster: serving {} (kubeconfig {path})", fake.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    let mut seen: HashSet<String> = HashSet::new();
    let mut running: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {}
        }
        for pod in fake.pods(NS) {
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            if seen.insert(name.clone()) {
                continue; // give the daemon one tick to see it Pending
            }
            match phase.as_str() {
                "Pending" => {
                    fake.set_pod_phase(NS, &name, "Running");
                    fake.append_pod_log(NS, &name, &format!("hello from {name}\n"));
                    running.insert(name);
                }
                "Running" if running.remove(&name) => {
                    fake.finish_pod(NS, &name, 0);
                }
                _ => {}
            }
        }
    }
    let pods = fake.pod_creates(NS).max(1);
    let pod_requests = fake.count_requests(|r| {
        r.path.starts_with(&FakeKube::pods_path(NS)) && !r.has_query("watch=true")
    });
    println!("pods: {}", fake.pod_creates(NS));
    println!(
        "API requests per container step: {:.2}",
        pod_requests as f64 / pods as f64
    );
    println!("watch connections (peak): {}", fake.peak_pod_watches());
    println!("log streams open at exit: {}", fake.open_log_streams());
}
