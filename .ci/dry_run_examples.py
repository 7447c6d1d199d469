#!/usr/bin/env python3
"""Run every peergate container of every example through `peergate --dry-run`,
once for every pod the manifest creates (run through .ci/validate-manifests.sh).

Schema validation says a manifest is well formed; only peergate's own
configuration logic says whether its gates start. So each gate runs as it
would in each of its pods, with what the kubelet gives that pod:

- the hostname: `<job>-<index>` for a Job's pods, and
  `<jobset>-<replicatedJob>-<jobIndex>-<podIndex>` for a JobSet's, passed as
  PEERGATE_HOSTNAME (the kernel's hostname is this machine's);
- a kubelet-style /etc/hosts (`IP<TAB><host>.<subdomain>.<ns>.svc.<zone><TAB><host>`,
  the subdomain being the pod's, or for a JobSet spec.network.subdomain,
  default the JobSet's name) and a ClusterFirst resolv.conf, written to
  temporary files and passed as PEERGATE_HOSTS_FILE and PEERGATE_RESOLV_CONF;
- JOB_COMPLETION_INDEX and the container's `env`: literal values, and for
  `valueFrom` a plausible value (a fixed UUID per Job for its controller-uid
  label, the pod's index for its completion-index annotation, ...); `$(VAR)`
  in values, command and args expanded as the kubelet expands them.

A container counts when it runs the peergate image without a command, or
when its command is peergate (a workload image with peergate in it): init
containers, native sidecars and main containers alike. `peergate await`, `run`, `barrier`, `put` and `get`
containers run the subcommand with `--dry-run`, which checks their
arguments.

Every run must exit 0 within a few seconds; one line per pod and container
checked; a failure names the file, the pod, its index and the container,
with peergate's own error line. Compose files are left to
.ci/compose-smoke.sh, which runs their gates for real; a kustomization only
points at the other files.
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import uuid

import yaml

ZONE = "cluster.local"
NAMESERVER = "10.96.0.10"
# A dry run resolves nothing and waits for nothing: it finishes in
# milliseconds, so anything longer is a run that waits.
TIMEOUT_SECONDS = 10
# Variables peergate reads that this script sets for every run, unless the
# container sets them itself.
OWN_VARS = ("PEERGATE_HOSTNAME", "PEERGATE_HOSTS_FILE", "PEERGATE_RESOLV_CONF")


class NotModelled(Exception):
    """Something in a manifest this script cannot give a plausible value for."""


class Pod:
    """One pod a manifest creates, as its kubelet sees it."""

    def __init__(self, where, job, index, hostname, subdomain, namespace, spec, meta, serial, extra=None):
        self.where = where  # e.g. "JobSet/train replicatedJob workers"
        self.job = job  # the Job that owns the pod
        self.index = index
        self.hostname = hostname
        self.subdomain = subdomain
        self.namespace = namespace
        self.spec = spec
        self.meta = meta  # the pod template's metadata
        self.ip = f"10.244.{serial // 250}.{serial % 250 + 2}"
        # Labels and annotations the controllers add, by fieldRef key.
        uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"peergate-dry-run/{namespace}/{job}"))
        self.controller = {
            "batch.kubernetes.io/controller-uid": uid,
            "controller-uid": uid,
            "batch.kubernetes.io/job-name": job,
            "job-name": job,
            "batch.kubernetes.io/job-completion-index": str(index),
        }
        self.controller.update(extra or {})

    def hosts(self):
        """The kubelet's hosts file for this pod."""
        own = f"{self.ip}\t{self.hostname}"
        if self.subdomain:
            own = f"{self.ip}\t{self.hostname}.{self.subdomain}.{self.namespace}.svc.{ZONE}\t{self.hostname}"
        return (
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
            "fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
            f"{own}\n"
        )

    def resolv_conf(self):
        """resolv.conf for dnsPolicy ClusterFirst."""
        policy = self.spec.get("dnsPolicy", "ClusterFirst")
        if policy != "ClusterFirst" or self.spec.get("dnsConfig"):
            raise NotModelled(f"dnsPolicy {policy} / dnsConfig (only ClusterFirst is modelled)")
        return (
            f"search {self.namespace}.svc.{ZONE} svc.{ZONE} {ZONE}\n"
            f"nameserver {NAMESERVER}\noptions ndots:5\n"
        )

    def field(self, path):
        """The value of a downward-API fieldRef in this pod."""
        m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if m:
            kind, key = m.groups()
            own = (self.meta.get(kind) or {}).get(key)
            if own is not None:
                return str(own)
            if key in self.controller:
                return self.controller[key]
            raise NotModelled(f"fieldRef {path}: no such {kind[:-1]} is known for this pod")
        simple = {
            "metadata.name": f"{self.hostname}-dryrn",
            "metadata.namespace": self.namespace,
            "metadata.uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"peergate-dry-run/pod/{self.hostname}")),
            "spec.nodeName": "node-0",
            "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
            "status.podIP": self.ip,
            "status.podIPs": self.ip,
            "status.hostIP": "192.168.0.10",
            "status.hostIPs": "192.168.0.10",
        }
        if path in simple:
            return simple[path]
        raise NotModelled(f"fieldRef {path}: no plausible value known (add one to {pathlib.Path(__file__).name})")


def expand(text, env):
    """The kubelet's $(VAR) expansion: a defined variable is replaced, an
    undefined reference stays as written, $$ is a literal $."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", sub, str(text))


def container_env(pod, container):
    """JOB_COMPLETION_INDEX, then the container's env in order (a value may
    refer to the ones before it)."""
    if container.get("envFrom"):
        raise NotModelled("envFrom")
    env = {"JOB_COMPLETION_INDEX": str(pod.index)}
    for e in container.get("env") or []:
        name = e["name"]
        if "valueFrom" not in e:
            env[name] = expand(e.get("value", ""), env)
            continue
        source = e["valueFrom"]
        if "fieldRef" in source:
            env[name] = pod.field(source["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
            env[name] = f"dry-run-{ref.get('name')}-{ref.get('key')}"
        elif "resourceFieldRef" in source:
            env[name] = "1"
        else:
            raise NotModelled(f"env {name}: valueFrom {sorted(source)}")
    return env


def peergate_argv(container, image):
    """peergate's arguments in this container, or None when it does not run
    peergate."""
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    if command and command[0].rsplit("/", 1)[-1] == "peergate":
        return command[1:] + args
    if container.get("image") == image:
        if command:
            raise NotModelled(f"the peergate image with command {command[0]!r}")
        return args
    return None


def pods_of(doc, serial):
    """Every pod a Job or JobSet document creates."""
    kind = doc.get("kind")
    meta = doc.get("metadata") or {}
    namespace = meta.get("namespace", "default")
    spec = doc.get("spec") or {}
    if kind == "Job":
        yield from job_pods(f"Job/{meta['name']}", meta["name"], spec, namespace, None, serial)
    elif kind == "JobSet":
        js = meta["name"]
        network = spec.get("network") or {}
        subdomain = network.get("subdomain", js) if network.get("enableDNSHostnames", True) else None
        for rj in spec.get("replicatedJobs") or []:
            for j in range(rj.get("replicas", 1)):
                job = f"{js}-{rj['name']}-{j}"
                extra = {
                    "jobset.sigs.k8s.io/jobset-name": js,
                    "jobset.sigs.k8s.io/replicatedjob-name": rj["name"],
                    "jobset.sigs.k8s.io/job-index": str(j),
                    "jobset.sigs.k8s.io/restart-attempt": "0",
                }
                yield from job_pods(
                    f"JobSet/{js} replicatedJob {rj['name']}", job, (rj.get("template") or {}).get("spec") or {},
                    namespace, (subdomain, extra), serial,
                )


def job_pods(where, job, spec, namespace, jobset, serial):
    if spec.get("completionMode") != "Indexed":
        raise NotModelled(f"{where}: not an Indexed Job, so its pods have no index or stable hostname")
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    if pod_spec.get("hostNetwork"):
        raise NotModelled(f"{where}: hostNetwork (the node's own hosts file)")
    subdomain, extra = jobset if jobset else (pod_spec.get("subdomain"), None)
    for index in range(spec.get("completions", 1)):
        serial[0] += 1
        yield Pod(where, job, index, f"{job}-{index}", subdomain, namespace, pod_spec,
                  template.get("metadata") or {}, serial[0], extra)


def summary(out):
    """One short line from a dry run's output (text, or JSON when the
    container asks for JSON logs): the mode, the number of peers and the
    first and last of them."""
    text = out.strip()
    try:
        v = json.loads(text)
    except ValueError:
        v = None
    if isinstance(v, dict) and "await" in v:
        return f"await on 127.0.0.1:{v['await']['port']}"
    if isinstance(v, dict) and "run" in v:
        return f"run on 127.0.0.1:{v['run']['port']}"
    if isinstance(v, dict) and "exchange" in v:
        e = v["exchange"]
        return f"{e['command']} {e['name']} on 127.0.0.1:{e['port']}"
    if isinstance(v, dict):
        names = [p.get("name") or p.get("addr") for p in v["peers"]]
        mode = v["mode"] + (" --serve" if (v.get("barrier") or {}).get("serve") else "")
        head = f"{len(names)}"
    else:
        lines = {line[:9].strip(): line[10:] for line in text.splitlines()[1:] if len(line) > 10}
        for sub in ("barrier", "put", "get"):
            if sub in lines and "ask" in lines:
                return f"peergate {sub}: " + lines[sub]
        if "run" in lines:
            return "peergate run " + lines["run"]
        if "wait" in lines:
            return "peergate await " + lines["wait"]
        mode = "ping"
        if "barrier" in lines:
            mode = "barrier" + ("" if lines.get("serve", "no").startswith("no") else " --serve")
        head, _, rest = lines.get("peers", "?: ?").partition(": ")
        names = rest.split(", ")
    shown = names[0] + (f" ... {names[-1]}" if len(names) > 1 else "")
    return f"{mode}, peers {head}: {shown}"


def error_line(err):
    """peergate's error, without the log line's timestamp and level."""
    lines = [re.sub(r"^\S+Z\s+(ERROR|WARN)\s+", "", line) for line in err.strip().splitlines()]
    return " | ".join(lines) or "(nothing on stderr)"


def dry_run(peergate, pod, container, argv, tmp):
    """Runs one gate's dry run as it would run in `pod`. Returns a line for
    the log and whether it passed."""
    env = container_env(pod, container)
    hosts = tmp / f"{pod.hostname}.hosts"
    resolv = tmp / f"{pod.hostname}.resolv.conf"
    hosts.write_text(pod.hosts())
    resolv.write_text(pod.resolv_conf())
    argv = [expand(a, env) for a in argv]
    for var, value in zip(OWN_VARS, (pod.hostname, str(hosts), str(resolv))):
        env.setdefault(var, value)
    if argv[:1] == ["await"]:
        cmd = [peergate, "await", "--dry-run", *argv[1:]]
    elif argv[:1] == ["run"]:
        cmd = [peergate, "run", "--dry-run", *argv[1:]]
    elif argv[:1] in (["barrier"], ["put"], ["get"]):
        cmd = [peergate, argv[0], "--dry-run", *argv[1:]]
    else:
        cmd = [peergate, "--dry-run", *argv]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return f"still running after {TIMEOUT_SECONDS}s: a dry run never waits", False
    if out.returncode != 0:
        return f"exit {out.returncode}: {error_line(out.stderr)}", False
    return summary(out.stdout), True


def check(peergate, image, paths):
    """Dry-runs every gate of every pod of `paths`; returns the failures."""
    failures, runs, skipped = [], 0, []
    started = time.monotonic()
    serial = [0]

    def fail(line):
        failures.append(line)
        print(f"FAIL {line}")

    with tempfile.TemporaryDirectory(prefix="peergate-dry-run-") as tmp:
        tmp = pathlib.Path(tmp)
        for path in paths:
            name = path.name
            if name.startswith("compose"):
                print(f"skip {name}: its gates run for real in .ci/compose-smoke.sh")
                skipped.append(name)
                continue
            if name == "kustomization.yaml":
                print(f"skip {name}: no pods of its own (its resources are checked as files)")
                skipped.append(name)
                continue
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
            try:
                pods = [p for d in docs for p in pods_of(d, serial)]
            except NotModelled as e:
                fail(f"{name}: cannot model its pods: {e}")
                continue
            gates = 0
            for pod in pods:
                for key in ("initContainers", "containers"):
                    for c in pod.spec.get(key) or []:
                        where = f"{name} {pod.where} pod {pod.hostname} (index {pod.index}) container {c['name']}"
                        try:
                            argv = peergate_argv(c, image)
                            if argv is None:
                                continue
                            gates += 1
                            line, ok = dry_run(peergate, pod, c, argv, tmp)
                        except NotModelled as e:
                            fail(f"{where}: cannot model: {e}")
                            continue
                        if ok:
                            print(f"ok   {where}: {line}")
                        else:
                            fail(f"{where}: {line}")
            runs += gates
            if pods and gates == 0:
                fail(f"{name}: no container runs peergate")
    elapsed = time.monotonic() - started
    print(
        f"dry-run: {runs} gate run(s) in {elapsed:.1f}s, {len(failures)} failure(s)"
        + (f"; skipped {', '.join(skipped)}" if skipped else "")
    )
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peergate", required=True, help="the peergate binary to run")
    ap.add_argument("--image", required=True, help="the image reference images/build.sh builds")
    ap.add_argument("paths", nargs="+", type=pathlib.Path)
    args = ap.parse_args()
    if not os.access(args.peergate, os.X_OK):
        print(f"dry-run: {args.peergate} is not an executable", file=sys.stderr)
        return 1
    failures = check(args.peergate, args.image, args.paths)
    if failures:
        print(f"{len(failures)} gate(s) would not start:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
