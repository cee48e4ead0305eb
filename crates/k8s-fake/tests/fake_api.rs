//! The fake behaves like an API server where `oj` depends on it: these tests
//! drive it with kube-rs, as `oj` does.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, ObjectMeta, PostParams, WatchEvent, WatchParams,
};
use oj_k8s_fake::{FakeKube, Fault};

fn pod(name: &str, labels: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "step".into(),
                image: Some("busybox".into()),
                ..Default::default()
            }],
            restart_policy: Some("Never".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            ..Default::default()
        }),
    }
}

fn api_code(e: &kube::Error) -> Option<(u16, String)> {
    match e {
        kube::Error::Api(s) => Some((s.code, s.reason.clone())),
        _ => None,
    }
}

#[tokio::test]
async fn stale_resource_version_gets_409_conflict() {
    let fake = FakeKube::start();
    let leases: Api<Lease> = Api::namespaced(fake.client(), "default");
    let created = leases
        .create(&PostParams::default(), &lease("oj-daemon", "a"))
        .await
        .unwrap();
    let rv1 = created.metadata.resource_version.clone().unwrap();

    let mut update = created.clone();
    update.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let updated = leases
        .replace("oj-daemon", &PostParams::default(), &update)
        .await
        .unwrap();
    let rv2 = updated.metadata.resource_version.clone().unwrap();
    assert!(
        rv2.parse::<u64>().unwrap() > rv1.parse::<u64>().unwrap(),
        "resourceVersion must increase"
    );

    // The same update again carries rv1, which is stale now.
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let err = leases
        .replace("oj-daemon", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    let (code, reason) = api_code(&err).expect("an API error");
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(
        err.to_string().contains("the object has been modified"),
        "{err}"
    );
    assert_eq!(
        fake.lease("default", "oj-daemon")
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("b")
    );

    // A duplicate create is AlreadyExists, a missing lease NotFound.
    let err = leases
        .create(&PostParams::default(), &lease("oj-daemon", "x"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err).unwrap(), (409, "AlreadyExists".into()));
    let err = leases.get("nope").await.unwrap_err();
    assert_eq!(api_code(&err).unwrap(), (404, "NotFound".into()));
}

#[tokio::test]
async fn duplicate_pod_is_already_exists_and_invalid_names_are_rejected() {
    let fake = FakeKube::start();
    let pods: Api<Pod> = Api::namespaced(fake.client(), "default");
    pods.create(&PostParams::default(), &pod("p1", &[]))
        .await
        .unwrap();
    let err = pods
        .create(&PostParams::default(), &pod("p1", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err).unwrap(), (409, "AlreadyExists".into()));
    let err = pods
        .create(&PostParams::default(), &pod("Bad_Name", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err).unwrap().0, 422);
    let err = pods
        .create(
            &PostParams::default(),
            &pod("p2", &[("oj.dev/step", "has space")]),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err).unwrap().0, 422);
    assert_eq!(fake.pod_creates("default"), 4);
    assert_eq!(fake.pods("default").len(), 1);
}

#[tokio::test]
async fn list_filters_by_label_selector() {
    let fake = FakeKube::start();
    let pods: Api<Pod> = Api::namespaced(fake.client(), "default");
    let other: Api<Pod> = Api::namespaced(fake.client(), "other");
    let pp = PostParams::default();
    pods.create(
        &pp,
        &pod(
            "a",
            &[
                ("app.kubernetes.io/managed-by", "oj"),
                ("oj.dev/job-id", "j1"),
            ],
        ),
    )
    .await
    .unwrap();
    pods.create(
        &pp,
        &pod(
            "b",
            &[
                ("app.kubernetes.io/managed-by", "oj"),
                ("oj.dev/job-id", "j2"),
            ],
        ),
    )
    .await
    .unwrap();
    pods.create(&pp, &pod("c", &[("app", "web")]))
        .await
        .unwrap();
    other
        .create(&pp, &pod("d", &[("app.kubernetes.io/managed-by", "oj")]))
        .await
        .unwrap();

    let names = |l: kube::api::ObjectList<Pod>| {
        l.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    let oj = pods
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=oj"))
        .await
        .unwrap();
    assert_eq!(names(oj), ["a", "b"]);
    let j2 = pods
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=oj,oj.dev/job-id=j2"))
        .await
        .unwrap();
    assert_eq!(names(j2), ["b"]);
    let notin = pods
        .list(&ListParams::default().labels("oj.dev/job-id notin (j1)"))
        .await
        .unwrap();
    assert_eq!(names(notin), ["b", "c"]);
    let all: Api<Pod> = Api::all(fake.client());
    let everywhere = all
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=oj"))
        .await
        .unwrap();
    assert_eq!(names(everywhere), ["a", "b", "d"]);
}

#[tokio::test]
async fn watch_delivers_events_from_a_resource_version() {
    let fake = FakeKube::start();
    let pods: Api<Pod> = Api::namespaced(fake.client(), "default");
    let created = pods
        .create(&PostParams::default(), &pod("w", &[("oj.dev/job-id", "j")]))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("unrelated", &[]))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.unwrap();

    let wp = WatchParams::default().labels("oj.dev/job-id=j").timeout(10);
    let mut stream = pods.watch(&wp, &rv).await.unwrap().boxed();
    assert!(fake.set_pod_phase("default", "w", "Running"));
    assert!(fake.finish_pod("default", "w", 3));
    pods.delete("w", &DeleteParams::default()).await.unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match ev {
            WatchEvent::Modified(p) => {
                seen.push(format!("MODIFIED {}", p.status.unwrap().phase.unwrap()))
            }
            WatchEvent::Deleted(p) => seen.push(format!("DELETED {}", p.metadata.name.unwrap())),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(seen, ["MODIFIED Running", "MODIFIED Failed", "DELETED w"]);

    // A watch from "0" starts with the current objects.
    let mut from_zero = pods
        .watch(&WatchParams::default().timeout(10), "0")
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), from_zero.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Added(p) => assert_eq!(p.metadata.name.as_deref(), Some("unrelated")),
        other => panic!("unexpected event {other:?}"),
    }
}

#[tokio::test]
async fn logs_wait_for_start_and_follow_until_the_pod_ends() {
    let fake = FakeKube::start();
    let pods: Api<Pod> = Api::namespaced(fake.client(), "default");
    pods.create(&PostParams::default(), &pod("l", &[]))
        .await
        .unwrap();
    let err = pods.logs("l", &LogParams::default()).await.unwrap_err();
    assert_eq!(
        api_code(&err).unwrap().0,
        400,
        "a pending pod has no log yet"
    );

    fake.set_pod_phase("default", "l", "Running");
    fake.append_pod_log("default", "l", "one\n");
    let mut lines = pods
        .log_stream(
            "l",
            &LogParams {
                follow: true,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .lines();
    assert_eq!(lines.next().await.unwrap().unwrap(), "one");
    fake.append_pod_log("default", "l", "two\n");
    assert_eq!(lines.next().await.unwrap().unwrap(), "two");
    fake.finish_pod("default", "l", 0);
    assert!(
        tokio::time::timeout(Duration::from_secs(5), lines.next())
            .await
            .unwrap()
            .is_none(),
        "stream ends with the pod"
    );
    assert_eq!(
        pods.logs("l", &LogParams::default()).await.unwrap(),
        "one\ntwo\n"
    );
}

#[tokio::test]
async fn faults_fail_requests_then_stop_and_requests_are_recorded() {
    let fake = FakeKube::start();
    let leases: Api<Lease> = Api::namespaced(fake.client(), "default");
    let l = leases
        .create(&PostParams::default(), &lease("x", "a"))
        .await
        .unwrap();
    fake.inject_fault(Fault::new("PUT", &FakeKube::lease_path("default", "x"), 500).times(2));
    for _ in 0..2 {
        let err = leases
            .replace("x", &PostParams::default(), &l)
            .await
            .unwrap_err();
        assert_eq!(api_code(&err).unwrap().0, 500);
    }
    leases
        .replace("x", &PostParams::default(), &l)
        .await
        .unwrap();
    let puts: Vec<u16> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.status)
        .collect();
    assert_eq!(puts, [500, 500, 200]);
}

#[test]
fn kubeconfig_points_at_the_fake() {
    let fake = FakeKube::start();
    let dir = std::env::temp_dir().join(format!("k8s-fake-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kubeconfig");
    fake.write_kubeconfig(&path).unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    assert_eq!(
        kc.clusters[0].cluster.as_ref().unwrap().server.as_deref(),
        Some(fake.url().as_str())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn logs_carry_timestamps_and_since_time_filters_them() {
    let fake = FakeKube::start();
    let pods: Api<Pod> = Api::namespaced(fake.client(), "default");
    pods.create(&PostParams::default(), &pod("t", &[]))
        .await
        .unwrap();
    fake.set_pod_phase("default", "t", "Running");
    fake.append_pod_log("default", "t", "early\n");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fake.append_pod_log("default", "t", "late\n");
    let stamped = pods
        .logs(
            "t",
            &LogParams {
                timestamps: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 2, "{stamped}");
    let (first_ts, text) = lines[0].split_once(' ').unwrap();
    assert_eq!(text, "early");
    let first: k8s_openapi::jiff::Timestamp = first_ts.parse().unwrap();
    let (last_ts, _) = lines[1].split_once(' ').unwrap();
    let last: k8s_openapi::jiff::Timestamp = last_ts.parse().unwrap();
    assert!(last > first);
    // sinceTime (whole seconds, as kube sends it) keeps lines at or after it.
    let since = k8s_openapi::jiff::Timestamp::from_second(last.as_second()).unwrap();
    let later = pods
        .logs(
            "t",
            &LogParams {
                since_time: Some(since),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(later, "late\n");
}

#[tokio::test]
async fn a_cut_log_stream_ends_while_the_pod_runs_and_open_streams_are_counted() {
    let fake = FakeKube::start();
    let pods: Api<Pod> = Api::namespaced(fake.client(), "default");
    pods.create(&PostParams::default(), &pod("c", &[]))
        .await
        .unwrap();
    fake.set_pod_phase("default", "c", "Running");
    fake.append_pod_log("default", "c", "a\n");
    let follow = LogParams {
        follow: true,
        ..Default::default()
    };
    let mut lines = pods.log_stream("c", &follow).await.unwrap().lines();
    assert_eq!(lines.next().await.unwrap().unwrap(), "a");
    assert_eq!(fake.open_log_streams(), 1);
    fake.cut_log_streams("default", "c");
    assert!(
        tokio::time::timeout(Duration::from_secs(5), lines.next())
            .await
            .unwrap()
            .is_none(),
        "the stream ends"
    );
    assert!(
        fake.wait_for(Duration::from_secs(5), |f| f.open_log_streams() == 0)
            .await
    );
    assert_eq!(
        fake.pod("default", "c")
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Running"),
        "the container goes on"
    );
}

#[tokio::test]
async fn open_pod_watches_are_counted_until_the_client_goes() {
    let fake = FakeKube::start();
    let pods: Api<Pod> = Api::namespaced(fake.client(), "default");
    let stream = pods
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    assert!(
        fake.wait_for(Duration::from_secs(5), |f| f.open_pod_watches() == 1)
            .await
    );
    assert_eq!(fake.peak_pod_watches(), 1);
    drop(stream);
    assert!(
        fake.wait_for(Duration::from_secs(5), |f| f.open_pod_watches() == 0)
            .await,
        "a watch whose client went away is closed even when nothing changes"
    );
    assert_eq!(fake.peak_pod_watches(), 1);
}

#[tokio::test]
async fn access_reviews_answer_from_the_rules_given() {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let fake = FakeKube::start();
    let reviews: Api<SelfSubjectAccessReview> = Api::all(fake.client());
    let ask = |resource: &str, sub: Option<&str>, verb: &str| SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some("default".into()),
                group: Some(String::new()),
                resource: Some(resource.into()),
                subresource: sub.map(str::to_string),
                verb: Some(verb.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let allowed = |r: SelfSubjectAccessReview| r.status.unwrap().allowed;
    let pp = PostParams::default();
    assert!(allowed(
        reviews
            .create(&pp, &ask("pods", None, "watch"))
            .await
            .unwrap()
    ));
    fake.set_rbac(Some(vec![
        oj_k8s_fake::RbacRule::new("default", "", "pods", &["get", "list"]),
        oj_k8s_fake::RbacRule::new("default", "", "pods/log", &["get"]),
    ]));
    assert!(allowed(
        reviews
            .create(&pp, &ask("pods", None, "get"))
            .await
            .unwrap()
    ));
    assert!(!allowed(
        reviews
            .create(&pp, &ask("pods", None, "watch"))
            .await
            .unwrap()
    ));
    assert!(allowed(
        reviews
            .create(&pp, &ask("pods", Some("log"), "get"))
            .await
            .unwrap()
    ));
}

#[tokio::test]
async fn limit_ranges_and_quotas_refuse_pods_like_admission_does() {
    let fake = FakeKube::start();
    let pods: Api<Pod> = Api::namespaced(fake.client(), "default");
    let with_limits = |name: &str, memory: &str| {
        let mut p = pod(name, &[]);
        p.spec.as_mut().unwrap().containers[0].resources =
            Some(k8s_openapi::api::core::v1::ResourceRequirements {
                limits: Some(
                    [(
                        "memory".to_string(),
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity(memory.into()),
                    )]
                    .into(),
                ),
                ..Default::default()
            });
        p
    };
    fake.put_json(
        "default",
        serde_json::json!({"kind": "LimitRange", "metadata": {"name": "lr"},
            "spec": {"limits": [{"type": "Container", "max": {"memory": "1Gi"}}]}}),
    )
    .unwrap();
    let err = pods
        .create(&PostParams::default(), &with_limits("big", "2Gi"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err).unwrap(), (403, "Forbidden".to_string()));
    assert!(
        err.to_string()
            .contains("maximum memory usage per Container is 1Gi, but limit is 2Gi"),
        "{err}"
    );
    pods.create(&PostParams::default(), &with_limits("ok", "512Mi"))
        .await
        .unwrap();

    fake.put_json(
        "default",
        serde_json::json!({"kind": "ResourceQuota", "metadata": {"name": "q"},
            "spec": {"hard": {"limits.cpu": "4"}}}),
    )
    .unwrap();
    let err = pods
        .create(&PostParams::default(), &with_limits("nocpu", "512Mi"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("failed quota: q: must specify limits.cpu"),
        "{err}"
    );
    let listed: Api<k8s_openapi::api::core::v1::ResourceQuota> =
        Api::namespaced(fake.client(), "default");
    assert_eq!(
        listed
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn a_merge_patch_relabels_a_pod_but_cannot_change_its_spec() {
    use kube::api::{Patch, PatchParams};
    let fake = FakeKube::start();
    let pods: Api<Pod> = Api::namespaced(fake.client(), "default");
    let created = pods
        .create(&PostParams::default(), &pod("p", &[("owner", "a")]))
        .await
        .unwrap();
    let patch = serde_json::json!({"metadata": {"labels": {"owner": "b"}}});
    let patched = pods
        .patch("p", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["owner"], "b");
    assert_ne!(
        patched.metadata.resource_version,
        created.metadata.resource_version
    );
    let spec = serde_json::json!({"spec": {"restartPolicy": "Always"}});
    let err = pods
        .patch("p", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err).unwrap().0, 422);
}
