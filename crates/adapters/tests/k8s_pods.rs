//! The pod of a container step has the shape SPEC §3.8 promises: name,
//! labels, restartPolicy, activeDeadlineSeconds, and resources merged field
//! by field from `pods.resources`, the job's and the step's container.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use oj_adapters::k8s::pods::{
    self, ContainerResources, PodBuildError, PodInput, PodOwner, ResourceAmounts, build_owned_pod,
    build_pod, is_dns1123_label, is_label_value, pod_name,
};
use oj_config::{Environment, LoadOptions, PodsConfig};
use oj_k8s_fake::FakeKube;

fn config_with(vars: &[(&str, &str)]) -> oj_config::RuntimeConfig {
    let home = tempfile::tempdir().unwrap();
    let mut all: Vec<(String, String)> = vec![("HOME".into(), home.path().display().to_string())];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let loaded = oj_config::load(&LoadOptions::default(), &Environment::new(all, "testhost"))
        .expect("config loads");
    loaded.config
}

fn defaults() -> PodsConfig {
    config_with(&[]).pods
}

fn input() -> PodInput {
    PodInput {
        job_id: "0abc123def456".into(),
        job_name: "build".into(),
        step_index: 1,
        step_name: "test".into(),
        image: "rust:1.95".into(),
        shell: vec!["/bin/sh".into(), "-c".into()],
        command: "cargo test".into(),
        env: BTreeMap::from([("CARGO_TERM_COLOR".into(), "never".into())]),
        timeout: Duration::from_secs(20 * 60),
        job_resources: None,
        step_resources: None,
        extras: Default::default(),
    }
}

fn q(s: &str) -> Option<oj_config::Quantity> {
    Some(s.parse().unwrap())
}

fn resources(pod: &Pod) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let r = pod.spec.as_ref().unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    let flat =
        |m: Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            m.unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect::<BTreeMap<_, _>>()
        };
    (flat(r.requests), flat(r.limits))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_only() {
    let owner = PodOwner {
        instance: "oj-7d9f-abcde".into(),
        attempt: 2,
    };
    let pod = build_owned_pod(&input(), &defaults(), "jobs", &owner).unwrap();
    // The second run of step 1 has a pod of its own.
    assert_eq!(pod.metadata.name.as_deref(), Some("oj-0abc123def456-1-2"));
    assert_eq!(pod.metadata.namespace.as_deref(), Some("jobs"));
    assert_eq!(
        pod.metadata.labels.clone().unwrap(),
        map(&[
            ("app.kubernetes.io/managed-by", "oj"),
            ("oj.dev/job-id", "0abc123def456"),
            ("oj.dev/step", "test"),
            ("oj.dev/instance", "oj-7d9f-abcde"),
            ("oj.dev/attempt", "2"),
        ])
    );
    let spec = pod.spec.clone().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.active_deadline_seconds, Some(1200));
    assert_eq!(
        spec.termination_grace_period_seconds,
        Some(pods::STEP_TERMINATION_GRACE_SECONDS)
    );
    assert_eq!(spec.service_account_name, None);
    assert_eq!(
        spec.automount_service_account_token,
        Some(false),
        "no API token without a chosen service account"
    );
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some("rust:1.95"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(c.command.clone().unwrap(), ["/bin/sh", "-c", "cargo test"]);
    let env = c.env.clone().unwrap();
    assert_eq!(
        (env[0].name.as_str(), env[0].value.as_deref()),
        ("CARGO_TERM_COLOR", Some("never"))
    );
    let (requests, limits) = resources(&pod);
    assert_eq!(requests, map(&[("cpu", "250m"), ("memory", "256Mi")]));
    assert_eq!(limits, map(&[("cpu", "2"), ("memory", "2Gi")]));
}

#[test]
fn service_account_pull_policy_and_deadline_come_from_config_and_step() {
    let cfg = config_with(&[
        ("OJ_PODS__SERVICE_ACCOUNT", "runner"),
        ("OJ_PODS__IMAGE_PULL_POLICY", "Always"),
    ])
    .pods;
    let mut i = input();
    i.timeout = Duration::from_millis(1500);
    let pod = build_pod(&i, &cfg, "default").unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("runner"));
    assert_eq!(
        spec.automount_service_account_token, None,
        "the chosen account's token is mounted"
    );
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("Always")
    );
    assert_eq!(spec.active_deadline_seconds, Some(2), "rounded up, never 0");
}

#[test]
fn job_then_step_overrides_field_by_field() {
    let mut i = input();
    i.job_resources = Some(ContainerResources {
        requests: Some(ResourceAmounts {
            cpu: q("500m"),
            memory: None,
        }),
        limits: Some(ResourceAmounts {
            cpu: None,
            memory: q("4Gi"),
        }),
    });
    i.step_resources = Some(ContainerResources {
        requests: Some(ResourceAmounts {
            cpu: q("1"),
            memory: None,
        }),
        limits: None,
    });
    let (requests, limits) = resources(&build_pod(&i, &defaults(), "default").unwrap());
    // cpu request: step beats job beats default; memory request: default;
    // cpu limit: default; memory limit: job.
    assert_eq!(requests, map(&[("cpu", "1"), ("memory", "256Mi")]));
    assert_eq!(limits, map(&[("cpu", "2"), ("memory", "4Gi")]));

    // Only the job level.
    i.step_resources = None;
    let (requests, limits) = resources(&build_pod(&i, &defaults(), "default").unwrap());
    assert_eq!(requests, map(&[("cpu", "500m"), ("memory", "256Mi")]));
    assert_eq!(limits, map(&[("cpu", "2"), ("memory", "4Gi")]));

    // Only the step level.
    i.job_resources = None;
    i.step_resources = Some(ContainerResources {
        requests: None,
        limits: Some(ResourceAmounts {
            cpu: q("3"),
            memory: None,
        }),
    });
    let (requests, limits) = resources(&build_pod(&i, &defaults(), "default").unwrap());
    assert_eq!(requests, map(&[("cpu", "250m"), ("memory", "256Mi")]));
    assert_eq!(limits, map(&[("cpu", "3"), ("memory", "2Gi")]));
}

#[test]
fn requests_above_limits_after_the_merge_name_the_step() {
    let mut i = input();
    // 3Gi fits under the job's 4Gi limit, but the step lowers the limit to 1Gi.
    i.job_resources = Some(ContainerResources {
        requests: Some(ResourceAmounts {
            cpu: None,
            memory: q("3Gi"),
        }),
        limits: Some(ResourceAmounts {
            cpu: None,
            memory: q("4Gi"),
        }),
    });
    i.step_resources = Some(ContainerResources {
        requests: None,
        limits: Some(ResourceAmounts {
            cpu: None,
            memory: q("1Gi"),
        }),
    });
    let err = build_pod(&i, &defaults(), "default").unwrap_err();
    assert!(
        matches!(
            err,
            PodBuildError::RequestAboveLimit {
                resource: "memory",
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("\"test\"") && msg.contains("3Gi") && msg.contains("1Gi"),
        "{msg}"
    );

    // A step request above the default limit.
    let mut i = input();
    i.step_resources = Some(ContainerResources {
        requests: Some(ResourceAmounts {
            cpu: q("2500m"),
            memory: None,
        }),
        limits: None,
    });
    let msg = build_pod(&i, &defaults(), "default")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("requests.cpu (2500m)") && msg.contains("limits.cpu (2)"),
        "{msg}"
    );
}

#[test]
fn env_override_of_the_config_reaches_the_pod() {
    let cfg = config_with(&[("OJ_PODS__RESOURCES__LIMITS__MEMORY", "4Gi")]);
    let (requests, limits) = resources(&build_pod(&input(), &cfg.pods, "default").unwrap());
    assert_eq!(limits, map(&[("cpu", "2"), ("memory", "4Gi")]));
    assert_eq!(requests, map(&[("cpu", "250m"), ("memory", "256Mi")]));

    // The same under the kubernetes profile.
    let cfg = config_with(&[
        ("OJ_PROFILE", "kubernetes"),
        ("OJ_PODS__RESOURCES__REQUESTS__CPU", "1"),
    ]);
    let (requests, _) = resources(&build_pod(&input(), &cfg.pods, "default").unwrap());
    assert_eq!(requests["cpu"], "1");
}

#[test]
fn names_and_labels_are_valid_for_long_and_odd_ids() {
    let long = "a".repeat(200);
    let ids = [
        "0abc123def456",
        long.as_str(),
        "Job_ID with Spaces/and.dots",
        "ÜNICODE-ĵob",
        "---",
        "UPPER",
        "x",
    ];
    let mut names = HashSet::new();
    for id in ids {
        for index in [0usize, 7, 123] {
            let name = pod_name(id, index);
            assert!(
                is_dns1123_label(&name),
                "{name:?} (from {id:?}) is not a DNS-1123 label"
            );
            assert!(name.len() <= 63, "{name:?} is too long");
            assert!(
                name.starts_with("oj-") && name.ends_with(&format!("-{index}")),
                "{name:?}"
            );
            assert!(
                names.insert(name.clone()),
                "two inputs share the pod name {name:?}"
            );
        }
        assert!(
            is_label_value(&pods::label_value(id)),
            "{:?}",
            pods::label_value(id)
        );
    }
    // Similar ids that sanitise alike still differ.
    assert_ne!(pod_name("Job-1", 0), pod_name("job-1", 0));
    assert_ne!(
        pod_name(&format!("{long}x"), 0),
        pod_name(&format!("{long}y"), 0)
    );

    let step = "s".repeat(63) + "-extra";
    for s in [step.as_str(), "has space", "-dash-", "ok.name_1"] {
        let mut i = input();
        i.job_id = long.clone();
        i.step_name = s.to_string();
        let pod = build_pod(&i, &defaults(), "default").unwrap();
        for (k, v) in pod.metadata.labels.unwrap() {
            assert!(is_label_value(&v), "label {k}={v:?} is invalid");
        }
        assert_eq!(
            pod.metadata.annotations.unwrap()["oj.dev/step"],
            s,
            "the exact name is kept in an annotation"
        );
    }
}

#[tokio::test]
async fn the_api_server_accepts_built_pods() {
    let fake = FakeKube::start();
    let api: Api<Pod> = Api::namespaced(fake.client(), "default");
    for (id, step) in [
        ("0abc123def456", "test"),
        (&*"Q".repeat(90), "Step With Spaces / Slashes"),
        ("x", &*"z".repeat(80)),
    ] {
        let mut i = input();
        i.job_id = id.to_string();
        i.step_name = step.to_string();
        let pod = build_pod(&i, &defaults(), "default").unwrap();
        api.create(&PostParams::default(), &pod)
            .await
            .unwrap_or_else(|e| panic!("{id:?}/{step:?}: {e}"));
    }
    assert_eq!(fake.pods("default").len(), 3);
}

#[test]
fn rbac_rules_cover_what_the_code_calls() {
    let rules: BTreeMap<(&str, &str), Vec<&str>> = pods::RBAC_RULES
        .iter()
        .map(|(g, r, v)| ((*g, *r), v.to_vec()))
        .collect();
    assert_eq!(
        rules[&("", "pods")],
        ["create", "get", "list", "watch", "patch", "delete"]
    );
    assert_eq!(rules[&("", "pods/log")], ["get"]);
    assert_eq!(
        rules[&("coordination.k8s.io", "leases")],
        ["get", "create", "update"]
    );
    assert_eq!(
        rules[&("authorization.k8s.io", "selfsubjectaccessreviews")],
        ["create"]
    );
    assert_eq!(rules[&("", "limitranges")], ["list"]);
    assert_eq!(rules[&("", "resourcequotas")], ["list"]);
    assert_eq!(
        rules[&("", "persistentvolumeclaims")],
        ["create", "get", "list", "delete"]
    );
    assert_eq!(rules.len(), 7);
}
