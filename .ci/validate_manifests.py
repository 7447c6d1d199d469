#!/usr/bin/env python3
"""Validate the manifests in examples/ (run through .ci/validate-manifests.sh).

1. Every Kubernetes document validates in strict mode (unknown fields are
   errors) with kubernetes-validate, against each Kubernetes version given.
2. JobSet: kubernetes-validate ships schemas for built-in kinds only and the
   JobSet CRD cannot be fetched offline, so the JobSet's own fields are checked
   against the jobset.x-k8s.io/v1alpha2 field lists below and every
   replicatedJob's template is validated strictly as a batch/v1 Job. Any other
   kind without a schema is an error, never a silent skip.
3. Every reference to the peergate image is the one images/build.sh builds.
4. The examples agree with themselves: Service/subdomain/selector names,
   --peers against completions, publishNotReadyAddresses for init-container
   gates, JobSet --template names pointing at existing pods.
5. Every gate passes peergate's own configuration rules (src/config.rs) in
   every pod it runs in: peers given one way only, --indices below --peers,
   this pod's completion index below --peers, a hostfile directory that is a
   writable mount, Open MPI told to keep the hostfile's FQDNs.
6. job-restricted.yaml passes the Pod Security Standard "restricted".
7. A NetworkPolicy admits a barrier Job's port only from that Job's pods and
   lets them reach DNS.
8. kustomization.yaml points kustomize's `images:` at the built image; with
   --kubectl, every example is built through it (`kubectl kustomize`) with
   another registry, and no reference to the original may remain.
"""

import argparse
import copy
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml
from kubernetes_validate import utils as kv

JOBSET_API = "jobset.x-k8s.io/v1alpha2"
# Field names of jobset.x-k8s.io/v1alpha2 (JobSet API reference).
JOBSET_FIELDS = {
    "JobSet": {"apiVersion", "kind", "metadata", "spec", "status"},
    "JobSetSpec": {
        "replicatedJobs", "network", "successPolicy", "failurePolicy", "startupPolicy",
        "suspend", "coordinator", "managedBy", "ttlSecondsAfterFinished",
    },
    "Network": {"enableDNSHostnames", "subdomain", "publishNotReadyAddresses"},
    "ReplicatedJob": {"name", "groupName", "template", "replicas", "dependsOn"},
}
# Pod Security Standards: sysctls allowed by "baseline" (and so "restricted").
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}
RESTRICTED_FILES = {"job-restricted.yaml"}
# peergate's exit codes (README, "Exit codes"), other than 0.
PEERGATE_EXIT_CODES = {1, 2, 124, 126, 127, 130, 143}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def for_file(text, versions):
    """The Kubernetes versions to validate a manifest against: all of them,
    but none older than what a `# minimum Kubernetes: X.Y` line in the file
    names (a feature such as native sidecars needs a newer cluster). The
    minimum itself is then validated instead."""
    m = re.search(r"^# minimum Kubernetes: (\d+)\.(\d+)\s*$", text, re.M)
    if not m:
        return versions
    floor = (int(m.group(1)), int(m.group(2)))
    out = []
    for v in versions:
        major, minor = (int(x) for x in v.split(".")[:2])
        if (major, minor) < floor:
            v = f"{floor[0]}.{floor[1]}.0"
        if v not in out:
            out.append(v)
    return out


class Checker:
    def __init__(self, image, kubectl=None):
        self.image = image
        self.kubectl = kubectl
        self.errors = []
        # Job name -> barrier port, of every Job whose gates run --mode barrier.
        self.barrier_jobs = {}

    def error(self, where, msg):
        self.errors.append(f"{where}: {msg}")

    # -- generic helpers -------------------------------------------------

    def containers(self, pod_spec):
        for key in ("initContainers", "containers"):
            for c in pod_spec.get(key) or []:
                yield key, c

    def check_images(self, where, images, text):
        """Any image of a repository named peergate must be the built one, also
        a tagged reference in comments (e.g. a Dockerfile line COPY --from=<image>)."""
        for img in images:
            repo = img.rsplit("@", 1)[0]
            repo = repo.rsplit(":", 1)[0] if ":" in repo.rsplit("/", 1)[-1] else repo
            if repo.rsplit("/", 1)[-1] == "peergate" and img != self.image:
                self.error(where, f"image {img!r} is not the image this repo builds ({self.image})")
        for ref in re.findall(r"(?<![\w./-])[\w.-]+(?:/[\w.-]+)*/peergate[:@][\w.:-]+", text):
            if ref.rstrip(".") != self.image:
                self.error(where, f"mentions {ref!r}, not the image this repo builds ({self.image})")
        if self.image not in text:
            self.error(where, f"never references {self.image}")

    @staticmethod
    def arg_value(args, flag):
        """Value of --flag in peergate's arguments (--flag=V or --flag V),
        ignoring what follows `--` (the command peergate execs)."""
        if "--" in args:
            args = args[: args.index("--")]
        for i, a in enumerate(args):
            if a == flag and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(flag + "="):
                return a.split("=", 1)[1]
        return None

    @staticmethod
    def flag(container_args, env, flag):
        """A flag's value as peergate sees it: the argument, else its
        PEERGATE_<FLAG> variable (literal values only)."""
        value = Checker.arg_value(container_args, flag)
        if value is None:
            var = "PEERGATE_" + flag[2:].upper().replace("-", "_")
            value = next((e.get("value") for e in env if e.get("name") == var), None)
        return value

    @staticmethod
    def parse_indices(text):
        """peergate's --indices syntax (`0`, `0-3,7`), as peers::parse_indices."""
        out = set()
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            lo, hi = int(lo), int(hi or lo)
            if lo > hi:
                raise ValueError(f"range {part!r} runs backwards")
            out.update(range(lo, hi + 1))
        return sorted(out)

    def peer_indices(self, where, cname, container, args):
        """The indices a gate waits for, from its arguments, with the rules
        that need no pod (exclusive flags, ranges). Whether a pod is a member
        and its index fits is peergate's own call: .ci/dry_run_examples.py
        runs it in every pod. Returns None for --hosts or after an error."""
        env = container.get("env") or []
        get = lambda f: self.flag(args, env, f)
        hosts, peers, indices = get("--hosts"), get("--peers"), get("--indices")
        if hosts is not None:
            for other in ("--peers", "--indices", "--template"):
                if get(other) is not None:
                    self.error(where, f"{cname}: --hosts conflicts with {other} (exit 2)")
            return None
        if peers is None and indices is None:
            self.error(where, f"{cname}: no peers given: --peers, --indices or --hosts (exit 2)")
            return None
        try:
            n = int(peers) if peers is not None else None
            subset = self.parse_indices(indices) if indices is not None else None
        except ValueError as e:
            self.error(where, f"{cname}: unparsable --peers/--indices: {e} (exit 2)")
            return None
        if n is not None and n < 1:
            self.error(where, f"{cname}: --peers {n}: a Job has at least one pod (exit 2)")
            return None
        if n is not None and subset is not None:
            bad = [i for i in subset if i >= n]
            if bad:
                self.error(where, f"{cname}: index {bad[0]} is not below --peers {n} (exit 2)")
                return None
        return subset if subset is not None else list(range(n))

    def check_handoff(self, where, pod, cname, container, args):
        """A hostfile must land in a writable mount (peergate checks the
        directory at start-up, exit 2); an Open MPI hostfile needs the
        workload to keep FQDNs."""
        path = self.flag(args, container.get("env") or [], "--write-hostfile")
        if not path:
            return
        directory = path.rsplit("/", 1)[0] or "/"
        mounts = {m["mountPath"].rstrip("/"): m for m in container.get("volumeMounts") or []}
        mount = mounts.get(directory.rstrip("/"))
        if mount is None or mount.get("readOnly"):
            self.error(where, f"{cname}: --write-hostfile {path}: {directory} is not a writable volume mount")
        fmt = self.flag(args, container.get("env") or [], "--hostfile-format")
        if fmt == "openmpi":
            need = {"OMPI_MCA_orte_keep_fqdn_hostnames", "PRTE_MCA_prte_keep_fqdn_hostnames"}
            for c in pod.get("containers") or []:
                have = {e.get("name") for e in c.get("env") or []}
                if need - have:
                    self.error(
                        where,
                        f"container {c['name']}: an Open MPI hostfile needs {', '.join(sorted(need - have))} "
                        "(Open MPI otherwise cuts the names at the first dot)",
                    )

    def peergate_containers(self, pod_spec):
        """(kind, container, peergate arguments) of every container running
        peergate: the peergate image, or a workload image whose command starts
        peergate."""
        for key, c in self.containers(pod_spec):
            command = c.get("command") or []
            if c.get("image") == self.image and not command:
                args = c.get("args") or []
            elif command and command[0].rsplit("/", 1)[-1] == "peergate":
                args = command[1:] + (c.get("args") or [])
            else:
                continue
            # `peergate await` and `peergate run` wait for the local --serve
            # instance and take none of the gate's peer flags: not gates.
            if args[:1] in (["await"], ["run"]):
                continue
            yield key, c, args

    # -- Kubernetes schema validation -------------------------------------

    @staticmethod
    def known_schema_bug(doc, error):
        """The OpenAPI of Kubernetes <= 1.28 marks a podFailurePolicy rule's
        onPodConditions as required, while the API server (batch validation:
        exactly one of onExitCodes and a non-empty onPodConditions) and the
        Job docs' own examples use onExitCodes alone."""
        path = list(error.path)
        if path[:3] != ["spec", "podFailurePolicy", "rules"] or len(path) != 4:
            return False
        rule = doc["spec"]["podFailurePolicy"]["rules"][path[3]]
        return error.validator == "required" and "'onPodConditions'" in error.message and "onExitCodes" in rule

    def validate_schema(self, where, doc, versions):
        for version in versions:
            checked = doc
            while True:
                try:
                    kv.validate(checked, version, strict=True)
                except kv.ValidationError as e:
                    if self.known_schema_bug(checked, e):
                        # Validate the rest: fill the rule in a copy so the
                        # schema reports the next problem, if any.
                        checked = copy.deepcopy(checked)
                        rule = checked["spec"]["podFailurePolicy"]["rules"][e.path[3]]
                        rule["onPodConditions"] = [{"type": "Placeholder", "status": "True"}]
                        continue
                    path = ".".join(str(p) for p in e.path)
                    self.error(where, f"k8s {version}: {path}: {e.message}")
                except kv.SchemaNotFoundError as e:
                    self.error(where, f"no schema: {e.message}")
                break

    # -- per-kind checks ---------------------------------------------------

    def check_job_file(self, name, docs, versions):
        services = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Service"}
        for doc in docs:
            where = f"{name} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            self.validate_schema(where, doc, versions)
            if doc.get("kind") != "Job":
                continue
            job = doc["spec"]
            pod = job["template"]["spec"]
            if job.get("completionMode") != "Indexed":
                self.error(where, "completionMode must be Indexed (hostnames <job>-<index>)")
            if job.get("parallelism") != job.get("completions"):
                self.error(where, "parallelism must equal completions, or gates wait for unscheduled pods")
            svc = services.get(pod.get("subdomain"))
            if svc is None:
                self.error(where, f"subdomain {pod.get('subdomain')!r} names no Service in the file")
            else:
                if svc["spec"].get("clusterIP") != "None":
                    self.error(where, "the subdomain Service must be headless (clusterIP: None)")
                if svc["spec"].get("selector", {}).get("job-name") != doc["metadata"]["name"]:
                    self.error(where, "the Service selector job-name must be the Job's name")
            gates = list(self.peergate_containers(pod))
            if not gates:
                self.error(where, "no peergate container")
            for key, c, args in gates:
                cname = c["name"]
                if self.flag(args, c.get("env") or [], "--mode") == "barrier":
                    port = int(self.flag(args, c.get("env") or [], "--port") or 7470)
                    self.barrier_jobs[doc["metadata"]["name"]] = port
                    if port not in [p.get("containerPort") for p in c.get("ports") or []]:
                        self.error(where, f"{cname}: barrier port {port} is not among its containerPorts")
                self.peer_indices(where, cname, c, args)
                self.check_handoff(where, pod, cname, c, args)
                peers = self.flag(args, c.get("env") or [], "--peers")
                if peers is None or int(peers) != job.get("completions"):
                    self.error(where, f"{cname}: --peers {peers} != completions {job.get('completions')}")
                if key == "initContainers" and svc is not None and not svc["spec"].get("publishNotReadyAddresses"):
                    self.error(where, "an init-container gate needs publishNotReadyAddresses: true")
            self.check_failure_policy(where, job, pod)
            if name in RESTRICTED_FILES:
                self.check_restricted(where, pod)

    def check_failure_policy(self, where, job, pod):
        """What the API server checks and kubernetes-validate cannot, and
        what a rule on the gate's exit codes must mean."""
        policy = job.get("podFailurePolicy")
        if not policy:
            return
        if pod.get("restartPolicy") != "Never":
            self.error(where, "podFailurePolicy needs restartPolicy: Never")
        names = {c["name"] for _, c in self.containers(pod)}
        gates = {c["name"] for _, c, _ in self.peergate_containers(pod)}
        for i, rule in enumerate(policy.get("rules") or []):
            on_exit = rule.get("onExitCodes")
            if not on_exit:
                continue
            cname = on_exit.get("containerName")
            if cname is not None and cname not in names:
                self.error(where, f"podFailurePolicy rule {i}: containerName {cname!r} is no container of the pod")
            if cname not in gates:
                continue
            values = set(on_exit.get("values") or [])
            if on_exit.get("operator") == "In" and values - PEERGATE_EXIT_CODES:
                self.error(where, f"podFailurePolicy rule {i}: peergate never exits {sorted(values - PEERGATE_EXIT_CODES)}")
            if rule.get("action") == "Ignore" and 124 in values:
                self.error(where, f"podFailurePolicy rule {i}: Ignore on a gate timeout (124) retries for ever")
            if rule.get("action") == "FailIndex" and "backoffLimitPerIndex" not in job:
                self.error(where, f"podFailurePolicy rule {i}: FailIndex needs spec.backoffLimitPerIndex")

    def check_jobset(self, name, doc, versions):
        where = f"{name} JobSet/{doc.get('metadata', {}).get('name')}"
        if doc.get("apiVersion") != JOBSET_API:
            self.error(where, f"apiVersion must be {JOBSET_API}")
        self.check_fields(where, doc, "JobSet")
        js_name = doc["metadata"]["name"]
        spec = doc.get("spec") or {}
        self.check_fields(where + " spec", spec, "JobSetSpec")
        network = spec.get("network") or {}
        self.check_fields(where + " spec.network", network, "Network")
        for key in ("enableDNSHostnames", "publishNotReadyAddresses"):
            if key in network and not isinstance(network[key], bool):
                self.error(where, f"spec.network.{key} must be a boolean")
        if network.get("enableDNSHostnames") is not True:
            self.error(where, "spec.network.enableDNSHostnames must be true for pod DNS names")
        if network.get("publishNotReadyAddresses") is False:
            self.error(where, "publishNotReadyAddresses: false deadlocks init-container gates")
        subdomain = network.get("subdomain", js_name)
        # Every pod hostname the JobSet will create, with its replicated job.
        hostnames = set()
        rjobs = spec.get("replicatedJobs") or []
        if not rjobs:
            self.error(where, "spec.replicatedJobs is empty")
        for rj in rjobs:
            self.check_fields(f"{where} replicatedJob {rj.get('name')}", rj, "ReplicatedJob")
            if not isinstance(rj.get("replicas", 1), int):
                self.error(where, f"replicatedJob {rj.get('name')}: replicas must be an integer")
            job_spec = (rj.get("template") or {}).get("spec") or {}
            for j in range(rj.get("replicas", 1)):
                for p in range(job_spec.get("completions", 1)):
                    host = f"{js_name}-{rj['name']}-{j}-{p}"
                    if not DNS_LABEL.match(host):
                        self.error(where, f"pod hostname {host!r} is not a DNS label")
                    hostnames.add(host)
        for rj in rjobs:
            rj_where = f"{where} replicatedJob {rj['name']}"
            template = rj.get("template") or {}
            job = {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": dict(template.get("metadata") or {}, name=f"{js_name}-{rj['name']}-0"),
                "spec": template.get("spec") or {},
            }
            self.validate_schema(rj_where + " (as batch/v1 Job)", job, versions)
            job_spec = job["spec"]
            if job_spec.get("completionMode") != "Indexed":
                self.error(rj_where, "completionMode must be Indexed")
            pod = (job_spec.get("template") or {}).get("spec") or {}
            gates = list(self.peergate_containers(pod))
            if not gates:
                self.error(rj_where, "no peergate container")
            for _, c, args in gates:
                cname = c["name"]
                self.check_handoff(rj_where, pod, cname, c, args)
                waits_for = self.peer_indices(rj_where, cname, c, args)
                template_arg = self.flag(args, c.get("env") or [], "--template")
                if template_arg is None:
                    self.error(rj_where, f"{cname}: needs --template for JobSet pod names")
                    continue
                for i in waits_for or []:
                    host, _, rest = template_arg.replace("{index}", str(i)).partition(".")
                    if host not in hostnames:
                        self.error(rj_where, f"--template peer {i} is {host!r}, which no pod of the JobSet is named")
                    if not rest.startswith("{subdomain}") and not rest.startswith(subdomain + "."):
                        self.error(rj_where, f"--template must put the pod under the subdomain {subdomain!r}")

    def check_fields(self, where, obj, type_name):
        if not isinstance(obj, dict):
            self.error(where, f"must be a mapping ({type_name})")
            return
        unknown = set(obj) - JOBSET_FIELDS[type_name]
        if unknown:
            self.error(where, f"unknown {type_name} fields: {', '.join(sorted(unknown))}")

    def check_restricted(self, where, pod):
        """The controls of the Pod Security Standard "restricted" (which include baseline)."""
        psc = pod.get("securityContext") or {}
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(key):
                self.error(where, f"restricted: {key} must not be true")
        for vol in pod.get("volumes") or []:
            kinds = set(vol) - {"name"}
            if not kinds <= RESTRICTED_VOLUME_TYPES:
                self.error(where, f"restricted: volume type {kinds} not allowed")
        for s in psc.get("sysctls") or []:
            if s.get("name") not in SAFE_SYSCTLS:
                self.error(where, f"restricted: sysctl {s.get('name')} is not a safe sysctl")
        if psc.get("runAsUser") == 0:
            self.error(where, "restricted: pod runAsUser 0")
        pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
        if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
            self.error(where, f"restricted: pod seccompProfile {pod_seccomp}")
        for _, c in self.containers(pod):
            cw = f"{where} container {c['name']}"
            sc = c.get("securityContext") or {}
            if sc.get("privileged"):
                self.error(cw, "restricted: privileged")
            if sc.get("allowPrivilegeEscalation") is not False:
                self.error(cw, "restricted: allowPrivilegeEscalation must be false")
            caps = sc.get("capabilities") or {}
            if "ALL" not in (caps.get("drop") or []):
                self.error(cw, "restricted: capabilities.drop must contain ALL")
            if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
                self.error(cw, "restricted: only NET_BIND_SERVICE may be added")
            non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            if non_root is not True:
                self.error(cw, "restricted: runAsNonRoot must be true (pod or container)")
            if sc.get("runAsUser") == 0:
                self.error(cw, "restricted: runAsUser 0")
            seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
            if seccomp not in ("RuntimeDefault", "Localhost"):
                self.error(cw, "restricted: seccompProfile must be RuntimeDefault or Localhost")
            if any(p.get("hostPort") for p in c.get("ports") or []):
                self.error(cw, "restricted: hostPort")
            if sc.get("procMount", "Default") != "Default":
                self.error(cw, "restricted: procMount")
            if sc.get("readOnlyRootFilesystem") is not True:
                # Not a PSS control, but promised by this example.
                self.error(cw, "readOnlyRootFilesystem must be true")

    # -- NetworkPolicy ----------------------------------------------------

    JOB_LABEL = "batch.kubernetes.io/job-name"

    def check_network_policy(self, name, doc):
        where = f"{name} NetworkPolicy/{doc['metadata']['name']}"
        spec = doc["spec"]
        job = (spec.get("podSelector") or {}).get("matchLabels", {}).get(self.JOB_LABEL)
        if job is None:
            self.error(where, f"podSelector must select the Job's pods by {self.JOB_LABEL}")
            return
        port = self.barrier_jobs.get(job)
        if port is None:
            self.error(where, f"selects Job {job!r}, which no example runs in barrier mode")
            return
        if "Ingress" not in (spec.get("policyTypes") or []):
            self.error(where, "policyTypes must include Ingress")
        own = {"podSelector": {"matchLabels": {self.JOB_LABEL: job}}}
        for rule in spec.get("ingress") or []:
            if rule.get("from") != [own]:
                self.error(where, f"every ingress rule must admit only the Job's own pods ({own})")
        admitted = {
            (p.get("protocol", "TCP"), p.get("port"))
            for rule in spec.get("ingress") or [] for p in rule.get("ports") or []
        }
        if admitted != {("TCP", port)}:
            self.error(where, f"ingress must admit exactly TCP {port} (the barrier port), not {sorted(admitted)}")
        if "Egress" in (spec.get("policyTypes") or []):
            egress = {
                (p.get("protocol", "TCP"), p.get("port"))
                for rule in spec.get("egress") or [] for p in rule.get("ports") or []
            }
            for needed in (("UDP", 53), ("TCP", 53), ("TCP", port)):
                if needed not in egress:
                    self.error(where, f"egress must allow {needed[0]} {needed[1]}")

    # -- kustomize --------------------------------------------------------

    def image_refs(self, node):
        """Every value of an `image` key in a manifest tree."""
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "image" and isinstance(v, str):
                    yield v
                else:
                    yield from self.image_refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from self.image_refs(v)

    def kustomize(self, directory):
        out = subprocess.run(
            [self.kubectl, "kustomize", str(directory)], capture_output=True, text=True
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    def check_kustomization(self, path, doc, examples):
        where = path.name
        repo, _, tag = self.image.rpartition(":")
        if doc.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or doc.get("kind") != "Kustomization":
            self.error(where, "must be a kustomize.config.k8s.io/v1beta1 Kustomization")
        for res in doc.get("resources") or []:
            if not (path.parent / res).is_file():
                self.error(where, f"resource {res} is not a file in {path.parent}")
        entries = [i for i in doc.get("images") or [] if i.get("name") == repo]
        if len(entries) != 1:
            self.error(where, f"needs one images: entry named {repo}")
        elif entries[0].get("newTag") != tag:
            self.error(where, f"images: newTag must be {tag!r}, the version images/build.sh tags")
        if not self.kubectl:
            print(f"checked {where} (structure only: no kubectl)")
            return
        try:
            built = self.kustomize(path.parent)
        except RuntimeError as e:
            self.error(where, f"kubectl kustomize failed: {e}")
            return
        # Every example through the same images: rule, pointed elsewhere.
        mirror = "registry.example.com/mirror/peergate"
        for example in examples:
            with tempfile.TemporaryDirectory() as tmp:
                (pathlib.Path(tmp) / example.name).write_text(example.read_text())
                (pathlib.Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump({
                    "apiVersion": doc.get("apiVersion"),
                    "kind": "Kustomization",
                    "resources": [example.name],
                    "images": [dict(entries[0] if entries else {}, name=repo, newName=mirror)],
                }))
                try:
                    out = self.kustomize(tmp)
                except RuntimeError as e:
                    self.error(where, f"{example.name}: kubectl kustomize failed: {e}")
                    continue
            before = [r for d in yaml.safe_load_all(example.read_text()) if d for r in self.image_refs(d)]
            after = [r for d in out for r in self.image_refs(d)]
            ours = sum(1 for r in before if r == self.image)
            if any(r.startswith(repo + ":") or r.startswith(repo + "@") for r in after):
                self.error(where, f"{example.name}: kustomize left a reference to {repo}")
            if sum(1 for r in after if r == f"{mirror}:{tag}") != ours:
                self.error(where, f"{example.name}: kustomize did not point all {ours} peergate images at {mirror}")
        print(
            f"checked {where}: kubectl kustomize builds "
            f"{', '.join(d['kind'] + '/' + d['metadata']['name'] for d in built)}, "
            f"and points the peergate images of all {len(examples)} examples elsewhere"
        )

    # -- Compose ----------------------------------------------------------

    def check_compose(self, name, doc, text):
        services = doc.get("services") or {}
        self.check_images(name, [s.get("image", "") for s in services.values()], text)
        for sname, s in services.items():
            if s.get("image") != self.image:
                continue
            where = f"{name} service {sname}"
            if s.get("user") != "65532:65532" or s.get("cap_drop") != ["ALL"] or s.get("read_only") is not True:
                self.error(where, "the gate must run as 65532:65532, cap_drop [ALL], read_only")
            if not str(s.get("network_mode", "")).startswith("service:"):
                self.error(where, "the gate must join a sandbox (network_mode: service:<pod>)")

    # -- driver -----------------------------------------------------------

    def run(self, paths, versions):
        kustomizations, policies = [], []
        examples = [p for p in paths if p.name != "kustomization.yaml" and not p.name.startswith("compose")]
        all_versions = versions
        for path in paths:
            name = path.name
            text = path.read_text()
            versions = for_file(text, all_versions)
            docs = [d for d in yaml.safe_load_all(text) if d]
            if not docs:
                self.error(name, "empty")
                continue
            if name.startswith("compose"):
                self.check_compose(name, docs[0], text)
                print(f"checked {name} (compose)")
                continue
            if name == "kustomization.yaml":
                kustomizations.append((path, docs[0]))
                continue
            if all(d.get("kind") == "NetworkPolicy" for d in docs):
                for d in docs:
                    self.validate_schema(f"{name} NetworkPolicy/{d['metadata']['name']}", d, versions)
                    policies.append((name, d))
                print(f"checked {name}: {', '.join('NetworkPolicy/' + d['metadata']['name'] for d in docs)}")
                continue
            images = []
            for d in docs:
                spec = d.get("spec") or {}
                pods = []
                if d.get("kind") == "Job":
                    pods.append(spec["template"]["spec"])
                elif d.get("kind") == "JobSet":
                    for rj in spec.get("replicatedJobs") or []:
                        pods.append(rj["template"]["spec"]["template"]["spec"])
                for pod in pods:
                    images += [c.get("image", "") for _, c in self.containers(pod)]
            self.check_images(name, images, text)
            if any(d.get("kind") == "JobSet" for d in docs):
                for d in docs:
                    if d.get("kind") == "JobSet":
                        self.check_jobset(name, d, versions)
                    else:
                        self.validate_schema(f"{name} {d.get('kind')}", d, versions)
            else:
                self.check_job_file(name, docs, versions)
            print(f"checked {name}: {', '.join(d['kind'] + '/' + d['metadata']['name'] for d in docs)}")
        # These refer to the other files, so they come last.
        for name, doc in policies:
            self.check_network_policy(name, doc)
        for path, doc in kustomizations:
            self.check_kustomization(path, doc, examples)
        return self.errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", required=True, help="the image reference images/build.sh builds")
    ap.add_argument("-k", "--kubernetes-version", action="append", dest="versions", required=True)
    ap.add_argument("--kubectl", help="kubectl to build kustomization.yaml with (else structure only)")
    ap.add_argument("paths", nargs="+", type=pathlib.Path)
    args = ap.parse_args()
    errors = Checker(args.image, args.kubectl).run(args.paths, args.versions)
    for e in errors:
        print(f"ERROR {e}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} manifest problem(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
