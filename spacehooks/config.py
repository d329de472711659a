"""Server settings: one YAML file, every key declared once here with its default and meaning.

The declaration drives loading, validation and the README table (`spacehooks config-doc`).
"""
from __future__ import annotations

import os
from collections import namedtuple
from pathlib import Path

from spacehooks import configchecks


DEFAULT_CONFIG = "/etc/spacehooks/config.yaml"
DEFAULT_HOME = "/var/lib/spacehooks"

# Hub flavors (SPACES.md); memory in MB. Admins may add or override flavors. cpu-basic, the
# default flavor, takes its size from run.cpus / run.memory_mb / run.disk_mb (Settings.flavors). disk_mb
# caps what a Space writes in its home (app folder included); it lives in memory, so a quarter of it.
HUB_FLAVORS = {
    "cpu-basic": {"cpus": 2, "memory_mb": 16384, "disk_mb": 4096, "gpus": 0},
    "cpu-upgrade": {"cpus": 8, "memory_mb": 32768, "disk_mb": 8192, "gpus": 0},
    "t4-small": {"cpus": 4, "memory_mb": 15360, "disk_mb": 3840, "gpus": 1, "gpu_kind": "nvidia.com/gpu"},
    "t4-medium": {"cpus": 8, "memory_mb": 30720, "disk_mb": 7680, "gpus": 1, "gpu_kind": "nvidia.com/gpu"},
    "l4x1": {"cpus": 8, "memory_mb": 30720, "disk_mb": 7680, "gpus": 1, "gpu_kind": "nvidia.com/gpu"},
    "l4x4": {"cpus": 48, "memory_mb": 190464, "disk_mb": 47616, "gpus": 4, "gpu_kind": "nvidia.com/gpu"},
    "a10g-small": {"cpus": 4, "memory_mb": 15360, "disk_mb": 3840, "gpus": 1, "gpu_kind": "nvidia.com/gpu"},
    "a10g-large": {"cpus": 12, "memory_mb": 47104, "disk_mb": 11776, "gpus": 1, "gpu_kind": "nvidia.com/gpu"},
    "a10g-largex2": {"cpus": 24, "memory_mb": 94208, "disk_mb": 23552, "gpus": 2, "gpu_kind": "nvidia.com/gpu"},
    "a10g-largex4": {"cpus": 48, "memory_mb": 188416, "disk_mb": 47104, "gpus": 4, "gpu_kind": "nvidia.com/gpu"},
    "a100-large": {"cpus": 12, "memory_mb": 145408, "disk_mb": 36352, "gpus": 1, "gpu_kind": "nvidia.com/gpu"},
}


# key: dotted path in the YAML file; default; kind: a type or a tuple of types; help. Not
# typing.NamedTuple: post-receive imports this module, and typing costs every push 2 ms.
Setting = namedtuple("Setting", "key default kind help")


SETTINGS = [
    Setting("repo_root", "/srv/git", str, "Folder holding the bare repositories; a Space's id `owner/name` is its path below it (`owner/name.git`)."),
    Setting("default_owner", "spaces", str, "Owner used for a repository directly under `repo_root`."),
    Setting("deploy_branch", "main", str, "Branch whose pushes are checked and deployed."),
    Setting("check_other_refs", False, bool, "Also check pushes to other branches and tags (never deployed)."),
    Setting("max_file_bytes", 10 * 1024 * 1024, int, "Files larger than this are not read by the checks (README, dependency files and secret scan); a larger README or dependency file is refused."),
    Setting("secret_scan.enabled", True, bool, "Refuse pushes that add hard-coded tokens or keys."),
    Setting("secret_scan.allow_paths", [], list, "Glob patterns of paths the secret scan skips (e.g. `tests/fixtures/*`)."),
    Setting("python_versions", {"3.11": "localhost/spacehooks/python:3.11"}, dict, "Python versions this server builds, each mapped to its base image (made by `spacehooks base-image build`, or a registry image such as `python:3.10-slim`)."),
    Setting("python_version_fallback", "nearest", str, "A README `python_version` this server lacks: `nearest` builds on the nearest version in `python_versions` (the newer of two equally near) and warns at push naming both; `refuse` refuses the push."),
    Setting("default_python_version", "3.11", str, "Python used when a README sets none (the Hub uses 3.10)."),
    Setting("lfs.layout", "auto", str, "Where each repository's Git LFS objects are: `plain` (git-lfs's own layout in the bare repository, `lfs.plain_path`), `gitea` (Gitea/Forgejo, `lfs.gitea_path`), `gitlab` (`lfs.gitlab_path`); `auto`: `gitea` for a repository with `hooks/pre-receive.d`, `gitlab` for one with `custom_hooks` or under `@hashed`, else `plain`."),
    Setting("lfs.plain_path", "{repo}/lfs/objects", str, "LFS store of the `plain` layout, objects at `<path>/aa/bb/<oid>` (git-lfs's own layout; a push to a `file://` remote writes there); `{repo}` is the bare repository's folder."),
    Setting("lfs.gitea_path", "/var/lib/gitea/data/lfs", str, "LFS store of the `gitea` layout (Gitea/Forgejo's `[lfs] PATH`), objects at `<path>/aa/bb/<oid[4:]>`; `{repo}` is the bare repository's folder."),
    Setting("lfs.gitlab_path", "/var/opt/gitlab/gitlab-rails/shared/lfs-objects", str, "LFS store of the `gitlab` layout (GitLab's `lfs_object_store` on disk; object storage is not read), objects at `<path>/aa/bb/<oid[4:]>`; `{repo}` is the bare repository's folder."),
    Setting("podman_url", "unix:///run/spacehooks/podman.sock", str, "Podman REST service the builder and runner talk to."),
    Setting("engine", "podman", str, "Where Spaces are built and run: `podman` (the service at podman_url) or `kubernetes` (a cluster)."),
    Setting("build.concurrency", 1, int, "Builds run at once (always one at a time per Space)."),
    Setting("build.push_log_seconds", 30, int, "How long a push streams its build log (`git push -o wait` streams to the end)."),
    Setting("build.timeout_seconds", 3600, int, "A build running longer is stopped and fails."),
    Setting("build.memory_mb", 4096, int, "Memory a build's RUN steps may use together (a step past it is killed and the build fails naming this limit; 0: no limit)."),
    Setting("build.cpus", 2, (int, float), "CPU cores each RUN step may use; builds also yield the CPU to the gateway and running Spaces (0: no limit)."),
    Setting("build.pids", 1024, int, "Processes a build's RUN steps may run at once, root's included (a pids cgroup; 0: no limit)."),
    Setting("build.disk_mb", 20480, int, "What one RUN step may write (its layer plus the Space's build caches), checked every second; a step past it is stopped and the build fails naming this limit (0: no limit)."),
    Setting("build.ca_bundle", "auto", str, "CA bundle every RUN step of a build trusts (SDK steps and a docker Space's own Dockerfile), as a build secret that never lands in an image: `auto` is the host's /etc/ssl/certs/ca-certificates.crt when it exists, `none` gives none, else a PEM file (a full bundle: it replaces the image's for pip, curl and OpenSSL)."),
    Setting("build.pip_index_url", "", str, "pip index used inside builds (empty: pip's default)."),
    Setting("build.npm_registry", "", str, "npm registry used by static Spaces' `app_build_command` (empty: npm's default, registry.npmjs.org); the build's CA (`build.ca_bundle`) is npm's `cafile`."),
    Setting("build.apt_mirror", "", str, "Debian mirror URL used inside builds (empty: the base image's)."),
    Setting("build.image_aliases", {}, dict, "Images a docker Space's `FROM` (or `COPY --from`) gets instead of the one it names, for a server that reaches no registry: `pattern: local image`, e.g. `\"python:3.*\": localhost/spacehooks/python-compat:3.11` (made by `spacehooks base-image build --compat 3.11`). Names are matched as Docker reads them (`python:3.10` is docker.io/library/python:3.10; a pattern without a tag matches every tag), the first match wins; names no pattern matches are pulled from their registry."),
    Setting("build.export_user", "nobody", str, "Unprivileged account that writes a commit's files for a build (the server, as root, hands it only the empty build folder); never root. Ignored when the server does not run as root."),
    Setting("base_image.cache_dir", "/var/cache/spacehooks/images", str, "Where `base-image build` keeps saved base images and downloaded .deb/wheel files; a matching saved image is loaded instead of rebuilt."),
    Setting("run.memory_mb", 16384, int, "Memory limit of the built-in `cpu-basic` flavor, the default one (the Hub's 16 GB); a `hardware: {cpu-basic: ...}` entry overrides it."),
    Setting("run.cpus", 2, (int, float), "CPU limit of the built-in `cpu-basic` flavor, the default one (the Hub's 2 cores); a `hardware: {cpu-basic: ...}` entry overrides it."),
    Setting("run.pids", 1024, int, "Most processes a Space may run."),
    Setting("run.disk_mb", 4096, int, "What a Space may write in /home/user (its app folder included) when its flavor sets no `disk_mb`; the rest of its file system is read-only. Home and /tmp are memory file systems (fresh at each start, like the Hub's ephemeral disk) and count toward the Space's memory."),
    Setting("run.tmp_mb", 1024, int, "What a Space may write in /tmp (per flavor: `tmp_mb`)."),
    Setting("run.log_bytes", 16 * 1024 * 1024, int, "Podman's own copy of a Space's output (its `k8s-file` log, which the worker copies into the run log) is cut by conmon at this size; large enough that an app printing fast at start loses nothing before the copying starts."),
    Setting("run.ca_bundle", "", str, "CA bundle running Spaces trust for their own HTTPS calls (behind a TLS-inspecting proxy): bind-mounted read-only at /etc/spacehooks/ca.crt, with SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT, CURL_CA_BUNDLE, NODE_EXTRA_CA_CERTS and GIT_SSL_CAINFO pointing at it; `auto` is the host's bundle; empty or `none`: none."),
    Setting("run.nofile", 4096, int, "Open-file limit in Spaces (must not exceed the host's `ulimit -Hn`)."),
    Setting("run.port_range", [20000, 29999], list, "Loopback ports handed to Space containers."),
    Setting("run.default_hardware", "cpu-basic", str, "Flavor of a new Space."),
    Setting("run.sleep_seconds", 172800, int, "Idle time before a Space sleeps (-1: never); per Space with `sleep-time set`."),
    Setting("run.grace_seconds", 10, (int, float), "After a new version answers, the old container keeps serving open requests this long before it is stopped."),
    Setting("run.crash_limit", 3, int, "A deployed app that exits (or is killed for memory) this many times within `run.crash_window_seconds` is not started again: its Space shows RUNTIME_ERROR with the reason and the app's last log lines. Before that each exit is followed by a restart after a pause of 1 s, doubling with each exit (at most 60 s)."),
    Setting("run.crash_window_seconds", 600, (int, float), "The time window in which `run.crash_limit` exits stop an app."),
    Setting("run.keep_builds", 3, int, "Images kept per Space for rollback; `gc` removes older ones."),
    Setting("run.gc_interval_seconds", 21600, (int, float), "How often `serve` and `worker` run `gc` between builds (0: only by hand)."),
    Setting("hardware", {}, dict, "Extra or overriding flavors: `name: {cpus, memory_mb, disk_mb, tmp_mb, gpus, gpu_kind, shared, accelerator}` (`gpu_kind` is a CDI kind such as `nvidia.com/gpu`; `shared: true` lets Spaces of that flavor share GPUs)."),
    Setting("storage.tiers", {"small": 20480, "medium": 153600, "large": 1048576}, dict, "Persistent storage tiers a Space can be given (`spacehooks storage set`), each a size in MB (the Hub's small 20 GB, medium 150 GB, large 1 TB). A Space's storage is an ext4 file system of that size (a sparse file under `SPACEHOOKS_HOME/storage`) mounted at /data; a write past it fails in the Space with \"No space left on device\"."),
    Setting("storage.uid_base", 1073741824, int, "First host uid of the id ranges given to Spaces with storage: each gets its own fixed range of 65536 ids from here (outside /etc/subuid's ranges and every account), so that blue and green containers of a Space map its uid 1000 to the same host id and share /data, while other Spaces keep ids of their own."),
    Setting("capacity.overcommit", {"memory": 1.0, "cpus": 4.0, "storage": 1.0}, dict, "How far the flavors of running Spaces together may exceed what the machine has: `memory` (of total RAM), `cpus` (of the cores) and `storage` (tier sizes, of the disk under `SPACEHOOKS_HOME` free plus what storage already uses). A Space that does not fit waits in stage WAITING_CAPACITY and starts when room frees."),
    Setting("capacity.memory_mb", 0, int, "Memory (MB) the Spaces may use together before overcommit; 0: the machine's total memory."),
    Setting("capacity.cpus", 0, (int, float), "CPU cores the Spaces may use together before overcommit; 0: the machine's cores."),
    Setting("gpu.cdi_dirs", ["/etc/cdi", "/var/run/cdi"], list, "Folders holding CDI specs, later ones overriding earlier ones; must be the folders Podman reads (its defaults are these two)."),
    Setting("network.egress_deny", ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "fc00::/7", "fe80::/10"], list, "Address ranges (CIDR) that Spaces and their build steps may not reach: private networks, link-local (cloud metadata at 169.254.169.254) and carrier-grade NAT. DNS (port 53) to the host's own resolvers stays open. Host addresses and other Spaces are fenced off whatever this holds."),
    Setting("network.egress_allow", [], list, "Addresses or ranges (CIDR) inside `network.egress_deny` that Spaces may reach after all, e.g. `[10.0.5.20/32]` for an internal package mirror."),
    Setting("kubernetes.kubeconfig", "", str, "With `engine: kubernetes`: the kubeconfig file to use (a token or client certificate; credential plugins are not run); empty: $KUBECONFIG, else ~/.kube/config, else the Pod's own service account (in the cluster)."),
    Setting("kubernetes.context", "", str, "Context of the kubeconfig to use; empty: its current-context."),
    Setting("kubernetes.namespace", "spacehooks-spaces", str, "Namespace every Space's objects (Deployment, Service, Secret, NetworkPolicy) live in."),
    Setting("kubernetes.registry", "", str, "Registry (and path) the cluster pulls Space images from, like `registry.example.com/spaces`: each image is built by the Podman service as usual and pushed there. Required with `engine: kubernetes`."),
    Setting("kubernetes.registry_tls_verify", True, bool, "Verify the registry's TLS certificate when pushing (false only for a registry on localhost or a trusted network)."),
    Setting("kubernetes.pull_secret", "", str, "Name of a Secret (type kubernetes.io/dockerconfigjson) in the namespace that lets the cluster pull from the registry; empty: none."),
    Setting("kubernetes.gpu_resource", "", str, "Extended resource GPUs are asked for as; empty: the flavor's `gpu_kind` (`nvidia.com/gpu`, the NVIDIA device plugin's name)."),
    Setting("kubernetes.node_selectors", {"nvidia.com/gpu": {"nvidia.com/gpu.present": "true"}}, dict, "Node labels a GPU Space's Pod must find on its node, per GPU kind (the NVIDIA GPU operator labels its nodes `nvidia.com/gpu.present: true`); GPU Spaces also tolerate the kind's NoSchedule taint."),
    Setting("kubernetes.address", "{service}.{namespace}.svc.cluster.local:80", str, "How the gateway reaches a Space: `{service}` (the Space's Service), `{namespace}` and `{node_port}` are filled in. The default is the Service's cluster DNS name (gateway in the cluster); from outside, a node's address with `{node_port}`, with `kubernetes.service_type: NodePort`."),
    Setting("kubernetes.addresses", {}, dict, "Fixed addresses per Space, `owner/name: host:port`, before `kubernetes.address`."),
    Setting("kubernetes.service_type", "ClusterIP", str, "Type of each Space's Service: `ClusterIP` (gateway in the cluster) or `NodePort` (gateway outside it)."),
    Setting("kubernetes.gateway_namespace", "spacehooks", str, "Namespace of the gateway's Pods (label `app.kubernetes.io/name: spacehooks-gateway`): the only Pods a Space accepts connections from (NetworkPolicy)."),
    Setting("kubernetes.gateway_cidrs", [], list, "Address ranges a gateway outside the cluster connects from (NetworkPolicy ipBlocks), e.g. `[192.0.2.10/32]`."),
    Setting("kubernetes.user_namespaces", False, bool, "Run Space Pods in a user namespace of their own (`hostUsers: false`; Kubernetes 1.30+ with user namespaces on)."),
    Setting("kubernetes.knative", False, bool, "Run each Space as a Knative Service (scale to zero, a request wakes it) instead of a Deployment and Service; needs Knative Serving with the podspec-securitycontext, podspec-emptydir and podspec-init-containers features on."),
    Setting("gateway.listen", "127.0.0.1:8080", str, "Address the gateway listens on."),
    Setting("gateway.domain", "localhost", str, "Spaces are served at `<owner>-<name>.<domain>`; the gallery at `<domain>`."),
    Setting("gateway.public_url", "http://{host}:8080", str, "How links to Spaces are written; `{host}` is the Space's host name."),
    Setting("gateway.relay", True, bool, "Serve plain requests to running Spaces through the fast relay (httptools) in front of the aiohttp app; false: the app alone takes every request (slower, for comparison or trouble-shooting)."),
    Setting("gateway.body_timeout_seconds", 300, (int, float), "A request body must arrive whole within this many seconds after its head (time spent waiting for the app to read it does not count); a client that is slower gets `408` and its connection closed."),
    Setting("gateway.idle_seconds", 75, (int, float), "A client's kept-alive connection with no request in progress is closed after this many idle seconds."),
    Setting("gateway.stream_idle_seconds", 300, (int, float), "A WebSocket or a streamed answer (server-sent events, any answer still arriving) through the relay is closed after this many seconds without a byte in either direction; one that sends anything stays open however long it lasts. 0: never closed for idleness (an idle WebSocket then holds its place under `gateway.max_connections` until either side closes it)."),
    Setting("gateway.max_connections", 0, int, "Most client connections open at once. When full, a new connection first closes the longest-idle kept-alive one; when none is idle it gets `503` and is closed. 0: a quarter of the open-file limit minus 128, at most 16384 (`serve` and `gateway` raise their own soft open-file limit to the hard limit at start)."),
    Setting("metrics.listen", "", str, "Address (HOST:PORT) of the Prometheus metrics endpoint, `GET /metrics`, served by `serve` and `gateway` beside the gateway; empty: off. It is for admins only: keep it on loopback or a private address (it cannot be the gateway's own address), e.g. `127.0.0.1:9464`."),
    Setting("api.hardware_flavors", ["cpu-basic"], list, "Flavors Space owners may pick themselves through the Hub-compatible API (`request_space_hardware`, `create_repo(space_hardware=)`); admins may pick any flavor in `hardware`."),
    Setting("api.upload_max_bytes", 100 * 1024 * 1024, int, "Largest body of one upload commit (`upload_file`, `upload_folder`, `hf upload`; base64 makes it a third larger than the files); a larger one gets `413`."),
    Setting("api.upload_max_files", 1000, int, "Most files (added or deleted) in one upload commit; more gets `400`."),
    Setting("git_http.anonymous_clone", True, bool, "Whether anyone may clone a public Space over HTTPS without a token (`/spaces/OWNER/NAME`); a private Space always needs a member's token, and a push always needs a write token."),
    Setting("git_http.lfs_max_bytes", 5 * 1024 ** 3, int, "Largest Git LFS object the gateway's LFS endpoint takes (`<repo>.git/info/lfs`); a larger one is refused in the batch answer."),
    Setting("ssh.auth_log", "", str, "sshd's own log file (`sshd -E FILE`, LogLevel INFO or VERBOSE), which only sshd may write: SSH commands for authors (`ssh git@host restart OWNER/NAME`) find the key that logged in there. Empty: SSH commands are off (git push and clone work either way). Never a syslog file other programs can write to."),
    Setting("api.auth_failures_per_minute", 10, int, "Failed sign-ins and requests with an unknown, revoked or expired token allowed per client address per minute; past it that address gets `429` with `Retry-After` until the minute is over."),
    Setting("gateway.sleep_check_seconds", 30, (int, float), "How often the gateway looks for Spaces idle past their sleep time."),
    Setting("logs.max_bytes", 5 * 1024 * 1024, int, "A Space's run log is rotated at this size; a longer build log keeps its first and last half."),
    Setting("logs.keep", 3, int, "Rotated copies of a Space's run log kept (`<id>.log.1` is the newest)."),
    Setting("home_group", "spacehooks", str, "Unix group of the git account(s): `SPACEHOOKS_HOME` is made group-owned (setgid, writable by its owner only), so post-receive can drop push records into `incoming/` and read build logs and the server's answers; the state database and secrets stay root-only. Empty: leave the group alone."),
]

_BY_KEY = {s.key: s for s in SETTINGS}


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and full not in _BY_KEY:
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


class Settings:
    """Read-only view: `settings["build.concurrency"]`, plus the two paths (and the file's text)."""

    def __init__(self, values: dict, home: Path, path: Path | None, text: str | None = None):
        self._values = values
        self.home = home
        self.path = path
        self.text = text

    def __getitem__(self, key: str):
        return self._values[key]

    @property
    def flavors(self) -> dict:
        import copy  # here and in load(): post-receive copies nothing
        merged = copy.deepcopy(HUB_FLAVORS)
        merged["cpu-basic"].update(cpus=self._values["run.cpus"], memory_mb=self._values["run.memory_mb"],
                                   disk_mb=self._values["run.disk_mb"])
        for name, spec in self._values["hardware"].items():
            merged[name] = {**merged.get(name, {"gpus": 0}), **spec}
        return merged

    @property
    def db_path(self) -> Path:
        return self.home / "state.db"


def _fail(message: str, hint: str | None = None):
    from spacehooks.errors import SpaceError  # here, not at the top: the push path skips click's import
    raise SpaceError(message, hint=hint)


def paths(path: str | os.PathLike | None = None, home: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The settings file and the state folder: as given, else from the environment, else the defaults."""
    return (Path(path or os.environ.get("SPACEHOOKS_CONFIG", DEFAULT_CONFIG)),
            Path(home or os.environ.get("SPACEHOOKS_HOME", DEFAULT_HOME)))


def load(path: str | os.PathLike | None = None, home: str | os.PathLike | None = None) -> Settings:
    path, home = paths(path, home)
    raw: dict = {}
    text = None
    if path.exists():
        import yaml  # here, not at the top: post-receive takes the server's parse (spool.shared_settings)
        try:
            text = path.read_text()
            raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            _fail(f"{path}: not valid YAML: {exc}", hint="fix the file or remove it to use the defaults")
        if not isinstance(raw, dict):
            _fail(f"{path}: must be a mapping of settings")
    import copy
    values = {s.key: copy.deepcopy(s.default) for s in SETTINGS}
    for key, value in _flatten(raw).items():
        setting = _BY_KEY.get(key)
        if setting is None:
            _fail(f"{path}: unknown setting {key!r}", hint="see `spacehooks config-doc` for every key")
        if not isinstance(value, setting.kind) or (setting.kind is int and isinstance(value, bool)):
            _fail(f"{path}: {key!r} must be {configchecks.kind_name(setting.kind)}, found {value!r}")
        values[key] = value
    for key, value in values.items():
        problem = configchecks.check_value(key, value, values, _CHECKS)
        if problem:
            _fail(f"{path}: {key!r} {problem[0]}", hint=problem[1])
    return Settings(values, home, path if path.exists() else None, text)


def _default_hardware(value: str, values: dict) -> tuple[str, str] | None:
    known = set(HUB_FLAVORS) | set(values["hardware"])
    if value not in known:
        return f"names no flavor: {value!r}", f"pick one of {', '.join(sorted(known))} or define it under `hardware:`"
    return None


# checks that need this module's declarations; the others are configchecks.py's
_CHECKS = {"run.default_hardware": _default_hardware}


def markdown_table() -> str:
    import yaml
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = yaml.safe_dump(s.default, default_flow_style=True, width=10 ** 6).strip().removesuffix("...").strip()
        rows.append(f"| `{s.key}` | `{default}` | {s.help} |")
    return "\n".join(rows)
