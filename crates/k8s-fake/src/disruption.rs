//! What the cluster does to pods that oj did not ask for, as the kubelet,
//! the scheduler and the pod garbage collector report it (SPEC §8.5): an
//! eviction under node pressure, a preemption for a higher-priority pod,
//! the loss of a node, and a pod deleted by someone else.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::FakeKube;

/// The node pods run on until [`FakeKube::bind_pod`] says otherwise.
pub const FAKE_NODE: &str = "fake-node-1";

/// Ends the pod's containers as killed (137, `Error`), phase `Failed`,
/// with a `DisruptionTarget` condition of `reason`.
fn disrupt(pod: &mut Pod, reason: &str, message: &str) {
    let now = Time(Timestamp::now());
    let containers: Vec<(String, String)> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase = Some("Failed".into());
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(now.clone()),
        ..Default::default()
    });
    status.container_statuses = Some(
        containers
            .into_iter()
            .map(|(name, image)| ContainerStatus {
                name,
                image,
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 137,
                        reason: Some("Error".into()),
                        finished_at: Some(now.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
    );
}

fn node_of(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or(FAKE_NODE)
}

impl FakeKube {
    /// The kubelet evicts the pod under node pressure: phase `Failed`,
    /// `status.reason: Evicted` with `message`, a `DisruptionTarget`
    /// condition (`TerminationByKubelet`), its container killed (137).
    pub fn evict_pod(&self, namespace: &str, name: &str, message: &str) -> bool {
        self.update_pod(namespace, name, |pod| {
            disrupt(pod, "TerminationByKubelet", message);
            let status = pod.status.get_or_insert_with(Default::default);
            status.reason = Some("Evicted".into());
            status.message = Some(message.into());
        })
    }

    /// The scheduler preempts the pod for a higher-priority one: a
    /// `DisruptionTarget` condition (`PreemptionByScheduler`), its
    /// container killed, then the pod deleted.
    pub fn preempt_pod(&self, namespace: &str, name: &str, by: &str) -> bool {
        let message = format!("{by}: preempting to accommodate a higher priority pod");
        self.update_pod(namespace, name, |pod| {
            disrupt(pod, "PreemptionByScheduler", &message)
        }) && self.delete_pod(namespace, name)
    }

    /// Schedules the pod on `node` (what [`Self::lose_node`] acts on;
    /// unbound pods are on [`FAKE_NODE`]).
    pub fn bind_pod(&self, namespace: &str, name: &str, node: &str) -> bool {
        self.update_pod(namespace, name, |pod| {
            pod.spec.get_or_insert_with(Default::default).node_name = Some(node.into());
        })
    }

    /// The node is gone: the pod garbage collector marks each of its pods
    /// `Failed` with a `DisruptionTarget` condition (`DeletionByPodGC`)
    /// and deletes it. Returns how many pods it took.
    pub fn lose_node(&self, node: &str) -> usize {
        let on_node: Vec<(String, String)> = {
            let state = self.shared.lock();
            state
                .pods
                .iter()
                .filter(|(_, e)| node_of(&e.pod) == node)
                .map(|(k, _)| k.clone())
                .collect()
        };
        let message = format!("PodGC: node {node} no longer exists");
        for (ns, name) in &on_node {
            self.update_pod(ns, name, |pod| disrupt(pod, "DeletionByPodGC", &message));
            self.delete_pod(ns, name);
        }
        on_node.len()
    }

    /// Deletes the pod as someone other than oj would (`kubectl delete pod`).
    pub fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        crate::server::delete_pod(&self.shared, namespace, name)
            .status()
            .is_success()
    }
}
