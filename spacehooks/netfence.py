"""Network fence: each Space gets a bridge network of its own, and host firewall rules
(one nftables table per server) keep what runs on those bridges away from the host, from
other Spaces and from the denied address ranges.

Podman's default network lets every container reach every other one and each host listener
through the bridge's gateway address, and remote builds run their RUN steps in the host's
own network. Here:
- a Space's containers and its build steps join the network `spacehooks-sh<tag><hash>`
  whose bridge is `sh<tag><hash>` (<tag>: this server's home, so that two servers on one
  host keep to their own rules);
- input hook: nothing arriving from those bridges reaches a host address (the gateway's
  published-port path is the host connecting out, its replies are established traffic),
  except DNS to the resolvers the host itself uses;
- forward hook: nothing enters a Space's bridge unless it answers the Space's own
  connection (so no Space, and no other container, opens one to a Space); what leaves a
  Space for an address in `network.egress_deny` is dropped unless `network.egress_allow`
  holds it. Everything else (the package index, the internet) passes.
The table is replaced whole in one nft transaction: applying it again is harmless.
"""
from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

from spacehooks import engine, proc
from spacehooks.errors import SpaceError

LABEL_HOME = "spacehooks.home"
LABEL_SPACE = "spacehooks.space"
RESOLV_FILES = ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")
SUBID_FILES = ("/etc/subuid", "/etc/subgid")


def _tag(settings) -> str:
    return hashlib.sha256(str(Path(settings.home).resolve()).encode()).hexdigest()[:4]


def prefix(settings) -> str:
    """Bridge names of this server's Spaces start with this (an interface name has 15 bytes)."""
    return f"sh{_tag(settings)}"


def table(settings) -> str:
    return f"spacehooks_{_tag(settings)}"


def interface(settings, space_id: str) -> str:
    return prefix(settings) + hashlib.sha256(space_id.encode()).hexdigest()[:9]


def network_name(settings, space_id: str) -> str:
    return "spacehooks-" + interface(settings, space_id)


def prepare(settings, space_id: str) -> str:
    """Fence on, and the Space's network made: what a container or build of it joins."""
    apply(settings)
    name = network_name(settings, space_id)
    engine.get(settings).ensure_network(name, interface(settings, space_id),
                                        {LABEL_SPACE: space_id, LABEL_HOME: str(settings.home)})
    return name


def remove_space(settings, space_id: str) -> None:
    engine.get(settings).remove_network(network_name(settings, space_id))


def remove_all(settings) -> None:
    """This server's networks and its table (uninstalling, or a test cleaning up)."""
    eng = engine.get(settings)
    for network in eng.networks(f"{LABEL_HOME}={settings.home}"):
        eng.remove_network(network.name)
    proc.run(["nft", "delete", "table", "inet", table(settings)], check=False)


def _cidrs(settings, key: str) -> list:
    out = []
    for value in settings[key]:
        try:
            out.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError:
            raise SpaceError(f"{key}: {value!r} is not an address or CIDR range",
                             hint="write ranges like 10.0.0.0/8 or fd00::/8") from None
    return out


def resolvers() -> list:
    """The host's DNS servers (not loopback ones: Podman does not hand those to containers)."""
    found = []
    for path in RESOLV_FILES:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                try:
                    address = ipaddress.ip_address(words[1].split("%")[0])
                except ValueError:
                    continue
                if not address.is_loopback and address not in found:
                    found.append(address)
    return found


def _set(name: str, version: int, items: list) -> str:
    kind = "ipv4_addr" if version == 4 else "ipv6_addr"
    chosen = [i for i in items if i.version == version]
    nets = ipaddress.collapse_addresses(ipaddress.ip_network(i) for i in chosen)
    elements = ", ".join(str(n) for n in nets)
    return (f"  set {name}{version} {{ type {kind}; flags interval;"
            + (f" elements = {{ {elements} }};" if elements else "") + " }\n")


def ruleset(settings) -> str:
    """The nft script that (re)makes this server's table."""
    deny, allow, dns = _cidrs(settings, "network.egress_deny"), _cidrs(settings, "network.egress_allow"), resolvers()
    name, bridges = table(settings), f'"{prefix(settings)}*"'
    sets = "".join(_set(n, v, items) for n, items in (("deny", deny), ("allow", allow), ("dns", dns)) for v in (4, 6))
    dns_rules = "".join(f"    iifname {bridges} {family} daddr @dns{v} meta l4proto {{ tcp, udp }} th dport 53 accept\n"
                        for v, family in ((4, "ip"), (6, "ip6")))
    return (
        f"table inet {name}\n"
        f"delete table inet {name}\n"
        f"table inet {name} {{\n{sets}"
        "  chain input {\n    type filter hook input priority filter; policy accept;\n"
        f"    iifname {bridges} ct state established,related accept\n"
        f"{dns_rules}"
        f"    iifname {bridges} counter drop\n  }}\n"
        "  chain forward {\n    type filter hook forward priority filter; policy accept;\n"
        f"    oifname {bridges} ct state established,related accept\n"
        f"    oifname {bridges} counter drop\n"
        f"    iifname {bridges} ct state established,related accept\n"
        f"{dns_rules}"
        f"    iifname {bridges} ip daddr @allow4 accept\n"
        f"    iifname {bridges} ip6 daddr @allow6 accept\n"
        f"    iifname {bridges} ip daddr @deny4 counter drop\n"
        f"    iifname {bridges} ip6 daddr @deny6 counter drop\n  }}\n"
        "}\n"
    )


def problem(settings) -> str | None:
    """What keeps the fence or the Spaces' user namespaces from working here (for doctor)."""
    for path in SUBID_FILES:
        try:
            ranges = [line for line in Path(path).read_text().splitlines() if line.startswith("containers:")]
        except OSError:
            ranges = []
        if not ranges:
            return f"{path} has no `containers` range: Space containers (userns=auto) cannot start"
    try:
        proc.run(["nft", "-c", "-f", "-"], input=ruleset(settings).encode(), timeout=30)
    except SpaceError as exc:
        return f"the network fence cannot be loaded: {exc.message}"
    return None


def ensure(settings) -> None:
    """Apply the table when it is missing (a reboot, or a firewall reload flushed it)."""
    if proc.run(["nft", "list", "table", "inet", table(settings)], check=False, timeout=30).returncode != 0:
        apply(settings)


def apply(settings) -> None:
    """Load this server's table (atomically replacing an older one)."""
    script = ruleset(settings)
    try:
        proc.run(["nft", "-f", "-"], input=script.encode(), timeout=30)
    except SpaceError as exc:
        raise SpaceError(f"the network fence could not be applied: {exc.format_message()}",
                         hint="spacehooks runs Spaces only behind it: run as root with nftables installed") from exc
