//! A job's `workspace` (SPEC §8.5): one PersistentVolumeClaim
//! `oj-<job-id>-ws` (ReadWriteOnce, the job's size and class), created
//! before the job's first pod, mounted at `/workspace` in each of its step
//! pods, labelled like oj's pods, found again after a restart (the claim is
//! read before it is created), and deleted when the job ends unless
//! `pods.keep_finished`. [`Workspaces::sweep`] deletes the claims of jobs
//! that ended (or that the daemon no longer knows) while no daemon ran.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use oj_core::Workspace;

use super::pods::{
    self, ANNOTATION_INSTANCE, ANNOTATION_JOB_ID, ANNOTATION_JOB_NAME, LABEL_INSTANCE,
    LABEL_JOB_ID, LABEL_MANAGED_BY, MANAGED_BY_VALUE,
};

/// The label that tells a workspace claim from other objects oj labels.
pub const LABEL_WORKSPACE: &str = "oj.dev/workspace";

/// `oj-<job-id>-ws`, a valid object name whatever the job id.
pub fn claim_name(job_id: &str) -> String {
    pods::pod_name_with(job_id, "-ws".into())
}

/// The claim of job `job_id`'s workspace, owned by `instance`.
pub fn build_claim(
    job_id: &str,
    job_name: &str,
    ws: &Workspace,
    namespace: &str,
    instance: &str,
) -> PersistentVolumeClaim {
    let labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (LABEL_JOB_ID.to_string(), pods::label_value(job_id)),
        (LABEL_INSTANCE.to_string(), pods::label_value(instance)),
        (LABEL_WORKSPACE.to_string(), "true".to_string()),
    ]);
    let annotations = BTreeMap::from([
        (ANNOTATION_JOB_ID.to_string(), job_id.to_string()),
        (ANNOTATION_JOB_NAME.to_string(), job_name.to_string()),
        (ANNOTATION_INSTANCE.to_string(), instance.to_string()),
    ]);
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim_name(job_id)),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    K8sQuantity(ws.size.as_str().to_string()),
                )])),
                ..Default::default()
            }),
            storage_class_name: ws.storage_class.clone(),
            ..Default::default()
        }),
        status: None,
    }
}

/// The job id a claim belongs to: the exact annotation, else the label.
fn claim_job_id(pvc: &PersistentVolumeClaim) -> Option<String> {
    let meta = &pvc.metadata;
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_JOB_ID))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(LABEL_JOB_ID)))
        .cloned()
}

/// The workspace claims of one namespace and instance.
#[derive(Clone)]
pub struct Workspaces {
    api: Api<PersistentVolumeClaim>,
    namespace: String,
    instance: String,
}

impl Workspaces {
    pub fn new(client: kube::Client, namespace: &str, instance: &str) -> Workspaces {
        Workspaces {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            instance: instance.to_string(),
        }
    }

    /// The claim of the job's workspace: the existing one (a step after the
    /// first, or after a restart), else a new one. Returns its name.
    pub async fn ensure(
        &self,
        job_id: &str,
        job_name: &str,
        ws: &Workspace,
    ) -> Result<String, String> {
        let name = claim_name(job_id);
        let ns = &self.namespace;
        let read = |e: kube::Error| format!("could not read the workspace claim {ns}/{name}: {e}");
        match self.api.get_opt(&name).await {
            Ok(Some(existing)) => return self.check_owned(existing, &name, job_id),
            Ok(None) => {}
            Err(e) => return Err(read(e)),
        }
        let claim = build_claim(job_id, job_name, ws, ns, &self.instance);
        match self.api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                tracing::info!(claim = %name, namespace = %ns, size = %ws.size, "created the job's workspace");
                Ok(name)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => match self.api.get_opt(&name).await {
                Ok(Some(existing)) => self.check_owned(existing, &name, job_id),
                Ok(None) => Err(format!(
                    "the workspace claim {ns}/{name} vanished while being created"
                )),
                Err(e) => Err(read(e)),
            },
            Err(kube::Error::Api(s)) if s.code == 403 => Err(format!(
                "could not create the workspace claim {ns}/{name}: {}; the Role needs `create` on persistentvolumeclaims (see deploy/base/role.yaml), or a ResourceQuota refuses the size",
                s.message
            )),
            Err(e) => Err(format!(
                "could not create the workspace claim {ns}/{name}: {e}"
            )),
        }
    }

    fn check_owned(
        &self,
        pvc: PersistentVolumeClaim,
        name: &str,
        job_id: &str,
    ) -> Result<String, String> {
        let managed = pvc
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_MANAGED_BY))
            .is_some_and(|v| v == MANAGED_BY_VALUE);
        if !managed || claim_job_id(&pvc).is_some_and(|id| id != job_id) {
            return Err(format!(
                "a PersistentVolumeClaim {}/{name} exists and is not this job's workspace (no {LABEL_MANAGED_BY}={MANAGED_BY_VALUE} label for job {job_id}); delete it or use another namespace",
                self.namespace
            ));
        }
        if pvc.metadata.deletion_timestamp.is_some() {
            return Err(format!(
                "the workspace claim {}/{name} is being deleted; the job's files are gone",
                self.namespace
            ));
        }
        Ok(name.to_string())
    }

    /// Whether the job's workspace claim still exists (a rerun from a later
    /// step needs the files the earlier steps left).
    pub async fn exists(&self, job_id: &str) -> Result<bool, String> {
        let name = claim_name(job_id);
        match self.api.get_opt(&name).await {
            Ok(found) => Ok(found.is_some_and(|p| p.metadata.deletion_timestamp.is_none())),
            Err(e) => Err(format!(
                "could not read the workspace claim {}/{name}: {e}",
                self.namespace
            )),
        }
    }

    /// Deletes the job's workspace claim; `Ok(false)` when there was none.
    pub async fn delete(&self, job_id: &str) -> Result<bool, String> {
        let name = claim_name(job_id);
        match self.api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(claim = %name, namespace = %self.namespace, "deleted the job's workspace");
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(format!(
                "could not delete the workspace claim {}/{name}: {e}",
                self.namespace
            )),
        }
    }

    /// Deletes the workspace claims whose job is not in `keep` and that are
    /// this daemon's: labelled for this instance, or of a job in `known`
    /// (in a cluster `daemon.instance` is `$POD_NAME`, so the claims of the
    /// jobs this daemon's state knows may carry a predecessor's label).
    /// Claims of another instance's jobs are never touched. Returns the
    /// names deleted.
    pub async fn sweep(
        &self,
        keep: &HashSet<String>,
        known: &HashSet<String>,
    ) -> Result<Vec<String>, kube::Error> {
        let selector = format!("{},{LABEL_WORKSPACE}=true", pods::MANAGED_SELECTOR);
        let list = self
            .api
            .list(&ListParams::default().labels(&selector))
            .await?;
        let mine = pods::label_value(&self.instance);
        let mut deleted = Vec::new();
        for pvc in list.items {
            let job = claim_job_id(&pvc);
            if job.as_ref().is_some_and(|id| keep.contains(id)) {
                continue;
            }
            let own_label = pvc
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_INSTANCE))
                .is_some_and(|v| *v == mine);
            let own_job = job.as_ref().is_some_and(|id| known.contains(id));
            if !own_label && !own_job {
                continue;
            }
            let Some(name) = pvc.metadata.name.clone() else {
                continue;
            };
            match self.api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => deleted.push(name),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_is_read_write_once_of_the_size_and_class_labelled_like_pods() {
        let ws = Workspace {
            size: "5Gi".parse().unwrap(),
            storage_class: Some("fast".into()),
        };
        let pvc = build_claim("0mx49xbba000", "build", &ws, "ci", "oj-0");
        assert_eq!(pvc.metadata.name.as_deref(), Some("oj-0mx49xbba000-ws"));
        let labels = pvc.metadata.labels.unwrap();
        assert_eq!(labels[LABEL_MANAGED_BY], "oj");
        assert_eq!(labels[LABEL_JOB_ID], "0mx49xbba000");
        assert_eq!(labels[LABEL_INSTANCE], "oj-0");
        let spec = pvc.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), ["ReadWriteOnce"]);
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"].0,
            "5Gi"
        );
        assert!(pods::is_dns1123_label(&claim_name(&"X_".repeat(60))));
    }
}
