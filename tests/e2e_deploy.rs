//! deploy/ must run `oj` in a cluster as the code expects, and nothing checks
//! that at apply time but a cluster. These tests render the kustomize base and
//! the cert-manager overlay with `kubectl kustomize`, validate every object
//! against the Kubernetes schemas with `kubernetes-validate --strict`, and
//! hold the manifests to the code: the ConfigMap's `config.toml` loads under
//! the `kubernetes` profile in a pod-like environment (the real `oj` binary),
//! the grace period outlasts the drain, probes and ports match `admin.addr`
//! and `listen.tcp`, every path the config reads is mounted from the right
//! volume, the Role grants exactly what the Kubernetes code calls, and the
//! Dockerfile builds and runs what the Deployment assumes.
//!
//! Needs `kubectl` (for `kubectl kustomize`) and `kubernetes-validate`
//! (`python3 -m pip install 'kubernetes-validate==1.37.0'`); `scripts/test`
//! installs the latter.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use common::pki::Ca;
use common::{TestEnv, http};

/// The Kubernetes version the schemas are checked against: the API the code
/// is built for (k8s-openapi feature `v1_33`).
const K8S_VERSION: &str = "1.33.0";

/// After `shutdown.drain_timeout`, remaining shell steps get SIGTERM and
/// SIGKILL this much later (SPEC 3.9): the pod must outlive both.
const KILL_DELAY: Duration = Duration::from_secs(2);

/// What a pod-like environment would have for a `fieldRef: metadata.name`.
const FAKE_POD_NAME: &str = "oj-7d9c6b5f4-x2x7q";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

// ---------------------------------------------------------------------------
// Rendering and parsing

/// `kubectl kustomize <dir>` (relative to the repository), as JSON values.
fn render(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join(dir))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `kubectl kustomize {dir}` ({e}): install kubectl (it bundles kustomize)"
            )
        });
    assert!(
        out.status.success(),
        "`kubectl kustomize {dir}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_yaml_docs(&String::from_utf8_lossy(&out.stdout), dir)
}

/// Every non-empty document of a multi-document YAML stream.
fn parse_yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{what}: not YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn read_yaml_file(rel: &str) -> Vec<Value> {
    let text = fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"));
    parse_yaml_docs(&text, rel)
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn kind(v: &Value) -> &str {
    s(v, "/kind")
}

fn name(v: &Value) -> &str {
    s(v, "/metadata/name")
}

fn api_group(v: &Value) -> &str {
    s(v, "/apiVersion")
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or("")
}

fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn strings(v: &Value, pointer: &str) -> Vec<String> {
    arr(v, pointer)
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn one<'a>(objects: &'a [Value], k: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| kind(o) == k).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {k}, found {}",
        found.len()
    );
    found[0]
}

fn named<'a>(objects: &'a [Value], k: &str, n: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| kind(o) == k && name(o) == n)
        .unwrap_or_else(|| panic!("no {k} named {n:?} in the rendered manifests"))
}

/// The Deployment's `oj` container.
fn container(deploy: &Value) -> &Value {
    arr(deploy, "/spec/template/spec/containers")
        .iter()
        .find(|c| s(c, "/name") == "oj")
        .expect("the Deployment has a container named `oj`")
}

/// A container port by name or number (`port: admin` or `port: 9090`).
fn resolve_port(container: &Value, port: &Value) -> u16 {
    if let Some(n) = port.as_u64() {
        return u16::try_from(n).expect("port fits u16");
    }
    let wanted = port.as_str().expect("port is a name or a number");
    arr(container, "/ports")
        .iter()
        .find(|p| s(p, "/name") == wanted)
        .and_then(|p| p.pointer("/containerPort").and_then(Value::as_u64))
        .and_then(|n| u16::try_from(n).ok())
        .unwrap_or_else(|| panic!("no container port named {wanted:?}"))
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} is not host:port"))
}

// ---------------------------------------------------------------------------
// kubernetes-validate

/// Objects whose schema only their CRD knows. kubernetes-validate only warns
/// about them ("Couldn't find schema") and exits 0, so they are kept out of it
/// explicitly and checked structurally by `check_cert_manager_object`.
fn is_crd_object(o: &Value) -> bool {
    api_group(o) == "cert-manager.io"
}

fn kubernetes_validate_cmd() -> Command {
    let direct = Command::new("kubernetes-validate")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if matches!(direct, Ok(st) if st.success()) {
        return Command::new("kubernetes-validate");
    }
    let module = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if matches!(module, Ok(st) if st.success()) {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "kubernetes_validate"]);
        return cmd;
    }
    panic!(
        "kubernetes-validate is not installed: python3 -m pip install 'kubernetes-validate==1.37.0'"
    );
}

/// Validates every built-in object with `kubernetes-validate --strict`, one
/// file per object so that each must report `passed` on its own.
fn validate_strict(objects: &[&Value], what: &str) {
    assert!(!objects.is_empty(), "{what}: nothing to validate");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        let file = dir.path().join(format!(
            "{i:02}-{}-{}.yaml",
            kind(o).to_lowercase(),
            name(o)
        ));
        fs::write(&file, serde_norway::to_string(o).expect("to YAML")).expect("write object");
        files.push(file);
    }
    let out = kubernetes_validate_cmd()
        .args(["--strict", "--kubernetes-version", K8S_VERSION])
        .args(&files)
        .stdin(Stdio::null())
        .output()
        .expect("run kubernetes-validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what}: kubernetes-validate --strict (Kubernetes {K8S_VERSION}) rejected the manifests:\n{stdout}{stderr}"
    );
    for file in &files {
        let f = file.display().to_string();
        assert!(
            stdout
                .lines()
                .chain(stderr.lines())
                .any(|l| l.contains(&f) && l.contains("passed")),
            "{what}: kubernetes-validate did not report {f} as passed (unknown kind?):\n{stdout}{stderr}"
        );
    }
}

// ---------------------------------------------------------------------------
// cert-manager objects, checked against the fields of cert-manager.io/v1

fn go_duration(text: &str) -> Option<Duration> {
    // cert-manager takes Go durations: "2160h", "90m", "1h30m".
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = text.chars().peekable();
    if text.is_empty() {
        return None;
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next()?);
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
    }
    num.is_empty().then(|| Duration::from_secs_f64(total))
}

fn check_keys(v: &Value, allowed: &[&str], what: &str) {
    let Some(map) = v.as_object() else {
        panic!("{what} is not an object")
    };
    for k in map.keys() {
        assert!(
            allowed.contains(&k.as_str()),
            "{what}: unknown field {k:?} (cert-manager.io/v1 has {allowed:?})"
        );
    }
}

fn check_cert_manager_object(o: &Value, all: &[Value]) {
    let what = format!("{} {}", kind(o), name(o));
    assert_eq!(
        s(o, "/apiVersion"),
        "cert-manager.io/v1",
        "{what}: apiVersion"
    );
    check_keys(o, &["apiVersion", "kind", "metadata", "spec"], &what);
    assert!(!name(o).is_empty(), "{what}: metadata.name");
    let spec = o
        .pointer("/spec")
        .unwrap_or_else(|| panic!("{what}: no spec"));
    match kind(o) {
        "Certificate" => {
            check_keys(
                spec,
                &[
                    "subject",
                    "literalSubject",
                    "commonName",
                    "duration",
                    "renewBefore",
                    "renewBeforePercentage",
                    "dnsNames",
                    "ipAddresses",
                    "uris",
                    "otherNames",
                    "emailAddresses",
                    "secretName",
                    "secretTemplate",
                    "keystores",
                    "issuerRef",
                    "isCA",
                    "usages",
                    "privateKey",
                    "encodeUsagesInRequest",
                    "revisionHistoryLimit",
                    "additionalOutputFormats",
                    "nameConstraints",
                ],
                &format!("{what} spec"),
            );
            assert!(
                !s(spec, "/secretName").is_empty(),
                "{what}: spec.secretName is required"
            );
            let issuer = spec
                .pointer("/issuerRef")
                .unwrap_or_else(|| panic!("{what}: spec.issuerRef is required"));
            check_keys(
                issuer,
                &["name", "kind", "group"],
                &format!("{what} issuerRef"),
            );
            assert!(!s(issuer, "/name").is_empty(), "{what}: issuerRef.name");
            let issuer_kind = s(issuer, "/kind");
            assert!(
                ["Issuer", "ClusterIssuer"].contains(&issuer_kind),
                "{what}: issuerRef.kind {issuer_kind:?}"
            );
            assert!(
                ["", "cert-manager.io"].contains(&s(issuer, "/group")),
                "{what}: issuerRef.group"
            );
            if issuer_kind == "Issuer" {
                named(all, "Issuer", s(issuer, "/name"));
            }
            for d in ["/duration", "/renewBefore"] {
                if let Some(v) = spec.pointer(d) {
                    let text = v.as_str().unwrap_or_default();
                    assert!(
                        go_duration(text).is_some(),
                        "{what}: {d} {text:?} is not a Go duration"
                    );
                }
            }
            if let (Some(dur), Some(before)) = (
                spec.pointer("/duration")
                    .and_then(Value::as_str)
                    .and_then(go_duration),
                spec.pointer("/renewBefore")
                    .and_then(Value::as_str)
                    .and_then(go_duration),
            ) {
                assert!(
                    before < dur,
                    "{what}: renewBefore must be shorter than duration"
                );
            }
            if let Some(pk) = spec.pointer("/privateKey") {
                check_keys(
                    pk,
                    &["rotationPolicy", "encoding", "algorithm", "size"],
                    &format!("{what} privateKey"),
                );
                let ok = |p: &str, vals: &[&str]| {
                    pk.pointer(p)
                        .is_none_or(|v| vals.contains(&v.as_str().unwrap_or("?")))
                };
                assert!(
                    ok("/rotationPolicy", &["Never", "Always"]),
                    "{what}: privateKey.rotationPolicy"
                );
                assert!(
                    ok("/encoding", &["PKCS1", "PKCS8"]),
                    "{what}: privateKey.encoding"
                );
                assert!(
                    ok("/algorithm", &["RSA", "ECDSA", "Ed25519"]),
                    "{what}: privateKey.algorithm"
                );
            }
            const USAGES: &[&str] = &[
                "signing",
                "digital signature",
                "content commitment",
                "key encipherment",
                "key agreement",
                "data encipherment",
                "cert sign",
                "crl sign",
                "encipher only",
                "decipher only",
                "any",
                "server auth",
                "client auth",
                "code signing",
                "email protection",
                "s/mime",
                "ipsec end system",
                "ipsec tunnel",
                "ipsec user",
                "timestamping",
                "ocsp signing",
                "microsoft sgc",
                "netscape sgc",
            ];
            for u in strings(spec, "/usages") {
                assert!(USAGES.contains(&u.as_str()), "{what}: unknown usage {u:?}");
            }
            for ip in strings(spec, "/ipAddresses") {
                assert!(
                    ip.parse::<std::net::IpAddr>().is_ok(),
                    "{what}: ipAddresses {ip:?}"
                );
            }
        }
        "Issuer" | "ClusterIssuer" => {
            const TYPES: &[&str] = &["selfSigned", "ca", "acme", "vault", "venafi"];
            let map = spec
                .as_object()
                .unwrap_or_else(|| panic!("{what}: spec is not an object"));
            let types: Vec<&String> = map.keys().filter(|k| TYPES.contains(&k.as_str())).collect();
            assert_eq!(
                types.len(),
                1,
                "{what}: exactly one issuer type of {TYPES:?}"
            );
            if let Some(ca) = spec.pointer("/ca") {
                let secret = s(ca, "/secretName");
                assert!(!secret.is_empty(), "{what}: ca.secretName");
                // The CA's key pair must come from a CA certificate in the same render.
                let ca_cert = all
                    .iter()
                    .find(|c| kind(c) == "Certificate" && s(c, "/spec/secretName") == secret)
                    .unwrap_or_else(|| {
                        panic!("{what}: no Certificate writes the CA Secret {secret:?}")
                    });
                assert_eq!(
                    ca_cert.pointer("/spec/isCA"),
                    Some(&Value::Bool(true)),
                    "{what}: its Certificate is not a CA"
                );
            }
        }
        other => panic!("{what}: no structural check for cert-manager kind {other}"),
    }
}

// ---------------------------------------------------------------------------
// The config the pod would load

/// The Deployment's container environment as a pod would see it. `fieldRef`
/// values are faked; `secretKeyRef` values come from `secrets` (a Secret that
/// is absent leaves an optional variable unset).
fn pod_env(deploy: &Value, secrets: &BTreeMap<(&str, &str), &str>) -> Vec<(String, String)> {
    let ns = s(deploy, "/metadata/namespace");
    let mut vars = vec![
        // Set by the kubelet in every pod: what selects the `kubernetes` profile.
        (
            "KUBERNETES_SERVICE_HOST".to_string(),
            "10.96.0.1".to_string(),
        ),
        ("KUBERNETES_SERVICE_PORT".to_string(), "443".to_string()),
    ];
    for e in arr(container(deploy), "/env") {
        let var = s(e, "/name").to_string();
        if let Some(v) = e.pointer("/value") {
            vars.push((
                var,
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            ));
        } else if let Some(field) = e
            .pointer("/valueFrom/fieldRef/fieldPath")
            .and_then(Value::as_str)
        {
            let v = match field {
                "metadata.name" => FAKE_POD_NAME,
                "metadata.namespace" => ns,
                other => panic!("env {var}: no fake value for fieldRef {other}"),
            };
            vars.push((var, v.to_string()));
        } else if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
            match secrets.get(&(s(r, "/name"), s(r, "/key"))) {
                Some(v) => vars.push((var, v.to_string())),
                None => assert_eq!(
                    r.pointer("/optional"),
                    Some(&Value::Bool(true)),
                    "env {var}: a required secretKeyRef the test has no value for"
                ),
            }
        } else {
            panic!("env {var}: unsupported value source {e}");
        }
    }
    vars
}

/// The `config.toml` of the ConfigMap mounted at /etc/oj/config.toml.
fn mounted_config_toml(objects: &[Value]) -> String {
    let deploy = one(objects, "Deployment");
    let c = container(deploy);
    let mount = arr(c, "/volumeMounts")
        .iter()
        .find(|m| s(m, "/mountPath") == "/etc/oj/config.toml")
        .expect("the Deployment mounts /etc/oj/config.toml (the kubernetes profile's default config file)");
    let volume = volume(deploy, s(mount, "/name"));
    let cm_name = s(volume, "/configMap/name");
    assert!(
        !cm_name.is_empty(),
        "/etc/oj/config.toml comes from a ConfigMap"
    );
    let key = s(mount, "/subPath");
    assert!(
        !key.is_empty(),
        "/etc/oj/config.toml is mounted with subPath (a file, not a directory)"
    );
    let cm = named(objects, "ConfigMap", cm_name);
    cm.pointer(&format!("/data/{key}"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("ConfigMap {cm_name} has no key {key}"))
        .to_string()
}

fn volume<'a>(deploy: &'a Value, n: &str) -> &'a Value {
    arr(deploy, "/spec/template/spec/volumes")
        .iter()
        .find(|v| s(v, "/name") == n)
        .unwrap_or_else(|| panic!("no volume {n:?} in the Deployment"))
}

/// Runs `oj config show` as the pod would: environment from the Deployment,
/// the ConfigMap's file as the only config file (OJ_CONFIG stands in for the
/// profile's default /etc/oj/config.toml), no --profile. Returns the first
/// line (`# profile: …`) and the effective config as JSON.
fn pod_config(objects: &[Value], secrets: &BTreeMap<(&str, &str), &str>) -> (String, Value) {
    let deploy = one(objects, "Deployment");
    let env = TestEnv::new();
    let file = env.write("etc/oj/config.toml", &mounted_config_toml(objects));
    let run = |args: &[&str]| {
        let mut cmd = env.oj();
        cmd.env("OJ_CONFIG", &file);
        for (k, v) in pod_env(deploy, secrets) {
            cmd.env(k, v);
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run oj");
        assert!(
            out.status.success(),
            "`oj {}` with the ConfigMap's config.toml in a pod-like environment exited {:?}:\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let toml = run(&["config", "show"]);
    let first = toml.lines().next().unwrap_or_default().to_string();
    let json: Value = serde_json::from_str(&run(&["config", "show", "--json"]))
        .expect("config show --json is JSON");
    (first, json)
}

fn no_secrets() -> BTreeMap<(&'static str, &'static str), &'static str> {
    BTreeMap::new()
}

fn humantime(v: &Value, key: &str) -> Duration {
    let text = v
        .pointer(&format!("/{}", key.replace('.', "/")))
        .and_then(Value::as_str)
        .unwrap_or("");
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("{key} = {text:?}: {e}"))
}

// ---------------------------------------------------------------------------
// RBAC as the code declares it

const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// (apiGroup, resource) → verbs, from the `RBAC_RULES` constant in
/// crates/adapters/src/k8s. The constant lists, in order, an API group (`""`
/// or containing a dot), a resource, then its verbs; this reads its string
/// literals in that order whatever the Rust shape around them.
fn code_rbac_rules() -> Option<BTreeMap<(String, String), BTreeSet<String>>> {
    let dir = repo().join("crates/adapters/src/k8s");
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        let text = fs::read_to_string(&f).ok()?;
        let Some(start) = text.find("const RBAC_RULES") else {
            continue;
        };
        let body = &text[start..];
        let eq = body.find('=')?;
        let body = &body[eq..];
        let end = body.find("];").map(|e| e + 1).unwrap_or(body.len());
        let literals = string_literals(&body[..end]);
        let mut rules: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        let mut group: Option<String> = None;
        let mut resource: Option<String> = None;
        for lit in literals {
            if VERBS.contains(&lit.as_str()) {
                let (g, r) = (group.clone()?, resource.clone()?);
                rules.entry((g, r)).or_default().insert(lit);
            } else if lit.is_empty() || lit.contains('.') {
                group = Some(lit);
                resource = None;
            } else {
                resource = Some(lit);
            }
        }
        assert!(
            !rules.is_empty(),
            "{}: RBAC_RULES has no rules I can read",
            f.display()
        );
        return Some(rules);
    }
    None
}

fn string_literals(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = code.chars();
    while let Some(c) = chars.next() {
        if c == '/' {
            // Skip `// comments` up to the end of the line.
            let rest: String = chars.clone().take(1).collect();
            if rest == "/" {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            continue;
        }
        if c == '"' {
            let mut lit = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            lit.push(n);
                        }
                    }
                    '"' => break,
                    c => lit.push(c),
                }
            }
            out.push(lit);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn base_renders_and_every_object_validates_strictly() {
    let objects = render("deploy/base");
    let kinds: BTreeSet<&str> = objects.iter().map(kind).collect();
    for k in [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
    ] {
        assert!(
            kinds.contains(k),
            "deploy/base renders no {k} (it has {kinds:?})"
        );
    }
    for o in &objects {
        assert!(
            !["ClusterRole", "ClusterRoleBinding", "Namespace"].contains(&kind(o)),
            "deploy/base must not create cluster-wide objects; found {} {}",
            kind(o),
            name(o)
        );
        assert_ne!(
            kind(o),
            "Secret",
            "deploy/base must not carry a Secret: no secret is committed"
        );
        assert!(
            !is_crd_object(o),
            "deploy/base must need no CRD; found {} {}",
            kind(o),
            name(o)
        );
        assert!(
            !s(o, "/metadata/namespace").is_empty(),
            "{} {} has no namespace",
            kind(o),
            name(o)
        );
    }
    validate_strict(&objects.iter().collect::<Vec<_>>(), "deploy/base");
}

#[test]
fn cert_manager_overlay_validates_and_issues_the_mounted_tls_secret() {
    let objects = render("deploy/overlays/cert-manager");
    let (crds, builtin): (Vec<&Value>, Vec<&Value>) =
        objects.iter().partition(|o| is_crd_object(o));
    validate_strict(&builtin, "deploy/overlays/cert-manager");
    assert!(!crds.is_empty(), "the overlay adds no cert-manager object");
    for o in &crds {
        check_cert_manager_object(o, &objects);
    }

    // The overlay keeps everything the base has.
    let base: BTreeSet<(String, String)> = render("deploy/base")
        .iter()
        .map(|o| (kind(o).to_string(), name(o).to_string()))
        .collect();
    let overlay: BTreeSet<(String, String)> = objects
        .iter()
        .map(|o| (kind(o).to_string(), name(o).to_string()))
        .collect();
    assert!(
        base.is_subset(&overlay),
        "the overlay drops base objects: {:?}",
        base.difference(&overlay)
    );

    // Some Certificate writes exactly the Secret the Deployment mounts at /etc/oj/tls.
    let deploy = one(&objects, "Deployment");
    let tls_mount = arr(container(deploy), "/volumeMounts")
        .iter()
        .find(|m| s(m, "/mountPath") == "/etc/oj/tls")
        .expect("/etc/oj/tls is mounted");
    let tls_secret = s(volume(deploy, s(tls_mount, "/name")), "/secret/secretName");
    let cert = objects
        .iter()
        .find(|o| kind(o) == "Certificate" && s(o, "/spec/secretName") == tls_secret)
        .unwrap_or_else(|| {
            panic!("no Certificate issues the Secret {tls_secret:?} mounted at /etc/oj/tls")
        });
    assert_ne!(
        cert.pointer("/spec/isCA"),
        Some(&Value::Bool(true)),
        "the server certificate must not be a CA"
    );
    let ns = s(deploy, "/metadata/namespace");
    assert_eq!(
        s(cert, "/metadata/namespace"),
        ns,
        "the Certificate's Secret must be in the Deployment's namespace"
    );
    let usages = strings(cert, "/spec/usages");
    assert!(
        usages.is_empty() || usages.iter().any(|u| u == "server auth"),
        "usages lack `server auth`"
    );

    // Its names are what clients connect to: the Service, and localhost
    // through `kubectl port-forward`.
    let svc = one(&objects, "Service");
    let dns = strings(cert, "/spec/dnsNames");
    for wanted in [format!("{}.{ns}.svc", name(svc)), "localhost".to_string()] {
        assert!(
            dns.contains(&wanted),
            "the Certificate's dnsNames {dns:?} lack {wanted:?}"
        );
    }
}

#[test]
fn configmap_config_loads_under_the_kubernetes_profile() {
    let objects = render("deploy/base");
    let config = mounted_config_toml(&objects);

    // As the lead's contract puts it: explicit profile, the file as --config.
    let env = TestEnv::new();
    let file = env.write("config.toml", &config);
    let file_arg = file.display().to_string();
    let out = env.run(&[
        "--profile",
        "kubernetes",
        "--config",
        &file_arg,
        "config",
        "show",
    ]);
    assert_eq!(
        out.code,
        Some(0),
        "`oj --profile kubernetes --config <ConfigMap config.toml> config show` failed:\n{}{}",
        out.stdout,
        out.stderr
    );

    // As the pod does it: the profile detected from KUBERNETES_SERVICE_HOST,
    // the Deployment's environment, the Webhook Secret absent.
    let (profile, cfg) = pod_config(&objects, &no_secrets());
    assert!(
        profile.contains("profile: kubernetes"),
        "the pod would not run the kubernetes profile: {profile}"
    );
    assert_eq!(
        s(&cfg, "/daemon/instance"),
        FAKE_POD_NAME,
        "daemon.instance must come from POD_NAME"
    );
    assert_eq!(
        s(&cfg, "/lock/strategy"),
        "lease",
        "a pod must take the Lease"
    );
    assert_eq!(
        s(&cfg, "/notify/backend"),
        "log",
        "without the webhook Secret, notifications are logged"
    );
    assert_eq!(
        s(&cfg, "/log/format"),
        "json",
        "kubectl logs expects JSON lines"
    );
    assert_eq!(
        cfg.pointer("/log/stdout"),
        Some(&Value::Bool(true)),
        "the pod logs to stdout"
    );
    assert_eq!(
        cfg.pointer("/tls/enabled"),
        Some(&Value::Bool(true)),
        "the API is served with TLS"
    );

    // With the Secret `oj-webhook` present, its URL switches the backend to
    // webhook (SPEC 2.6): config.toml must not pin notify.backend.
    let secrets = BTreeMap::from([
        (("oj-webhook", "url"), "https://hooks.example.com/oj"),
        (
            ("oj-webhook", "secret"),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
    ]);
    let (_, cfg) = pod_config(&objects, &secrets);
    assert_eq!(
        s(&cfg, "/notify/backend"),
        "webhook",
        "setting the oj-webhook Secret must switch notifications to the webhook"
    );
}

#[test]
fn grace_period_outlasts_the_drain_and_the_kill_delay() {
    let objects = render("deploy/base");
    let (_, cfg) = pod_config(&objects, &no_secrets());
    let drain = humantime(&cfg, "shutdown.drain_timeout");
    let deploy = one(&objects, "Deployment");
    let grace = deploy
        .pointer("/spec/template/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_u64)
        .expect("terminationGracePeriodSeconds is set");
    assert!(
        Duration::from_secs(grace) > drain + KILL_DELAY,
        "terminationGracePeriodSeconds {grace} must exceed shutdown.drain_timeout ({drain:?}) + {KILL_DELAY:?}, \
         or the kubelet SIGKILLs the daemon before it has written its snapshot and released the Lease"
    );
}

#[test]
fn probes_and_ports_match_admin_and_listen() {
    let objects = render("deploy/base");
    let (_, cfg) = pod_config(&objects, &no_secrets());
    let admin = port_of(s(&cfg, "/admin/addr"));
    let api = port_of(s(&cfg, "/listen/tcp"));
    let deploy = one(&objects, "Deployment");
    let c = container(deploy);

    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let p = c
            .pointer(&format!("/{probe}/httpGet"))
            .unwrap_or_else(|| panic!("{probe} is an httpGet probe"));
        assert_eq!(s(p, "/path"), path, "{probe} path");
        let port = resolve_port(c, p.pointer("/port").expect("probe port"));
        assert_eq!(port, admin, "{probe} must hit admin.addr's port");
        let scheme = s(p, "/scheme");
        assert!(
            scheme.is_empty() || scheme == "HTTP",
            "{probe}: the admin endpoints are plain HTTP"
        );
    }

    // The Service reaches the API on listen.tcp's port as 7777 (SPEC 4), and
    // the admin port for scraping.
    let svc = one(&objects, "Service");
    let svc_port = |target: u16| {
        arr(svc, "/spec/ports")
            .iter()
            .find(|p| resolve_port(c, p.pointer("/targetPort").unwrap_or(&Value::Null)) == target)
            .and_then(|p| p.pointer("/port").and_then(Value::as_u64))
    };
    assert_eq!(
        svc_port(api),
        Some(7777),
        "the Service must expose listen.tcp's port {api} as 7777"
    );
    assert_eq!(
        svc_port(admin),
        Some(u64::from(admin)),
        "the Service must expose the admin port {admin}"
    );
    let labels = deploy
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .expect("pod labels");
    for (k, v) in svc
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .expect("Service selector")
    {
        assert_eq!(
            labels.get(k),
            Some(v),
            "the Service selector {k}={v} does not match the pod"
        );
    }
    // Step pods carry app.kubernetes.io/managed-by=oj; the Service must not
    // select on that and route API traffic to them.
    assert!(
        svc.pointer("/spec/selector/app.kubernetes.io~1managed-by")
            .is_none(),
        "the Service selector must not match step pods"
    );
}

#[test]
fn every_path_the_config_reads_is_mounted_from_the_right_volume() {
    let objects = render("deploy/base");
    let (_, cfg) = pod_config(&objects, &no_secrets());
    let deploy = one(&objects, "Deployment");
    let c = container(deploy);
    let mounts = arr(c, "/volumeMounts");
    // The mount a path lives under (longest mountPath prefix).
    let mount_of = |path: &str| -> (&Value, &Value) {
        let m = mounts
            .iter()
            .filter(|m| {
                let mp = s(m, "/mountPath");
                path == mp || path.starts_with(&format!("{}/", mp.trim_end_matches('/')))
            })
            .max_by_key(|m| s(m, "/mountPath").len())
            .unwrap_or_else(|| panic!("{path} is not on any volume mount"));
        (m, volume(deploy, s(m, "/name")))
    };
    // A Secret file: the mount must project the key named like the file.
    let secret_file = |key: &str, pointer: &str| -> String {
        let path = s(&cfg, pointer);
        assert!(
            path.starts_with('/'),
            "{key} = {path:?} must be an absolute path"
        );
        let (m, v) = mount_of(path);
        let secret = s(v, "/secret/secretName");
        assert!(
            !secret.is_empty(),
            "{key} ({path}) must be on a Secret volume"
        );
        let file = path
            .trim_start_matches(s(m, "/mountPath"))
            .trim_start_matches('/');
        let items = arr(v, "/secret/items");
        assert!(
            items.is_empty() || items.iter().any(|i| s(i, "/path") == file),
            "{key}: the Secret volume does not project {file}"
        );
        secret.to_string()
    };

    let token = secret_file("listen.auth_token_file", "/listen/auth_token_file");
    assert!(token.ends_with("token"), "the token Secret is {token}");
    let cert = secret_file("tls.cert", "/tls/cert");
    let key = secret_file("tls.key", "/tls/key");
    assert_eq!(
        cert, key,
        "tls.cert and tls.key must come from one kubernetes.io/tls Secret"
    );
    assert_eq!(
        s(&cfg, "/tls/cert"),
        "/etc/oj/tls/tls.crt",
        "the TLS Secret's tls.crt"
    );
    assert_eq!(
        s(&cfg, "/tls/key"),
        "/etc/oj/tls/tls.key",
        "the TLS Secret's tls.key"
    );
    let (tls_mount, _) = mount_of(s(&cfg, "/tls/cert"));
    assert!(
        tls_mount.pointer("/subPath").is_none(),
        "/etc/oj/tls must not use subPath: renewed certificates would never appear"
    );

    // The state directory: a PersistentVolumeClaim of the render, writable.
    let state = s(&cfg, "/daemon/state_dir");
    let (m, v) = mount_of(state);
    assert_eq!(
        s(m, "/mountPath"),
        state,
        "daemon.state_dir must be the mount point itself"
    );
    assert_ne!(
        m.pointer("/readOnly"),
        Some(&Value::Bool(true)),
        "daemon.state_dir must be writable"
    );
    let claim = s(v, "/persistentVolumeClaim/claimName");
    assert!(
        !claim.is_empty(),
        "daemon.state_dir ({state}) must be on a PersistentVolumeClaim"
    );
    named(&objects, "PersistentVolumeClaim", claim);

    // The read-only root filesystem leaves /tmp writable for steps.
    let (m, v) = mount_of("/tmp/x");
    assert!(v.pointer("/emptyDir").is_some(), "/tmp must be an emptyDir");
    assert_ne!(
        m.pointer("/readOnly"),
        Some(&Value::Bool(true)),
        "/tmp must be writable"
    );

    // The config file, the token and the TLS files are mounted read-only.
    for path in [
        "/etc/oj/config.toml",
        s(&cfg, "/listen/auth_token_file"),
        s(&cfg, "/tls/cert"),
    ] {
        let (m, _) = mount_of(path);
        assert_eq!(
            m.pointer("/readOnly"),
            Some(&Value::Bool(true)),
            "{path} must be mounted read-only"
        );
    }

    // The Secrets the docs and the example tell the operator to create are
    // the ones mounted.
    let example = read_yaml_file("deploy/secrets.example.yaml");
    let example_ref: Vec<&Value> = example.iter().collect();
    validate_strict(&example_ref, "deploy/secrets.example.yaml");
    let tls = named(&example, "Secret", &cert);
    assert_eq!(
        s(tls, "/type"),
        "kubernetes.io/tls",
        "the TLS Secret is of type kubernetes.io/tls"
    );
    let tok = named(&example, "Secret", &token);
    assert!(
        tok.pointer("/stringData/token").is_some(),
        "the token Secret has the key `token`"
    );
    let docs = fs::read_to_string(repo().join("docs/deploy.md")).expect("docs/deploy.md");
    assert!(
        docs.contains(&format!("create secret generic {token}")),
        "docs/deploy.md must create the Secret {token}"
    );
    assert!(
        docs.contains(&format!("create secret tls {cert}")),
        "docs/deploy.md must create the Secret {cert}"
    );
}

#[test]
fn role_grants_exactly_what_the_kubernetes_code_calls() {
    let objects = render("deploy/base");
    let role = one(&objects, "Role");
    let mut granted: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in arr(role, "/rules") {
        for g in strings(rule, "/apiGroups") {
            for r in strings(rule, "/resources") {
                for v in strings(rule, "/verbs") {
                    assert_ne!(v, "*", "the Role must not grant every verb");
                    assert_ne!(r, "*", "the Role must not grant every resource");
                    granted.entry((g.clone(), r.clone())).or_default().insert(v);
                }
            }
        }
    }
    let wanted = code_rbac_rules().expect(
        "no `const RBAC_RULES` under crates/adapters/src/k8s: the Kubernetes code must declare the API calls it makes",
    );
    assert_eq!(
        granted, wanted,
        "the Role (deploy/base/role.yaml) must grant exactly RBAC_RULES of crates/adapters/src/k8s"
    );

    // Bound to the ServiceAccount the pod runs as, in the same namespace.
    let deploy = one(&objects, "Deployment");
    let sa = s(deploy, "/spec/template/spec/serviceAccountName");
    named(&objects, "ServiceAccount", sa);
    let binding = one(&objects, "RoleBinding");
    assert_eq!(s(binding, "/roleRef/kind"), "Role");
    assert_eq!(s(binding, "/roleRef/name"), name(role));
    let ns = s(deploy, "/metadata/namespace");
    assert!(
        arr(binding, "/subjects")
            .iter()
            .any(|sub| s(sub, "/kind") == "ServiceAccount"
                && s(sub, "/name") == sa
                && [ns, ""].contains(&s(sub, "/namespace"))),
        "the RoleBinding must bind the Role to ServiceAccount {sa}"
    );
    assert_ne!(
        deploy.pointer("/spec/template/spec/automountServiceAccountToken"),
        Some(&Value::Bool(false)),
        "the daemon needs its ServiceAccount token for the Lease and step pods"
    );
}

#[test]
fn deployment_is_one_restricted_pod_with_the_downward_api() {
    let objects = render("deploy/base");
    let deploy = one(&objects, "Deployment");
    assert_eq!(
        deploy.pointer("/spec/replicas").and_then(Value::as_u64),
        Some(1),
        "one daemon: replicas 1"
    );
    assert_eq!(
        s(deploy, "/spec/strategy/type"),
        "Recreate",
        "the old pod drains before the new one starts"
    );
    let pod = deploy.pointer("/spec/template/spec").expect("pod spec");
    let c = container(deploy);
    let sc = |p: &str| {
        c.pointer(&format!("/securityContext{p}"))
            .or_else(|| pod.pointer(&format!("/securityContext{p}")))
    };
    assert_eq!(
        sc("/runAsNonRoot"),
        Some(&Value::Bool(true)),
        "runAsNonRoot"
    );
    assert_eq!(
        c.pointer("/securityContext/readOnlyRootFilesystem"),
        Some(&Value::Bool(true)),
        "read-only root"
    );
    assert_eq!(
        c.pointer("/securityContext/allowPrivilegeEscalation"),
        Some(&Value::Bool(false))
    );
    assert_eq!(
        strings(c, "/securityContext/capabilities/drop"),
        vec!["ALL".to_string()],
        "drop ALL capabilities"
    );
    assert_eq!(
        sc("/seccompProfile/type").and_then(Value::as_str),
        Some("RuntimeDefault")
    );
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(
                c.pointer(&format!("/resources/{k}/{r}")).is_some(),
                "resources.{k}.{r} is set"
            );
        }
    }
    // The kubelet's service links would add OJ_PORT_* and similar variables
    // for a Service named `oj`, in the namespace oj reads OJ_* from.
    assert_eq!(
        pod.pointer("/enableServiceLinks"),
        Some(&Value::Bool(false)),
        "enableServiceLinks: false"
    );

    let env = arr(c, "/env");
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert!(
            env.iter()
                .any(|e| s(e, "/name") == var && s(e, "/valueFrom/fieldRef/fieldPath") == field),
            "{var} must come from the downward API ({field})"
        );
    }
    // The profile is detected in the pod: pinning it would hide a broken
    // detection, and a literal OJ_* variable would override config.toml unseen.
    for e in env {
        let var = s(e, "/name");
        assert_ne!(
            var, "OJ_PROFILE",
            "the kubernetes profile is detected from KUBERNETES_SERVICE_HOST"
        );
    }
    assert_eq!(
        strings(c, "/args"),
        vec!["daemon".to_string()],
        "the container runs `oj daemon`"
    );
}

/// Dockerfile instructions with `\` continuations joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = fs::read_to_string(repo().join("deploy/Dockerfile")).expect("deploy/Dockerfile");
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        // Comment lines may sit inside a continued instruction too.
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(stripped) = t.strip_suffix('\\') {
            cur.push_str(stripped);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (inst, args) = cur.split_once(char::is_whitespace).unwrap_or((&cur, ""));
        out.push((inst.to_ascii_uppercase(), args.trim().to_string()));
        cur.clear();
    }
    out
}

#[test]
fn dockerfile_builds_oj_and_runs_it_as_the_deployment_expects() {
    let inst = dockerfile();
    let froms: Vec<usize> = inst
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| i == "FROM")
        .map(|(n, _)| n)
        .collect();
    assert!(
        froms.len() >= 2,
        "deploy/Dockerfile is multi-stage (builder + runtime)"
    );
    let last = *froms.last().expect("a FROM");
    let (builder, runtime) = (&inst[..last], &inst[last..]);
    assert!(
        builder.iter().any(|(i, a)| i == "RUN"
            && a.contains("cargo build")
            && a.contains("--release")
            && a.contains("--locked")),
        "the builder stage runs `cargo build --release --locked`"
    );
    assert!(
        runtime[0].1.contains("debian") && runtime[0].1.contains("slim"),
        "the runtime is Debian slim"
    );

    // The Rust image is at least the workspace's rust-version.
    let args: BTreeMap<&str, &str> = inst
        .iter()
        .filter(|(i, _)| i == "ARG")
        .filter_map(|(_, a)| a.split_once('='))
        .collect();
    let rust = args
        .get("RUST_VERSION")
        .copied()
        .expect("ARG RUST_VERSION=…");
    let manifest: toml::Table = fs::read_to_string(repo().join("Cargo.toml"))
        .expect("Cargo.toml")
        .parse()
        .expect("TOML");
    let msrv = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("rust-version");
    let ver = |v: &str| {
        v.split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    assert!(
        ver(rust) >= ver(msrv),
        "RUST_VERSION {rust} is older than the workspace rust-version {msrv}"
    );

    let runs: String = runtime
        .iter()
        .filter(|(i, _)| i == "RUN")
        .map(|(_, a)| a.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    for pkg in ["git", "bash", "ca-certificates"] {
        assert!(
            runs.split_whitespace().any(|w| w == pkg),
            "the runtime image installs {pkg} for shell steps"
        );
    }
    assert!(
        runtime
            .iter()
            .any(|(i, a)| i == "COPY" && a.contains("--from=") && a.contains("/usr/local/bin/oj")),
        "the runtime copies the built binary to /usr/local/bin/oj"
    );

    // The user is numeric (so runAsNonRoot can verify it) and the one the
    // Deployment pins.
    let user = runtime
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, a)| a.as_str())
        .expect("USER");
    let uid: u64 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("USER is numeric");
    assert_ne!(uid, 0, "the image runs as non-root");
    let objects = render("deploy/base");
    let deploy = one(&objects, "Deployment");
    let c = container(deploy);
    let run_as = c
        .pointer("/securityContext/runAsUser")
        .or_else(|| deploy.pointer("/spec/template/spec/securityContext/runAsUser"))
        .and_then(Value::as_u64);
    assert_eq!(
        run_as,
        Some(uid),
        "the Deployment's runAsUser must be the image's USER"
    );
    assert!(
        runs.contains(&format!("--uid {uid}")),
        "the image creates the user {uid}"
    );

    // ENTRYPOINT runs oj (through an init), CMD is what the Deployment passes.
    let json = |k: &str| -> Vec<String> {
        let a = inst
            .iter()
            .rev()
            .find(|(i, _)| i == k)
            .map(|(_, a)| a.as_str())
            .unwrap_or_else(|| panic!("{k}"));
        serde_json::from_str(a).unwrap_or_else(|_| panic!("{k} uses the exec (JSON) form"))
    };
    let entry = json("ENTRYPOINT");
    assert_eq!(
        entry.last().map(String::as_str),
        Some("/usr/local/bin/oj"),
        "ENTRYPOINT ends with the oj binary"
    );
    assert_eq!(
        json("CMD"),
        strings(c, "/args"),
        "CMD and the Deployment's args agree"
    );
    assert_eq!(json("CMD"), vec!["daemon".to_string()]);

    // The profile is detected in the pod, never baked into the image.
    for (i, a) in &inst {
        assert!(
            !(i == "ENV" && a.contains("OJ_")),
            "the image must not set OJ_* variables: {a}"
        );
    }
    // HOME is writable despite the read-only root filesystem.
    let home = runtime
        .iter()
        .filter(|(i, _)| i == "ENV")
        .find_map(|(_, a)| a.strip_prefix("HOME="))
        .expect("ENV HOME=…");
    assert!(
        arr(c, "/volumeMounts")
            .iter()
            .any(|m| s(m, "/mountPath") == home),
        "HOME {home} must be a writable mount in the Deployment"
    );

    // The build context (repository root) keeps what cargo needs.
    let ignore = fs::read_to_string(repo().join("deploy/Dockerfile.dockerignore"))
        .expect("Dockerfile.dockerignore");
    for needed in [
        "crates",
        "profiles",
        "tests",
        "bench",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
    ] {
        assert!(
            !ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == needed),
            "deploy/Dockerfile.dockerignore must not exclude {needed}: the build needs it"
        );
    }
    // Nor any file compiled into the binary (include_str!/include_bytes!).
    let excluded: Vec<&str> = ignore
        .lines()
        .map(|l| l.trim().trim_end_matches('/'))
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains('*'))
        .collect();
    for (file, included) in compiled_in_files() {
        let top = included
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        assert!(
            !top.as_deref().is_some_and(|t| excluded.contains(&t)),
            "{file} compiles in {} but deploy/Dockerfile.dockerignore leaves it out of the build context",
            included.display()
        );
    }
}

/// (source file, repository-relative path) of every include_str!/include_bytes!
/// in crates/*/src.
fn compiled_in_files() -> Vec<(String, PathBuf)> {
    let root = repo().canonicalize().expect("repository root");
    let mut out = Vec::new();
    let mut stack = vec![root.join("crates")];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() && p.file_name().is_some_and(|n| n != "target") {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs")
                && p.components().any(|c| c.as_os_str() == "src")
            {
                let text = fs::read_to_string(&p).unwrap_or_default();
                for mac in ["include_str!(\"", "include_bytes!(\""] {
                    for (at, _) in text.match_indices(mac) {
                        let rest = &text[at + mac.len()..];
                        let Some(end) = rest.find('"') else { continue };
                        let target = p.parent().expect("parent").join(&rest[..end]);
                        let Ok(target) = target.canonicalize() else {
                            continue;
                        };
                        if let Ok(rel) = target.strip_prefix(&root) {
                            out.push((p.display().to_string(), rel.to_path_buf()));
                        }
                    }
                }
            }
        }
    }
    assert!(
        out.iter().any(|(_, r)| r.starts_with("profiles")),
        "the built-in profiles are compiled in; found {out:?}"
    );
    out
}

#[test]
fn a_daemon_from_the_configmap_answers_the_probes_and_a_laptop_client() {
    let objects = render("deploy/base");
    let deploy = one(&objects, "Deployment");
    let c = container(deploy);
    let grace = deploy
        .pointer("/spec/template/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_u64)
        .expect("terminationGracePeriodSeconds");

    // The pod's files, in a temp dir instead of /etc/oj and /var/lib/oj.
    let env = TestEnv::new();
    let config = env.write("etc/oj/config.toml", &mounted_config_toml(&objects));
    // A CA and a server certificate for localhost, as cert-manager's CA
    // issuer or the openssl recipe in docs/deploy.md would make them.
    let ca = Ca::new("oj e2e CA");
    let server = ca.server().issue();
    let ca_file = env.write("laptop/oj-ca.crt", &ca.pem);
    let cert_file = env.write("etc/oj/tls/tls.crt", &server.cert);
    let key_file = env.write("etc/oj/tls/tls.key", &server.key);
    let token = "c2VjcmV0LXRva2VuLWZvci10aGUtZGVwbG95LXRlc3Q";
    let token_file = env.write("etc/oj/secret/token", &format!("{token}\n"));
    let state = env.path().join("var/lib/oj");
    let (api, admin) = (common::free_port(), common::free_port());

    // What differs from the pod, and only that: the mounted paths, loopback
    // ports, and no Lease (no Kubernetes API here); the profile is given
    // because KUBERNETES_SERVICE_HOST would make oj look for that API.
    let mut cmd = env.oj();
    cmd.env("OJ_CONFIG", &config);
    for (k, v) in pod_env(deploy, &no_secrets()) {
        if !k.starts_with("KUBERNETES_") {
            cmd.env(k, v);
        }
    }
    let set = |k: &str, v: &Path| format!("{k}={}", v.display());
    cmd.args(["--profile", "kubernetes"])
        .args(["--set", &set("tls.cert", &cert_file)])
        .args(["--set", &set("tls.key", &key_file)])
        .args(["--set", &set("listen.auth_token_file", &token_file)])
        .args(["--set", &set("daemon.state_dir", &state)])
        .args(["--set", &format!("listen.tcp=127.0.0.1:{api}")])
        .args(["--set", &format!("admin.addr=127.0.0.1:{admin}")])
        .args(["--set", "lock.strategy=none"])
        .args(strings(c, "/args"));
    let mut daemon = common::Daemon::spawn_raw(cmd, env.path(), state.join("daemon.sock"));

    // The probes, with the Deployment's own paths.
    let probe_path = |probe: &str| s(c, &format!("/{probe}/httpGet/path")).to_string();
    let (live, ready) = (probe_path("livenessProbe"), probe_path("readinessProbe"));
    let up = common::wait_until(Duration::from_secs(15), || {
        daemon.exited().is_some() || http::get(admin, &ready).status == 200
    });
    assert!(
        up && daemon.exited().is_none(),
        "the daemon never answered {ready} with 200\nstdout:\n{}\nstderr:\n{}",
        daemon.stdout(),
        daemon.stderr()
    );
    assert_eq!(http::get(admin, &live).status, 200, "liveness probe {live}");

    // Logs are JSON lines on stdout, as `kubectl logs` shows them.
    let first = daemon
        .stdout()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let line: Value = serde_json::from_str(&first)
        .unwrap_or_else(|e| panic!("the first log line is not JSON ({e}): {first}"));
    for field in ["timestamp", "level", "target", "message"] {
        assert!(
            line.get(field).is_some(),
            "log line without {field}: {first}"
        );
    }

    // A laptop client as docs/deploy.md sets it up (through port-forward,
    // the server is localhost).
    let client = TestEnv::new();
    let out = client
        .oj()
        .env("OJ_DAEMON_URL", format!("https://localhost:{api}"))
        .env("OJ_CLIENT__CA", &ca_file)
        .env("OJ_AUTH_TOKEN", token)
        .args(["status", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run oj status");
    assert!(
        out.status.success(),
        "oj status from a laptop failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    assert_eq!(s(&status, "/profile"), "kubernetes");
    assert_eq!(
        s(&status, "/instance"),
        FAKE_POD_NAME,
        "instance from POD_NAME"
    );

    // SIGTERM, as the kubelet sends it: the idle daemon drains and exits 0
    // well inside the grace period.
    daemon.sigterm();
    let exit = daemon.wait_exit(Duration::from_secs(grace));
    assert!(
        exit.is_some_and(|st| st.success()),
        "the daemon did not exit 0 within terminationGracePeriodSeconds ({grace} s) of SIGTERM: {exit:?}\n{}",
        daemon.stderr()
    );
}

#[test]
fn role_lets_oj_check_its_own_permissions_and_the_namespace_limits() {
    let objects = render("deploy/base");
    let role = one(&objects, "Role");
    let grants = |group: &str, resource: &str, verb: &str| {
        arr(role, "/rules").iter().any(|rule| {
            strings(rule, "/apiGroups").iter().any(|g| g == group)
                && strings(rule, "/resources").iter().any(|r| r == resource)
                && strings(rule, "/verbs").iter().any(|v| v == verb)
        })
    };
    for (group, resource, verb, why) in [
        (
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "create",
            "`oj config check` asks the API what the service account may do",
        ),
        (
            "",
            "limitranges",
            "list",
            "checks pods.resources against LimitRanges",
        ),
        (
            "",
            "resourcequotas",
            "list",
            "checks pods.resources against ResourceQuotas",
        ),
        (
            "",
            "pods",
            "watch",
            "one shared watch follows every step pod",
        ),
        (
            "",
            "pods",
            "patch",
            "a restarted daemon adopts its predecessor's pods",
        ),
        (
            "",
            "persistentvolumeclaims",
            "create",
            "a job's workspace is a claim made before its first pod",
        ),
        (
            "",
            "persistentvolumeclaims",
            "delete",
            "a job's workspace goes when the job ends",
        ),
    ] {
        assert!(
            grants(group, resource, verb),
            "the Role must grant {verb} on {resource} ({group:?}): {why}"
        );
    }
    // Nothing oj does needs a cluster-wide grant or a write to what it reads.
    for (group, resource, verb) in [
        ("", "limitranges", "create"),
        ("", "resourcequotas", "update"),
        ("", "pods", "deletecollection"),
        ("coordination.k8s.io", "leases", "delete"),
        // A job's `secrets` are secretKeyRefs the kubelet resolves: oj never
        // reads a Secret, not even its own token through the API.
        ("", "secrets", "get"),
        ("", "secrets", "list"),
        ("", "secrets", "watch"),
    ] {
        assert!(
            !grants(group, resource, verb),
            "the Role grants {verb} on {resource}, which oj never does"
        );
    }
}

#[test]
fn all_pods_overlay_validates_and_hands_every_step_to_the_cluster() {
    let objects = render("deploy/overlays/all-pods");
    validate_strict(
        &objects.iter().collect::<Vec<_>>(),
        "deploy/overlays/all-pods",
    );
    let base: BTreeSet<(String, String)> = render("deploy/base")
        .iter()
        .map(|o| (kind(o).to_string(), name(o).to_string()))
        .collect();
    let kinds: BTreeSet<String> = objects.iter().map(|o| kind(o).to_string()).collect();
    for (k, _) in &base {
        assert!(kinds.contains(k), "the overlay dropped the base's {k}");
    }
    // The pod's config, as the pod loads it, hands all work to the cluster.
    let (profile, cfg) = pod_config(&objects, &no_secrets());
    assert!(profile.contains("profile: kubernetes"), "{profile}");
    assert!(
        !s(&cfg, "/pods/default_image").is_empty(),
        "pods.default_image is set: {cfg}"
    );
    assert_eq!(cfg.pointer("/jobs/allow_shell"), Some(&Value::Bool(false)));
    assert!(
        cfg.pointer("/pods/labels/kueue.x-k8s.io~1queue-name")
            .and_then(Value::as_str)
            .is_some_and(|q| !q.is_empty()),
        "step pods name their Kueue LocalQueue: {cfg}"
    );
    assert!(
        cfg.pointer("/pods/allowed_secrets")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty() && !a.iter().any(|n| n == "oj-token")),
        "jobs may read named Secrets, never the daemon's own token: {cfg}"
    );
    // And `oj config check` finds nothing wrong with it.
    let env = TestEnv::new();
    let file = env.write("config.toml", &mounted_config_toml(&objects));
    let file_arg = file.display().to_string();
    let out = env.run(&[
        "--profile",
        "kubernetes",
        "--config",
        &file_arg,
        "--set",
        "tls.enabled=false",
        "--set",
        "listen.auth_token=0123456789abcdef0123456789abcdef",
        "--set",
        "lock.strategy=none",
        "--set",
        &format!("daemon.state_dir={}", env.path().join("state").display()),
        "config",
        "show",
    ]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
}
