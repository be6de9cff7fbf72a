#!/usr/bin/env python3
"""A small, honest OpenStack: Keystone v3 (password and application-credential tokens,
with a service catalog), Nova 2.1 (servers, flavors, availability zones, actions, the
compute microversion) and Glance v2 (images), on one port, in one process, standard
library only.

Honest means it refuses what the real services refuse: every compute and image request
needs a token Keystone issued and that has not expired; a token scoped to one project sees
only that project's servers; unknown flavors and images are 400s; quotas are 403s; a
microversion above the advertised maximum is a 406; a stop of a stopped server is a 409.
Servers are BUILD for a moment, then ACTIVE (or ERROR with a fault); a deleted server keeps
its status with task state `deleting` for a moment, then is gone (404).

It can be told to fail (`POST /_emulator/faults`, a JSON object; each count is used up by
the requests it breaks): `error_creates` (the next N servers go ERROR: "No valid host was
found"), `throttle` (the next N compute requests get 429 with Retry-After), `not_found_reads`
(the next N reads of a server made in the last minute get 404, as an eventually
consistent cell would), `expire_tokens` (every token issued so far stops working),
`expire_next_token_use` (the next N requests find their token just expired, as a token
that runs out mid-operation),
`quota_instances` (the instance quota of every project). `GET /_emulator/seen` counts
requests by "METHOD /path-pattern".

Run: `openstack_cloud.py [--port N]`; it prints `listening on <port>` once it accepts
connections. Users, projects and application credentials are fixed (see ACCOUNTS).
"""

import argparse
import base64
import json
import re
import secrets
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

MAX_MICROVERSION = "2.96"
REGIONS = ["RegionOne", "RegionTwo"]
TOKEN_TTL = timedelta(hours=1)
BUILD_SECS = 0.3
DELETE_SECS = 0.3

# (domain, user) -> user; each user is a member of one project.
ACCOUNTS = {
    ("Default", "berth"): {"id": "u-berth", "password": "berth-secret", "project": "p-team"},
    ("Default", "other"): {"id": "u-other", "password": "other-secret", "project": "p-other"},
}
PROJECTS = {
    "p-team": {"id": "p-team", "name": "team", "domain": "Default"},
    "p-other": {"id": "p-other", "name": "other", "domain": "Default"},
}
# Application credentials: id -> (secret, user id, project id).
APP_CREDENTIALS = {"ac-berth": ("ac-secret", "u-berth", "p-team")}
# A user with no compute in their catalog, to see that error.
NO_COMPUTE_USERS = {"u-nocompute"}
ACCOUNTS[("Default", "nocompute")] = {
    "id": "u-nocompute", "password": "nocompute-secret", "project": "p-team"}

FLAVORS = [
    {"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1},
    {"id": "2", "name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20},
    {"id": "3", "name": "m1.medium", "vcpus": 2, "ram": 4096, "disk": 40},
    {"id": "4", "name": "m1.large", "vcpus": 4, "ram": 8192, "disk": 80},
]
IMAGES = [
    {"id": "9b2b0ef6-0f4e-4c43-9d33-7e1f8a6b0001", "name": "debian-12", "os_distro": "debian",
     "architecture": "x86_64"},
    {"id": "9b2b0ef6-0f4e-4c43-9d33-7e1f8a6b0002", "name": "ubuntu-24.04", "os_distro": "ubuntu",
     "architecture": "x86_64"},
    {"id": "9b2b0ef6-0f4e-4c43-9d33-7e1f8a6b0003", "name": "rocky-9", "os_distro": "rocky",
     "architecture": "x86_64"},
]
ZONES = ["nova", "az-2"]


def now():
    return datetime.now(timezone.utc)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_micro(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Cloud:
    """Everything the emulator holds, behind one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.tokens = {}  # token -> {"user", "project", "expires", "catalog"}
        self.servers = {}  # id -> server record
        self.addresses = 0
        self.faults = {"error_creates": 0, "throttle": 0, "not_found_reads": 0,
                       "expire_next_token_use": 0, "quota_instances": 100}
        self.seen = {}

    def count(self, what):
        with self.lock:
            self.seen[what] = self.seen.get(what, 0) + 1

    def take(self, fault):
        """Uses up one of `fault`, if any is left."""
        with self.lock:
            if self.faults.get(fault, 0) > 0:
                self.faults[fault] -= 1
                return True
            return False


CLOUD = Cloud()


class Refusal(Exception):
    def __init__(self, status, body, headers=None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def nova_error(status, kind, message):
    return Refusal(status, {kind: {"code": status, "message": message}})


def unauthorized():
    return Refusal(401, {"error": {"code": 401, "title": "Unauthorized",
                                   "message": "The request you have made requires authentication."}})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openstack-emulator/1"

    def log_message(self, *args):
        pass

    # ---------------------------------------------------------------- plumbing

    def base(self):
        return f"http://{self.headers.get('Host') or '127.0.0.1'}"

    def body_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise Refusal(400, {"badRequest": {"code": 400, "message": "Malformed request body"}})

    def send(self, status, body=None, headers=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def dispatch(self, method):
        url = urlsplit(self.path)
        # Decoded as the real services' WSGI servers decode it.
        path = unquote(url.path).rstrip("/") or "/"
        query = parse_qs(url.query)
        try:
            for pattern, handler, allowed in ROUTES:
                m = re.fullmatch(pattern, path)
                if m and method in allowed:
                    CLOUD.count(f"{method} {pattern}")
                    status, body, headers = handler(self, method, query, *m.groups())
                    self.send(status, body, headers)
                    return
            self.send(404, {"itemNotFound": {"code": 404, "message": "The resource could not be found."}})
        except Refusal as r:
            self.send(r.status, r.body, r.headers)

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PUT(self):
        self.dispatch("PUT")

    # ---------------------------------------------------------------- keystone

    def identity_versions(self, method, query):
        v3 = self.identity_v3_version()
        return 300, {"versions": {"values": [v3]}}, {}

    def identity_v3_version(self):
        return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": f"{self.base()}/identity/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.identity-v3+json"}]}

    def identity_v3(self, method, query):
        return 200, {"version": self.identity_v3_version()}, {}

    def catalog(self, user_id):
        base = self.base()

        def service(kind, name, url):
            return {"id": uuid.uuid4().hex, "type": kind, "name": name, "endpoints": [
                {"id": uuid.uuid4().hex, "interface": interface, "region": region,
                 "region_id": region, "url": url(region, interface)}
                for region in REGIONS for interface in ("public", "internal")]}

        # Each region's compute is the same emulator, told apart by a path prefix a real
        # cloud would put on another host.
        entries = [
            service("identity", "keystone", lambda r, i: f"{base}/identity"),
            service("image", "glance", lambda r, i: f"{base}/image"),
        ]
        if user_id not in NO_COMPUTE_USERS:
            entries.append(service("compute", "nova",
                                   lambda r, i: f"{base}/compute/v2.1" if r == REGIONS[0]
                                   else f"{base}/{r.lower()}/compute/v2.1"))
        return entries

    def issue_token(self, method, query):
        auth = self.body_json().get("auth") or {}
        identity = auth.get("identity") or {}
        methods = identity.get("methods") or []
        user, project_id = None, None
        if "password" in methods:
            u = (identity.get("password") or {}).get("user") or {}
            domain = (u.get("domain") or {}).get("name") or (u.get("domain") or {}).get("id") or "Default"
            if domain == "default":
                domain = "Default"
            if "name" in u:
                account = ACCOUNTS.get((domain, u["name"]))
            else:
                account = next((a for a in ACCOUNTS.values() if a["id"] == u.get("id")), None)
            if not account or not secrets.compare_digest(account["password"], str(u.get("password", ""))):
                raise unauthorized()
            user = account
            scope = (auth.get("scope") or {}).get("project") or {}
            if scope:
                wanted = scope.get("id") or next(
                    (p["id"] for p in PROJECTS.values() if p["name"] == scope.get("name")), None)
                if wanted != account["project"]:
                    raise unauthorized()
                project_id = wanted
        elif "application_credential" in methods:
            ac = identity.get("application_credential") or {}
            found = APP_CREDENTIALS.get(ac.get("id", ""))
            if not found or not secrets.compare_digest(found[0], str(ac.get("secret", ""))):
                raise unauthorized()
            user = next(a for a in ACCOUNTS.values() if a["id"] == found[1])
            project_id = found[2]
        else:
            raise Refusal(400, {"error": {"code": 400, "title": "Bad Request",
                                          "message": "Expecting to find identity methods"}})
        issued = now()
        expires = issued + timedelta(seconds=CLOUD.faults.get("token_ttl_secs", TOKEN_TTL.total_seconds()))
        token = "gAAAA" + secrets.token_urlsafe(48)
        catalog = self.catalog(user["id"])
        with CLOUD.lock:
            CLOUD.tokens[token] = {"user": user["id"], "project": project_id, "expires": expires}
        body = {"token": {"methods": methods, "expires_at": iso_micro(expires),
                          "issued_at": iso_micro(issued), "audit_ids": [uuid.uuid4().hex[:22]],
                          "user": {"id": user["id"], "name": next(k[1] for k, v in ACCOUNTS.items() if v is user),
                                   "domain": {"id": "default", "name": "Default"},
                                   "password_expires_at": None}}}
        if project_id:
            p = PROJECTS[project_id]
            body["token"]["project"] = {"id": p["id"], "name": p["name"],
                                        "domain": {"id": "default", "name": p["domain"]}}
            body["token"]["roles"] = [{"id": "r-member", "name": "member"}]
            body["token"]["catalog"] = catalog
        return 201, body, {"X-Subject-Token": token}

    def token(self):
        """The project of the request's valid token, or a 401."""
        token = self.headers.get("X-Auth-Token", "")
        if CLOUD.take("expire_next_token_use"):
            # The token expires just as it is used: mid-operation.
            with CLOUD.lock:
                CLOUD.tokens.pop(token, None)
        with CLOUD.lock:
            held = CLOUD.tokens.get(token)
        if not held or held["expires"] <= now() or not held["project"]:
            raise unauthorized()
        return held

    # ---------------------------------------------------------------- nova

    def microversion(self):
        """The compute microversion asked for (2.1 when none), refused above the maximum."""
        asked = self.headers.get("OpenStack-API-Version", "")
        m = re.fullmatch(r"\s*compute\s+(\S+)\s*", asked)
        version = m.group(1) if m else self.headers.get("X-OpenStack-Nova-API-Version", "2.1")
        if version == "latest":
            version = MAX_MICROVERSION
        try:
            major, minor = (int(x) for x in version.split("."))
        except ValueError:
            raise Refusal(400, {"badRequest": {"code": 400, "message": f"Invalid API version {version}"}})
        top = tuple(int(x) for x in MAX_MICROVERSION.split("."))
        if (major, minor) < (2, 1) or (major, minor) > top:
            raise Refusal(406, {"computeFault": {
                "code": 406, "message": f"Version {version} is not supported by the API. "
                                        f"Minimum is 2.1 and maximum is {MAX_MICROVERSION}."}})
        return (major, minor)

    def compute(self, region):
        """Checks a compute request: its token, throttling and microversion."""
        held = self.token()
        if CLOUD.take("throttle"):
            raise Refusal(429, {"overLimit": {"code": 429, "message": "This request was rate-limited.",
                                              "retryAfter": "1"}}, {"Retry-After": "1"})
        version = self.microversion()
        return held, version

    def version_headers(self, version):
        text = f"{version[0]}.{version[1]}"
        return {"OpenStack-API-Version": f"compute {text}", "X-OpenStack-Nova-API-Version": text,
                "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version"}

    def compute_version_doc(self, region_prefix):
        return {"id": "v2.1", "status": "CURRENT", "version": MAX_MICROVERSION, "min_version": "2.1",
                "updated": "2013-07-23T11:33:21Z",
                "links": [{"rel": "self", "href": f"{self.base()}{region_prefix}/compute/v2.1/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.compute+json;version=2.1"}]}

    def compute_versions(self, method, query, region=None):
        prefix = f"/{region}" if region else ""
        return 200, {"versions": [self.compute_version_doc(prefix)]}, {}

    def compute_v21(self, method, query, region=None):
        prefix = f"/{region}" if region else ""
        return 200, {"version": self.compute_version_doc(prefix)}, {}

    def region_name(self, region):
        return next((r for r in REGIONS if r.lower() == region), None) if region else REGIONS[0]

    def server_view(self, s, version):
        t = now()
        status = s["status"]
        view = {
            "id": s["id"], "name": s["name"], "status": status, "tenant_id": s["project"],
            "user_id": s["user"], "metadata": s["metadata"], "hostId": s["host_id"],
            "image": {"id": s["image"], "links": []},
            "created": iso(s["created"]), "updated": iso(s["updated"]),
            "addresses": s["addresses"] if status in ("ACTIVE", "SHUTOFF") else {},
            "accessIPv4": "", "accessIPv6": "", "key_name": s["key_name"],
            "security_groups": [{"name": g} for g in s["security_groups"]],
            "OS-EXT-AZ:availability_zone": s["zone"],
            "OS-EXT-STS:vm_state": {"BUILD": "building", "ACTIVE": "active", "SHUTOFF": "stopped",
                                    "ERROR": "error"}[status],
            "OS-EXT-STS:task_state": "deleting" if s.get("deleted") else
            {"BUILD": "spawning"}.get(status),
            "OS-EXT-STS:power_state": 1 if status == "ACTIVE" else 4 if status == "SHUTOFF" else 0,
            "OS-SRV-USG:launched_at": s["launched"].strftime("%Y-%m-%dT%H:%M:%S.%f") if s.get("launched") else None,
            "OS-SRV-USG:terminated_at": None, "OS-DCF:diskConfig": "MANUAL",
            "config_drive": "", "progress": 0 if status == "BUILD" else 100,
            "links": [{"rel": "self", "href": f"{self.base()}/compute/v2.1/servers/{s['id']}"}],
            "os-extended-volumes:volumes_attached": [],
        }
        flavor = next(f for f in FLAVORS if f["id"] == s["flavor"])
        if version >= (2, 47):
            view["flavor"] = {"original_name": flavor["name"], "vcpus": flavor["vcpus"], "ram": flavor["ram"],
                              "disk": flavor["disk"], "ephemeral": 0, "swap": 0, "extra_specs": {}}
        else:
            view["flavor"] = {"id": flavor["id"], "links": []}
        if version >= (2, 26):
            view["tags"] = list(s["tags"])
        if version >= (2, 19):
            view["description"] = None
        if version >= (2, 9):
            view["locked"] = False
        if status == "ERROR":
            view["fault"] = s["fault"]
        del t
        return view

    def settle(self, s):
        """Moves a server on with time: BUILD to ACTIVE or ERROR, a deleted one to gone."""
        t = now()
        if s["status"] == "BUILD" and t >= s["created"] + timedelta(seconds=BUILD_SECS):
            if s["fails"]:
                s["status"] = "ERROR"
                s["fault"] = {"code": 500, "created": iso(t),
                              "message": "No valid host was found. There are not enough hosts available."}
            else:
                s["status"] = "ACTIVE"
                s["launched"] = t
            s["updated"] = t
        if s.get("deleted") and t >= s["deleted"] + timedelta(seconds=DELETE_SECS):
            return False
        return True

    def visible(self, held, region):
        """The servers of the token's project in `region`, settled."""
        with CLOUD.lock:
            for sid in list(CLOUD.servers):
                if not self.settle(CLOUD.servers[sid]):
                    del CLOUD.servers[sid]
            return [s for s in CLOUD.servers.values()
                    if s["project"] == held["project"] and s["region"] == region]

    def one_server(self, held, region, server_id):
        found = next((s for s in self.visible(held, region) if s["id"] == server_id), None)
        if found is None:
            raise nova_error(404, "itemNotFound", f"Instance {server_id} could not be found.")
        return found

    def create_server(self, method, query, region=None):
        held, version = self.compute(region)
        region = self.region_name(region)
        body = (self.body_json().get("server")) or {}
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise nova_error(400, "badRequest", "Invalid input for field/attribute name.")
        flavor_ref = str(body.get("flavorRef", "")).rsplit("/", 1)[-1]
        if not any(f["id"] == flavor_ref for f in FLAVORS):
            raise nova_error(400, "badRequest", f"Flavor {flavor_ref} could not be found.")
        image_ref = str(body.get("imageRef", "")).rsplit("/", 1)[-1]
        if not any(i["id"] == image_ref for i in IMAGES):
            raise nova_error(400, "badRequest", "Can not find requested image")
        networks = body.get("networks", "auto" if version >= (2, 37) else None)
        if version >= (2, 37) and networks is None:
            raise nova_error(400, "badRequest", "Invalid input for field/attribute networks.")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict) or any(
                not isinstance(k, str) or not isinstance(v, str) or len(k) > 255 or len(v) > 255
                for k, v in metadata.items()):
            raise nova_error(400, "badRequest", "Invalid input for field/attribute metadata.")
        user_data = body.get("user_data")
        if user_data is not None:
            try:
                decoded = base64.b64decode(user_data, validate=True)
            except ValueError:
                raise nova_error(400, "badRequest", "User data needs to be valid base 64.")
            if len(decoded) > 65535:
                raise nova_error(400, "badRequest", "User data too large.")
        zone = body.get("availability_zone") or ZONES[0]
        if zone not in ZONES:
            raise nova_error(400, "badRequest", f"The requested availability zone is not available")
        tags = body.get("tags") or []
        groups = [g.get("name") for g in body.get("security_groups") or [{"name": "default"}]]
        t = now()
        with CLOUD.lock:
            used = sum(1 for s in CLOUD.servers.values() if s["project"] == held["project"])
            limit = CLOUD.faults["quota_instances"]
            if used >= limit:
                raise nova_error(403, "forbidden",
                                 f"Quota exceeded for instances: Requested 1, but already used {used} "
                                 f"of {limit} instances")
            fails = CLOUD.faults["error_creates"] > 0
            if fails:
                CLOUD.faults["error_creates"] -= 1
            CLOUD.addresses += 1
            n = CLOUD.addresses
            sid = str(uuid.uuid4())
            CLOUD.servers[sid] = {
                "id": sid, "name": name, "status": "BUILD", "project": held["project"],
                "user": held["user"], "metadata": dict(metadata), "tags": list(tags),
                "host_id": uuid.uuid4().hex, "image": image_ref, "flavor": flavor_ref,
                "created": t, "updated": t, "key_name": body.get("key_name"),
                "security_groups": groups, "zone": zone, "region": region, "fails": fails,
                "addresses": {"private": [{"version": 4, "addr": f"10.0.{n // 250}.{n % 250 + 2}",
                                           "OS-EXT-IPS:type": "fixed",
                                           "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:%02x:%02x:%02x" % (
                                               n >> 16 & 255, n >> 8 & 255, n & 255)}]},
                "fresh_until": t + timedelta(seconds=60),
            }
        return 202, {"server": {"id": sid, "links": [
            {"rel": "self", "href": f"{self.base()}/compute/v2.1/servers/{sid}"}],
            "OS-DCF:diskConfig": "MANUAL", "security_groups": [{"name": g} for g in groups],
            "adminPass": secrets.token_urlsafe(9)}}, {
            **self.version_headers(version), "Location": f"{self.base()}/compute/v2.1/servers/{sid}"}

    def get_server(self, method, query, region, server_id):
        held, version = self.compute(region)
        region = self.region_name(region)
        with CLOUD.lock:
            s = CLOUD.servers.get(server_id)
            fresh = s is not None and now() < s["fresh_until"]
        if fresh and CLOUD.take("not_found_reads"):
            raise nova_error(404, "itemNotFound", f"Instance {server_id} could not be found.")
        s = self.one_server(held, region, server_id)
        return 200, {"server": self.server_view(s, version)}, self.version_headers(version)

    def list_servers(self, method, query, region=None, detail=None):
        held, version = self.compute(region)
        region = self.region_name(region)
        servers = sorted(self.visible(held, region), key=lambda s: (s["created"], s["id"]), reverse=True)
        if "name" in query:
            try:
                pattern = re.compile(query["name"][0])
            except re.error:
                raise nova_error(400, "badRequest", "Invalid regular expression for name")
            servers = [s for s in servers if pattern.search(s["name"])]
        if "status" in query:
            servers = [s for s in servers if s["status"] == query["status"][0].upper()]
        if version >= (2, 26) and "tags" in query:
            wanted = set(query["tags"][0].split(","))
            servers = [s for s in servers if wanted <= set(s["tags"])]
        if "marker" in query:
            marker = query["marker"][0]
            index = next((i for i, s in enumerate(servers) if s["id"] == marker), None)
            if index is None:
                raise nova_error(400, "badRequest", f"marker [{marker}] not found")
            servers = servers[index + 1:]
        limit = 1000
        if "limit" in query:
            try:
                limit = int(query["limit"][0])
            except ValueError:
                raise nova_error(400, "badRequest", "Invalid input for query parameters limit.")
            if limit < 0:
                raise nova_error(400, "badRequest", "Invalid input for query parameters limit.")
            limit = min(limit, 1000)
        page, more = servers[:limit], len(servers) > limit
        if detail:
            body = {"servers": [self.server_view(s, version) for s in page]}
        else:
            body = {"servers": [{"id": s["id"], "name": s["name"], "links": []} for s in page]}
        if more and page:
            args = {k: v[0] for k, v in query.items() if k != "marker"}
            args["marker"] = page[-1]["id"]
            prefix = "" if region == REGIONS[0] else f"/{region.lower()}"
            body["servers_links"] = [{"rel": "next", "href": f"{self.base()}{prefix}/compute/v2.1/servers"
                                      f"{'/detail' if detail else ''}?{urlencode(args)}"}]
        return 200, body, self.version_headers(version)

    def server_action(self, method, query, region, server_id):
        held, version = self.compute(region)
        region = self.region_name(region)
        action = self.body_json()
        s = self.one_server(held, region, server_id)
        with CLOUD.lock:
            if "os-stop" in action:
                if s["status"] != "ACTIVE":
                    raise nova_error(409, "conflictingRequest",
                                     f"Cannot 'stop' instance {server_id} while it is in vm_state "
                                     f"{'stopped' if s['status'] == 'SHUTOFF' else s['status'].lower()}")
                s["status"], s["updated"] = "SHUTOFF", now()
            elif "os-start" in action:
                if s["status"] != "SHUTOFF":
                    raise nova_error(409, "conflictingRequest",
                                     f"Cannot 'start' instance {server_id} while it is in vm_state "
                                     f"{'active' if s['status'] == 'ACTIVE' else s['status'].lower()}")
                s["status"], s["updated"] = "ACTIVE", now()
            else:
                raise nova_error(400, "badRequest", "There is no such action: %s" % ",".join(action))
        return 202, None, self.version_headers(version)

    def delete_server(self, method, query, region, server_id):
        held, version = self.compute(region)
        region = self.region_name(region)
        s = self.one_server(held, region, server_id)
        with CLOUD.lock:
            if not s.get("deleted"):
                s["deleted"], s["updated"] = now(), now()
        return 204, None, self.version_headers(version)

    def flavors(self, method, query, region=None, detail=None):
        held, version = self.compute(region)
        views = []
        for f in FLAVORS:
            view = {"id": f["id"], "name": f["name"], "links": []}
            if detail:
                view.update({"vcpus": f["vcpus"], "ram": f["ram"], "disk": f["disk"],
                             "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": False,
                             "swap": "", "rxtx_factor": 1.0, "os-flavor-access:is_public": True})
                if version >= (2, 55):
                    view["description"] = None
                if version >= (2, 61):
                    view["extra_specs"] = {}
            views.append(view)
        return 200, {"flavors": views}, self.version_headers(version)

    def flavor(self, method, query, region, flavor_id):
        status, body, headers = self.flavors(method, query, region, "detail")
        found = next((f for f in body["flavors"] if f["id"] == flavor_id), None)
        if not found:
            raise nova_error(404, "itemNotFound", f"Flavor {flavor_id} could not be found.")
        return 200, {"flavor": found}, headers

    def zones(self, method, query, region=None):
        held, version = self.compute(region)
        return 200, {"availabilityZoneInfo": [
            {"zoneName": z, "zoneState": {"available": True}, "hosts": None} for z in ZONES]}, \
            self.version_headers(version)

    # ---------------------------------------------------------------- glance

    def image_versions(self, method, query):
        return 300, {"versions": [{"id": "v2.16", "status": "CURRENT",
                                   "links": [{"rel": "self", "href": f"{self.base()}/image/v2/"}]}]}, {}

    def images(self, method, query):
        self.token()
        images = sorted(IMAGES, key=lambda i: i["id"])
        if "marker" in query:
            marker = query["marker"][0]
            index = next((n for n, i in enumerate(images) if i["id"] == marker), None)
            if index is None:
                raise Refusal(400, {"error": "marker not found"})
            images = images[index + 1:]
        if "name" in query:
            images = [i for i in images if i["name"] == query["name"][0]]
        limit = int(query.get("limit", ["25"])[0])
        page = images[:limit]
        body = {"images": [{"id": i["id"], "name": i["name"], "status": "active", "visibility": "public",
                            "os_distro": i["os_distro"], "architecture": i["architecture"],
                            "min_disk": 0, "min_ram": 0, "disk_format": "qcow2", "container_format": "bare",
                            "size": 1073741824, "protected": False, "tags": [],
                            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                            "self": f"/v2/images/{i['id']}", "file": f"/v2/images/{i['id']}/file",
                            "schema": "/v2/schemas/image"} for i in page],
                "first": "/v2/images", "schema": "/v2/schemas/images"}
        if len(images) > limit and page:
            body["next"] = f"/v2/images?{urlencode({'marker': page[-1]['id'], 'limit': limit})}"
        return 200, body, {}

    def image(self, method, query, image_id):
        status, body, headers = self.images(method, {"limit": ["1000"]})
        found = next((i for i in body["images"] if i["id"] == image_id), None)
        if not found:
            raise Refusal(404, {"code": 404, "title": "Not Found", "message": f"No image found with ID {image_id}"})
        return 200, found, {}

    # ---------------------------------------------------------------- the emulator's own

    def set_faults(self, method, query):
        asked = self.body_json()
        with CLOUD.lock:
            for key, value in asked.items():
                if key == "expire_tokens":
                    if value:
                        CLOUD.tokens.clear()
                elif key in ("error_creates", "throttle", "not_found_reads", "quota_instances",
                             "token_ttl_secs", "expire_next_token_use"):
                    CLOUD.faults[key] = value
                else:
                    raise Refusal(400, {"error": f"unknown fault {key}"})
            return 200, dict(CLOUD.faults), {}

    def get_seen(self, method, query):
        with CLOUD.lock:
            return 200, dict(CLOUD.seen), {}

    def get_servers_admin(self, method, query):
        """Every server of every project, as the operator sees them (for tests)."""
        with CLOUD.lock:
            for sid in list(CLOUD.servers):
                if not self.settle(CLOUD.servers[sid]):
                    del CLOUD.servers[sid]
            return 200, {"servers": [{"id": s["id"], "name": s["name"], "status": s["status"],
                                      "project": s["project"], "region": s["region"],
                                      "metadata": s["metadata"], "flavor": s["flavor"]}
                                     for s in CLOUD.servers.values()]}, {}


REGION = r"(?:/(regiontwo))?"
ROUTES = [
    (r"/identity", Handler.identity_versions, {"GET"}),
    (r"/identity/v3", Handler.identity_v3, {"GET"}),
    (r"/identity/v3/auth/tokens", Handler.issue_token, {"POST"}),
    (REGION + r"/compute", Handler.compute_versions, {"GET"}),
    (REGION + r"/compute/v2\.1", Handler.compute_v21, {"GET"}),
    (REGION + r"/compute/v2\.1/servers", Handler.create_server, {"POST"}),
    (REGION + r"/compute/v2\.1/servers(/detail)?", Handler.list_servers, {"GET"}),
    (REGION + r"/compute/v2\.1/servers/([0-9a-f-]{36})", Handler.get_server, {"GET"}),
    (REGION + r"/compute/v2\.1/servers/([0-9a-f-]{36})", Handler.delete_server, {"DELETE"}),
    (REGION + r"/compute/v2\.1/servers/([0-9a-f-]{36})/action", Handler.server_action, {"POST"}),
    (REGION + r"/compute/v2\.1/flavors(/detail)?", Handler.flavors, {"GET"}),
    (REGION + r"/compute/v2\.1/flavors/([^/]+)", Handler.flavor, {"GET"}),
    (REGION + r"/compute/v2\.1/os-availability-zone", Handler.zones, {"GET"}),
    (r"/image", Handler.image_versions, {"GET"}),
    (r"/image/v2/images", Handler.images, {"GET"}),
    (r"/image/v2/images/([0-9a-f-]{36})", Handler.image, {"GET"}),
    (r"/_emulator/faults", Handler.set_faults, {"POST"}),
    (r"/_emulator/seen", Handler.get_seen, {"GET"}),
    (r"/_emulator/servers", Handler.get_servers_admin, {"GET"}),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
