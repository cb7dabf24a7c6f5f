"""Check examples/kubernetes/ against what rsgid serves (run by e2e::artifacts).

Every probe is an HTTP GET of /livez, /readyz or /readyz/<vassal> on the container port
that rsgid.toml's metrics_listen names; a /readyz/<vassal> names a vassal of the pod's
ConfigMap; the grace period covers stop_timeout + 1 s + the preStop sleep; the
Prometheus annotations name the metrics port; the Dockerfile installs the rsgid.toml it
points rsgid at, and its USER is a uid (not a name, not 0) when a pod says runAsNonRoot
without a runAsUser. Prints one line per problem and exits 1 if there is any.
"""
import pathlib
import re
import sys
import tomllib

import yaml

root = pathlib.Path(sys.argv[1])
kdir = root / "examples" / "kubernetes"
problems = []
run_as_non_root = []  # the Deployments whose pods say runAsNonRoot, no runAsUser
toml = tomllib.loads((kdir / "rsgid.toml").read_text())
metrics_port = int(toml["metrics_listen"].rsplit(":", 1)[1])
stop_timeout = float(toml["stop_timeout"])

for manifest in sorted(kdir.glob("*.yaml")):
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    if "scrape_configs" in docs[0]:
        continue
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        where = f"{manifest.name}: {d['metadata']['name']}"
        pod = d["spec"]["template"]
        ann = pod["metadata"].get("annotations", {})
        if ann.get("prometheus.io/port") != str(metrics_port):
            problems.append(f"{where}: prometheus.io/port is not {metrics_port}")
        spec = pod["spec"]
        vassals = set()
        for vol in spec.get("volumes", []):
            cm = vol.get("configMap", {}).get("name")
            if cm:
                if cm not in configmaps:
                    problems.append(f"{where}: no ConfigMap {cm} in the file")
                else:
                    for key in configmaps[cm]["data"]:
                        if not key.endswith(".ini"):
                            problems.append(f"{where}: key {key} is not a vassal file")
                        vassals.add(key[: -len(".ini")])
        for c in spec["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = c.get(kind)
                if not probe:
                    continue
                get = probe.get("httpGet", {})
                port = get.get("port")
                port = ports.get(port, port)
                if port != metrics_port:
                    problems.append(f"{where}: {kind} on port {port}, not {metrics_port}")
                path = get.get("path", "")
                m = re.fullmatch(r"/readyz/(.+)", path)
                if m:
                    if m.group(1) not in vassals:
                        problems.append(f"{where}: {kind} waits for {m.group(1)}, no such vassal")
                elif path not in ("/livez", "/readyz"):
                    problems.append(f"{where}: {kind} asks {path}, which rsgid does not serve")
            sc = {**spec.get("securityContext", {}), **c.get("securityContext", {})}
            if sc.get("runAsNonRoot") and "runAsUser" not in sc:
                run_as_non_root.append(where)
            if "readinessProbe" not in c or "livenessProbe" not in c:
                problems.append(f"{where}: a readiness and a liveness probe are needed")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            for needed in (toml["vassals"], toml["run_dir"]):
                if needed not in mounts:
                    problems.append(f"{where}: {needed} is not a volume")
            sleep = 0
            pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
            if pre[:1] == ["sleep"]:
                sleep = float(pre[1])
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace < stop_timeout + 1 + sleep:
                problems.append(
                    f"{where}: terminationGracePeriodSeconds {grace} < stop_timeout "
                    f"{stop_timeout} + 1 + preStop {sleep}"
                )

dockerfile = (root / "Dockerfile").read_text()
if "examples/kubernetes/rsgid.toml /etc/rsgi/rsgid.toml" not in dockerfile:
    problems.append("Dockerfile: does not install examples/kubernetes/rsgid.toml")
if '"--config", "/etc/rsgi/rsgid.toml"' not in dockerfile:
    problems.append("Dockerfile: ENTRYPOINT does not point rsgid at /etc/rsgi/rsgid.toml")
if f"EXPOSE {metrics_port}" not in dockerfile:
    problems.append(f"Dockerfile: does not EXPOSE {metrics_port}")
# runAsNonRoot without runAsUser: the kubelet refuses an image whose USER is a name
# ("cannot verify user is non-root"); it must be a number other than 0.
users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
user = users[-1] if users else "0"
if run_as_non_root and not re.fullmatch(r"[0-9]+(:[0-9]+)?", user):
    problems.append(
        f"Dockerfile: USER {user} is not numeric; runAsNonRoot in {', '.join(run_as_non_root)} "
        "cannot verify it"
    )
elif run_as_non_root and user.split(":")[0] == "0":
    problems.append("Dockerfile: USER is root, but the manifests say runAsNonRoot")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
