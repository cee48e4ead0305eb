//! What a test does to the fake's pods as a kubelet or a node would:
//! phases, exits, waiting reasons, scheduling failures, deadlines and logs.
//! Each change bumps the resourceVersion and reaches the watchers.

use super::*;

impl FakeKube {
    /// Moves a pod to `phase` (`Pending`, `Running`, `Succeeded`, `Failed`);
    /// `Running` also marks its containers running. False if there is no such pod.
    pub fn set_pod_phase(&self, namespace: &str, name: &str, phase: &str) -> bool {
        self.update_pod(namespace, name, |pod| {
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
            status.phase = Some(phase.to_string());
            let state = match phase {
                "Running" => {
                    status.start_time.get_or_insert(now.clone());
                    Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(now),
                        }),
                        ..Default::default()
                    })
                }
                "Pending" => Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("ContainerCreating".into()),
                        message: None,
                    }),
                    ..Default::default()
                }),
                _ => None,
            };
            if let Some(state) = state {
                status.container_statuses = Some(
                    containers
                        .into_iter()
                        .map(|(name, image)| ContainerStatus {
                            name,
                            image,
                            image_id: String::new(),
                            ready: phase == "Running",
                            restart_count: 0,
                            state: Some(state.clone()),
                            ..Default::default()
                        })
                        .collect(),
                );
            }
        })
    }

    /// Ends a pod's containers with `exit_code`: phase `Succeeded` for 0,
    /// `Failed` otherwise, as the kubelet reports a `restartPolicy: Never` pod.
    pub fn finish_pod(&self, namespace: &str, name: &str, exit_code: i32) -> bool {
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        self.finish_pod_with(namespace, name, exit_code, reason)
    }

    /// Ends a pod's containers with `exit_code` and the kubelet's `reason`
    /// (`OOMKilled` with 137, `Error`, `Completed`…).
    pub fn finish_pod_with(
        &self,
        namespace: &str,
        name: &str,
        exit_code: i32,
        reason: &str,
    ) -> bool {
        self.update_pod(namespace, name, |pod| {
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
            status.phase = Some(
                if exit_code == 0 {
                    "Succeeded"
                } else {
                    "Failed"
                }
                .to_string(),
            );
            status.start_time.get_or_insert(now.clone());
            status.container_statuses = Some(
                containers
                    .into_iter()
                    .map(|(name, image)| ContainerStatus {
                        name,
                        image,
                        image_id: String::new(),
                        ready: false,
                        restart_count: 0,
                        state: Some(ContainerState {
                            terminated: Some(ContainerStateTerminated {
                                exit_code,
                                reason: Some(reason.to_string()),
                                started_at: Some(now.clone()),
                                finished_at: Some(now.clone()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
            );
        })
    }

    /// Leaves a pod `Pending` with its containers waiting for `reason`
    /// (`ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`, …), as the
    /// kubelet reports an image it cannot pull.
    pub fn set_pod_waiting(
        &self,
        namespace: &str,
        name: &str,
        reason: &str,
        message: &str,
    ) -> bool {
        self.update_pod(namespace, name, |pod| {
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
            status.phase = Some("Pending".into());
            status.container_statuses = Some(
                containers
                    .into_iter()
                    .map(|(name, image)| ContainerStatus {
                        name,
                        image,
                        image_id: String::new(),
                        ready: false,
                        restart_count: 0,
                        state: Some(ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: Some(reason.to_string()),
                                message: Some(message.to_string()),
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
            );
        })
    }

    /// Leaves a pod `Pending` with the scheduler's verdict: condition
    /// `PodScheduled=False`, reason `Unschedulable`, and `message`
    /// (e.g. `0/3 nodes are available: 3 Insufficient memory.`).
    pub fn set_pod_unschedulable(&self, namespace: &str, name: &str, message: &str) -> bool {
        self.update_pod(namespace, name, |pod| {
            let status = pod.status.get_or_insert_with(Default::default);
            status.phase = Some("Pending".into());
            status.conditions = Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some(message.to_string()),
                last_transition_time: Some(Time(Timestamp::now())),
                ..Default::default()
            }]);
        })
    }

    /// Fails a pod the way `activeDeadlineSeconds` does (`reason: DeadlineExceeded`).
    pub fn fail_pod_deadline(&self, namespace: &str, name: &str) -> bool {
        self.update_pod(namespace, name, |pod| {
            let status = pod.status.get_or_insert_with(Default::default);
            status.phase = Some("Failed".into());
            status.reason = Some("DeadlineExceeded".into());
            status.message =
                Some("Pod was active on the node longer than the specified deadline".into());
        })
    }

    /// Applies `f` to a stored pod and publishes the change (MODIFIED).
    pub fn update_pod(&self, namespace: &str, name: &str, f: impl FnOnce(&mut Pod)) -> bool {
        let mut state = self.shared.lock();
        let Some(entry) = state.pods.get(&(namespace.to_string(), name.to_string())) else {
            return false;
        };
        let mut pod = entry.pod.clone();
        f(&mut pod);
        self.shared.store_pod(&mut state, pod, "MODIFIED");
        drop(state);
        self.shared.bump();
        true
    }

    /// Adds `text` to what the pod's log endpoint returns.
    pub fn append_pod_log(&self, namespace: &str, name: &str, text: &str) -> bool {
        let mut state = self.shared.lock();
        let Some(entry) = state
            .pods
            .get_mut(&(namespace.to_string(), name.to_string()))
        else {
            return false;
        };
        entry.append_log(text);
        drop(state);
        self.shared.bump();
        true
    }

    /// Replaces the pod's log text.
    pub fn set_pod_log(&self, namespace: &str, name: &str, text: &str) -> bool {
        let mut state = self.shared.lock();
        let Some(entry) = state
            .pods
            .get_mut(&(namespace.to_string(), name.to_string()))
        else {
            return false;
        };
        entry.log.clear();
        entry.append_log(text);
        drop(state);
        self.shared.bump();
        true
    }

    /// Ends every open log stream of the pod while its container keeps
    /// running (what kubelet log rotation or an API server restart does);
    /// the log itself is kept. False if there is no such pod.
    pub fn cut_log_streams(&self, namespace: &str, name: &str) -> bool {
        let mut state = self.shared.lock();
        let Some(entry) = state
            .pods
            .get_mut(&(namespace.to_string(), name.to_string()))
        else {
            return false;
        };
        entry.log_epoch += 1;
        drop(state);
        self.shared.bump();
        true
    }

    /// The pod's log as `oj` should have stored it (every line, no timestamps).
    pub fn pod_log(&self, namespace: &str, name: &str) -> Option<String> {
        let state = self.shared.lock();
        state
            .pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|e| e.log.iter().map(|l| l.text.as_str()).collect())
    }

    // ----- what `oj config check` reads ---------------------------------------
}
