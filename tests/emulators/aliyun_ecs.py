#!/usr/bin/env python3
"""A small, honest Alibaba Cloud ECS: the RPC API 2014-05-26 (regions, zones, instance
types, images, prices, and instances from RunInstances to DeleteInstance), signed with
ACS3-HMAC-SHA256, on one port, in one process, standard library only.

Honest means it refuses what ECS refuses, with ECS's codes:
- every request is signed with the V3 scheme and the signature is checked over the full
  canonical request (method, path, sorted query, every signed header, the body's SHA-256):
  a wrong secret or a changed parameter is `SignatureDoesNotMatch`; an unknown key is
  `InvalidAccessKeyId.NotFound`; `host`, `x-acs-*` headers left unsigned are
  `IncompleteSignature`; a nonce used twice is `SignatureNonceUsed`;
- a request whose `x-acs-date` is more than 15 minutes from the emulator's clock is
  `InvalidTimeStamp.Expired`;
- `RunInstances` with a `ClientToken` already used answers the same instances and creates
  nothing; the same token with other parameters is `IdempotentParameterMismatch`;
- lists page (`PageNumber`/`PageSize`, or `NextToken`/`MaxResults`), and an account sees only
  its own instances;
- instances go Pending → Starting → Running (and Stopping → Stopped); a start of a running
  instance, a stop of a stopped one, a delete of a running one without `Force` are
  `IncorrectInstanceStatus`.

It can be told to fail (`POST /_emulator/faults`, a JSON object; each count is used up by
the requests it breaks): `throttle` (the next N API requests get `Throttling.User`),
`no_stock` (the next N `RunInstances` get `OperationDenied.NoStock`), `not_found_reads` (the
next N `DescribeInstances` leave out instances made in the last minute, as an eventually
consistent read would), `quota_instances` (every account's instance quota: more is
`QuotaExceed.ElasticQuota`), `clock_offset_secs` (the emulator's clock runs this far from
the machine's), `describe_price` (false: the endpoint has no `DescribePrice`, as some
regions and private endpoints lack it). `GET /_emulator/seen` counts requests by action;
`GET /_emulator/instances` lists every account's instances; `POST /_emulator/instances`
(`{"region", "tags"}`) makes one behind the API's back, and `POST /_emulator/release`
(`{"InstanceId"}`) releases one so.

Run: `aliyun_ecs.py [--port N]`; it prints `listening on <port>` once it accepts
connections. Access keys are fixed (see ACCESS_KEYS).
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, unquote_plus, urlsplit

VERSION = "2014-05-26"
ALGORITHM = "ACS3-HMAC-SHA256"
MAX_SKEW_SECS = 15 * 60
PENDING_SECS = 0.2
STARTING_SECS = 0.2
STOPPING_SECS = 0.2
RELEASE_SECS = 0.2

# AccessKey id -> (secret, account).
ACCESS_KEYS = {
    "LTAI5tBerthTeam": ("berth-ecs-secret", "1001"),
    "LTAI5tOtherTeam": ("other-ecs-secret", "2002"),
}

REGIONS = {
    "cn-hangzhou": {"name": "华东1（杭州）", "zones": ["cn-hangzhou-h", "cn-hangzhou-i"]},
    "cn-shanghai": {"name": "华东2（上海）", "zones": ["cn-shanghai-e"]},
}
VSWITCHES = {
    "vsw-hz-h": ("cn-hangzhou", "cn-hangzhou-h"),
    "vsw-hz-i": ("cn-hangzhou", "cn-hangzhou-i"),
    "vsw-sh-e": ("cn-shanghai", "cn-shanghai-e"),
}
SECURITY_GROUPS = {"sg-hz-web": "cn-hangzhou", "sg-hz-db": "cn-hangzhou", "sg-sh-web": "cn-shanghai"}
# id -> (vCPUs, memory GiB, GPUs, CNY per hour pay-as-you-go)
INSTANCE_TYPES = {
    "ecs.t6-c1m1.large": (2, 2.0, 0, "0.1020"),
    "ecs.g7.large": (2, 8.0, 0, "0.6540"),
    "ecs.g7.xlarge": (4, 16.0, 0, "1.3080"),
    "ecs.c7.large": (2, 4.0, 0, "0.4830"),
    "ecs.gn6i-c4g1.xlarge": (4, 15.0, 1, "8.8720"),
}
IMAGES = [
    {"ImageId": "aliyun_3_x64_20G_alibase_20240819.vhd", "ImageName": "Alibaba Cloud Linux 3",
     "OSName": "Alibaba Cloud Linux 3.2104 LTS 64位", "Platform": "Aliyun", "ImageOwnerAlias": "system"},
    {"ImageId": "ubuntu_22_04_x64_20G_alibase_20240710.vhd", "ImageName": "Ubuntu 22.04",
     "OSName": "Ubuntu  22.04 64位", "Platform": "Ubuntu", "ImageOwnerAlias": "system"},
    {"ImageId": "debian_12_6_x64_20G_alibase_20240823.vhd", "ImageName": "Debian 12.6",
     "OSName": "Debian  12.6 64位", "Platform": "Debian", "ImageOwnerAlias": "system"},
    {"ImageId": "m-bp1berthgolden0001", "ImageName": "berth-golden", "OSName": "Debian  12.6 64位",
     "Platform": "Debian", "ImageOwnerAlias": "self"},
]


def now():
    return time.time() + CLOUD.faults["clock_offset_secs"]


def iso_minutes(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


class Cloud:
    """Everything the emulator holds, behind one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.instances = {}  # id -> record
        self.client_tokens = {}  # (account, token) -> (fingerprint, [ids])
        self.nonces = {}  # nonce -> time first seen
        self.addresses = 0
        self.faults = {"throttle": 0, "no_stock": 0, "not_found_reads": 0, "quota_instances": 100,
                       "clock_offset_secs": 0, "describe_price": True}
        self.seen = {}

    def take(self, fault):
        """Uses up one of `fault`, if any is left."""
        with self.lock:
            if self.faults.get(fault, 0) > 0:
                self.faults[fault] -= 1
                return True
            return False


CLOUD = Cloud()


class Refusal(Exception):
    def __init__(self, status, code, message):
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


def missing(name):
    return Refusal(400, f"Missing{name}", f"{name} is mandatory for this action.")


def invalid(name, why):
    return Refusal(400, f"InvalidParameter.{name}", f"The specified parameter {name} is not valid: {why}")


def boolean(params, name, default=False):
    """ECS reads booleans case-insensitively ("true", "True")."""
    value = params.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid(name, "expected true or false")


def integer(params, name, default, low, high):
    value = params.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise invalid(name, "expected an integer")
    if not low <= number <= high:
        raise invalid(name, f"expected {low} to {high}")
    return number


def numbered(params, prefix):
    """`Prefix.1`, `Prefix.2`, … in order (ECS's flattened lists)."""
    found = {}
    for key, value in params.items():
        m = re.fullmatch(re.escape(prefix) + r"\.(\d+)", key)
        if m:
            found[int(m.group(1))] = value
    return [found[n] for n in sorted(found)]


def tags_of(params):
    """`Tag.N.Key` / `Tag.N.Value` pairs."""
    keys = {}
    for key, value in params.items():
        m = re.fullmatch(r"Tag\.(\d+)\.(Key|Value)", key)
        if m:
            keys.setdefault(int(m.group(1)), {})[m.group(2)] = value
    tags = []
    for n in sorted(keys):
        if n > 20:
            raise invalid("Tag", "at most 20 tags")
        key = keys[n].get("Key")
        if not key:
            raise Refusal(400, "InvalidTagKey.Malformed", f"Tag.{n}.Key is empty")
        if key.startswith("aliyun") or key.startswith("acs:"):
            raise Refusal(400, "InvalidTagKey.Malformed", "tag keys may not start with aliyun or acs:")
        tags.append((key, keys[n].get("Value", "")))
    return tags


def canonical_query(raw_query):
    """The V3 canonical query string of the query as sent: every pair form-decoded (a `+`
    is a space, as the official SDK sends it), re-encoded RFC 3986 style (`~` kept, space as
    %20), sorted by name."""
    pairs = []
    if raw_query:
        for part in raw_query.split("&"):
            if not part:
                continue
            name, _, value = part.partition("=")
            pairs.append((unquote_plus(name), unquote_plus(value)))
    pairs.sort()
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs), dict(pairs)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ecs-emulator/1"

    def log_message(self, *args):
        pass

    # ---------------------------------------------------------------- plumbing

    def send(self, status, body):
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def refuse(self, refusal, request_id):
        self.send(refusal.status, {
            "RequestId": request_id, "HostId": self.headers.get("Host", "ecs.aliyuncs.com"),
            "Code": refusal.code, "Message": refusal.message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={refusal.code}&product=Ecs"})

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def dispatch(self, method):
        request_id = str(uuid.uuid4()).upper()
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if url.path.startswith("/_emulator/"):
            return self.emulator(method, url.path, body)
        try:
            if url.path != "/":
                raise Refusal(404, "InvalidAction.NotFound", "RPC requests go to /")
            # Counted whether or not it is refused: what reached the cloud.
            action = self.headers.get("x-acs-action")
            with CLOUD.lock:
                CLOUD.seen[action] = CLOUD.seen.get(action, 0) + 1
            params = self.authenticate(method, url, body)
            if CLOUD.take("throttle"):
                raise Refusal(400, "Throttling.User", "Request was denied due to user flow control.")
            handler = ACTIONS.get(action)
            if handler is None or (action == "DescribePrice" and not CLOUD.faults["describe_price"]):
                raise Refusal(404, "InvalidAction.NotFound",
                              f"Specified api is not found, please check your url and method. ({action})")
            answer = handler(self, params)
            answer["RequestId"] = request_id
            self.send(200, answer)
        except Refusal as r:
            self.refuse(r, request_id)

    # ---------------------------------------------------------------- signature

    def authenticate(self, method, url, body):
        """Checks the ACS3 signature of this request and answers (account, parameters)."""
        authorization = self.headers.get("Authorization", "")
        if not authorization:
            raise Refusal(400, "MissingAuthorization", "Authorization is mandatory for this action.")
        scheme, _, rest = authorization.partition(" ")
        if scheme != ALGORITHM:
            raise Refusal(400, "IncompleteSignature",
                          f"The signature algorithm {scheme!r} is not supported; sign with {ALGORITHM}")
        fields = {}
        for part in rest.split(","):
            name, _, value = part.strip().partition("=")
            fields[name] = value
        if not {"Credential", "SignedHeaders", "Signature"} <= set(fields):
            raise Refusal(400, "IncompleteSignature", "Authorization needs Credential, SignedHeaders and Signature")
        key = ACCESS_KEYS.get(fields["Credential"])
        if key is None:
            raise Refusal(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        secret, account = key
        signed = fields["SignedHeaders"].split(";")
        for required in ("host", "x-acs-action", "x-acs-version", "x-acs-date",
                         "x-acs-signature-nonce", "x-acs-content-sha256"):
            if self.headers.get(required) is None:
                raise Refusal(400, "MissingParameter", f"The header {required} is mandatory for this action.")
            if required not in signed:
                raise Refusal(400, "IncompleteSignature", f"The header {required} must be signed.")
        # Every x-acs-* header sent is signed: an unsigned one could be changed in transit.
        for name in self.headers.keys():
            if name.lower().startswith("x-acs-") and name.lower() not in signed:
                raise Refusal(400, "IncompleteSignature", f"The header {name.lower()} must be signed.")
        if signed != sorted(signed):
            raise Refusal(400, "IncompleteSignature", "SignedHeaders must be sorted")
        if self.headers.get("x-acs-version") != VERSION:
            raise Refusal(400, "InvalidVersion", f"Specified parameter Version is not valid; ECS is {VERSION}.")
        date = self.headers.get("x-acs-date")
        try:
            sent = datetime.strptime(date, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            raise Refusal(400, "InvalidTimeStamp.Format",
                          "Specified time stamp or date value is not well formatted.")
        if abs(now() - sent) > MAX_SKEW_SECS:
            raise Refusal(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        payload_hash = self.headers.get("x-acs-content-sha256")
        if payload_hash != hashlib.sha256(body).hexdigest():
            raise Refusal(400, "SignatureDoesNotMatch", "x-acs-content-sha256 is not the SHA-256 of the body.")
        query, params = canonical_query(url.query)
        headers = ""
        for name in signed:
            values = self.headers.get_all(name)
            if values is None:
                raise Refusal(400, "IncompleteSignature", f"The signed header {name} was not sent.")
            headers += f"{name}:{','.join(sorted(v.strip() for v in values))}\n"
        path = quote(unquote(url.path), safe="/~")
        canonical = f"{method}\n{path}\n{query}\n{headers}\n{';'.join(signed)}\n{payload_hash}"
        to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields["Signature"]):
            raise Refusal(400, "SignatureDoesNotMatch",
                          "Specified signature does not match our calculation. "
                          f"server string to sign is:{to_sign}")
        # A nonce is good once; it is remembered as long as its request could be replayed.
        nonce = self.headers.get("x-acs-signature-nonce")
        with CLOUD.lock:
            for old in [n for n, t in CLOUD.nonces.items() if t < now() - 2 * MAX_SKEW_SECS]:
                del CLOUD.nonces[old]
            if nonce in CLOUD.nonces:
                raise Refusal(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
            CLOUD.nonces[nonce] = now()
        # Body parameters (form-encoded) count as parameters too.
        if body and "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            params.update(canonical_query(body.decode())[1])
        params["_account"] = account
        return params

    # ---------------------------------------------------------------- regions, types, images

    def region(self, params):
        region = params.get("RegionId")
        if not region:
            raise missing("RegionId")
        if region not in REGIONS:
            raise Refusal(400, "InvalidRegionId.NotFound", "The specified RegionId does not exist.")
        return region

    def describe_regions(self, params):
        return {"Regions": {"Region": [
            {"RegionId": r, "LocalName": v["name"], "RegionEndpoint": f"ecs.{r}.aliyuncs.com", "Status": "available"}
            for r, v in REGIONS.items()]}}

    def describe_zones(self, params):
        region = self.region(params)
        return {"Zones": {"Zone": [
            {"ZoneId": z, "LocalName": z, "AvailableInstanceTypes": {"InstanceTypes": sorted(INSTANCE_TYPES)},
             "AvailableResourceCreation": {"ResourceTypes": ["Instance", "Disk", "VSwitch"]}}
            for z in REGIONS[region]["zones"]]}}

    def describe_instance_types(self, params):
        wanted = numbered(params, "InstanceTypes")
        types = sorted(t for t in INSTANCE_TYPES if not wanted or t in wanted)
        limit = integer(params, "MaxResults", 100, 1, 1600)
        start = 0
        if params.get("NextToken"):
            start = self.token_index(params["NextToken"], "types")
        page = types[start:start + limit]
        rest = start + limit < len(types)
        return {"InstanceTypes": {"InstanceType": [
            {"InstanceTypeId": t, "CpuCoreCount": INSTANCE_TYPES[t][0], "MemorySize": INSTANCE_TYPES[t][1],
             "GPUAmount": INSTANCE_TYPES[t][2], "InstanceTypeFamily": t.rsplit(".", 1)[0],
             "CpuArchitecture": "X86"} for t in page]},
            "NextToken": self.token_for("types", start + limit) if rest else ""}

    def describe_images(self, params):
        self.region(params)
        owner = params.get("ImageOwnerAlias")
        images = [i for i in IMAGES if not owner or i["ImageOwnerAlias"] == owner]
        if params.get("ImageId"):
            wanted = params["ImageId"].split(",")
            images = [i for i in images if i["ImageId"] in wanted]
        number = integer(params, "PageNumber", 1, 1, 1 << 31)
        size = integer(params, "PageSize", 10, 1, 100)
        page = images[(number - 1) * size:number * size]
        return {"Images": {"Image": [dict(i, OSType="linux", Architecture="x86_64", Status="Available",
                                          Size=20, IsSupportCloudinit=True) for i in page]},
                "TotalCount": len(images), "PageNumber": number, "PageSize": size,
                "RegionId": params["RegionId"]}

    def describe_price(self, params):
        self.region(params)
        resource = params.get("ResourceType", "instance")
        if resource != "instance":
            raise invalid("ResourceType", "this emulator prices instances only")
        kind = params.get("InstanceType")
        if not kind:
            raise missing("InstanceType")
        if kind not in INSTANCE_TYPES:
            raise Refusal(400, "InvalidInstanceType.NotFound", "The specified InstanceType does not exist.")
        unit = params.get("PriceUnit", "Hour")
        if unit != "Hour":
            raise invalid("PriceUnit", "this emulator answers hourly prices only")
        price = INSTANCE_TYPES[kind][3]
        return {"PriceInfo": {"Price": {"OriginalPrice": float(price), "DiscountPrice": 0.0,
                                        "TradePrice": float(price), "Currency": "CNY"},
                              "Rules": {"Rule": []}}}

    # ---------------------------------------------------------------- instances

    def settle(self, record):
        """Moves an instance along its timed transitions; False once it is released."""
        t = time.time()
        while record.get("next") is not None and t >= record["next"][0]:
            _, status, after = record["next"]
            if status is None:
                return False
            record["Status"] = status
            if status == "Running":
                record["StartTime"] = iso_minutes(now())
            record["next"] = after
        return True

    def owned(self, account, region, instance_id):
        record = CLOUD.instances.get(instance_id)
        if record is not None and not self.settle(record):
            del CLOUD.instances[instance_id]
            record = None
        if record is None or record["_account"] != account or region not in (None, record["RegionId"]):
            raise Refusal(404, "InvalidInstanceId.NotFound", "The specified InstanceId does not exist.")
        return record

    def run_instances(self, params):
        region = self.region(params)
        account = params["_account"]
        for name in ("ImageId", "InstanceType"):
            if not params.get(name):
                raise missing(name)
        image, kind = params["ImageId"], params["InstanceType"]
        if not any(i["ImageId"] == image for i in IMAGES):
            raise Refusal(404, "InvalidImageId.NotFound", "The specified ImageId does not exist.")
        if kind not in INSTANCE_TYPES:
            raise Refusal(400, "InvalidInstanceType.NotFound", "The specified InstanceType does not exist.")
        vswitch = params.get("VSwitchId")
        if not vswitch:
            raise missing("VSwitchId")
        if VSWITCHES.get(vswitch, (None,))[0] != region:
            raise Refusal(400, "InvalidVSwitchId.NotFound", "The specified VSwitchId does not exist.")
        zone = VSWITCHES[vswitch][1]
        if params.get("ZoneId") and params["ZoneId"] != zone:
            raise Refusal(400, "InvalidParameter.Mismatch", "The VSwitch is not in the specified zone.")
        groups = numbered(params, "SecurityGroupIds") or ([params["SecurityGroupId"]]
                                                         if params.get("SecurityGroupId") else [])
        if not groups:
            raise missing("SecurityGroupId")
        for group in groups:
            if SECURITY_GROUPS.get(group) != region:
                raise Refusal(404, "InvalidSecurityGroupId.NotFound", "The specified SecurityGroupId does not exist.")
        amount = integer(params, "Amount", 1, 1, 100)
        tags = tags_of(params)
        user_data = params.get("UserData")
        if user_data is not None:
            try:
                decoded = base64.b64decode(user_data, validate=True)
            except binascii.Error:
                raise Refusal(400, "InvalidUserData.NotBase64", "The specified UserData is not base64.")
            if len(decoded) > 32 * 1024:
                raise Refusal(400, "InvalidUserData.SizeExceeded", "UserData is over 32 KB.")
        token = params.get("ClientToken")
        if token is not None and (len(token) > 64 or not token.isascii()):
            raise invalid("ClientToken", "at most 64 ASCII characters")
        if boolean(params, "DryRun"):
            raise Refusal(400, "DryRunOperation", "Request validation has been passed with DryRun flag set.")
        fingerprint = json.dumps(sorted((k, v) for k, v in params.items()
                                        if k not in ("ClientToken", "_account")))
        with CLOUD.lock:
            if token is not None and (account, token) in CLOUD.client_tokens:
                earlier, ids = CLOUD.client_tokens[(account, token)]
                if earlier != fingerprint:
                    raise Refusal(400, "IdempotentParameterMismatch",
                                  "The specified parameter has changed while using an already used clientToken.")
                return {"InstanceIdSets": {"InstanceIdSet": ids}, "TradePrice": 0.0}
        if CLOUD.take("no_stock"):
            raise Refusal(403, "OperationDenied.NoStock",
                          "The resource is out of stock in the specified zone. Please try other types of "
                          "resources or other regions and zones.")
        with CLOUD.lock:
            alive = [r for r in CLOUD.instances.values() if r["_account"] == account and self.settle(r)]
            if len(alive) + amount > CLOUD.faults["quota_instances"]:
                raise Refusal(403, "QuotaExceed.ElasticQuota",
                              "No additional quota is available for the specified ECS instance type.")
            if token is not None and (account, token) in CLOUD.client_tokens:
                return {"InstanceIdSets": {"InstanceIdSet": CLOUD.client_tokens[(account, token)][1]}}
            ids = []
            base_name = params.get("InstanceName") or None
            for n in range(amount):
                instance_id = "i-" + secrets.token_hex(10)[:20]
                CLOUD.addresses += 1
                name = base_name or instance_id
                if base_name and amount > 1:
                    name = f"{base_name}-{n + 1:03d}"
                t = time.time()
                CLOUD.instances[instance_id] = {
                    "InstanceId": instance_id, "InstanceName": name, "RegionId": region, "ZoneId": zone,
                    "InstanceType": kind, "ImageId": image, "Status": "Pending",
                    "HostName": params.get("HostName") or f"iZ{instance_id[2:]}Z",
                    "CreationTime": iso_minutes(now()), "StartTime": "",
                    "Cpu": INSTANCE_TYPES[kind][0], "Memory": int(INSTANCE_TYPES[kind][1] * 1024),
                    "GPUAmount": INSTANCE_TYPES[kind][2],
                    "InstanceChargeType": params.get("InstanceChargeType", "PostPaid"),
                    "InternetChargeType": "PayByTraffic", "InstanceNetworkType": "vpc",
                    "KeyPairName": params.get("KeyPairName", ""),
                    "VpcAttributes": {"VpcId": "vpc-berth", "VSwitchId": vswitch, "PrivateIpAddress": {
                        "IpAddress": [f"172.16.{CLOUD.addresses // 250}.{CLOUD.addresses % 250 + 2}"]}},
                    "PublicIpAddress": {"IpAddress": []}, "EipAddress": {"IpAddress": ""},
                    "SecurityGroupIds": {"SecurityGroupId": groups},
                    "Tags": {"Tag": [{"TagKey": k, "TagValue": v} for k, v in tags]},
                    "_account": account, "_made": t,
                    "next": (t + PENDING_SECS, "Starting", (t + PENDING_SECS + STARTING_SECS, "Running", None)),
                }
                ids.append(instance_id)
            if token is not None:
                CLOUD.client_tokens[(account, token)] = (fingerprint, ids)
        return {"InstanceIdSets": {"InstanceIdSet": ids}, "OrderId": "", "TradePrice": 0.0}

    def view(self, record):
        return {k: v for k, v in record.items() if not k.startswith("_") and k != "next"}

    def describe_instances(self, params):
        region = self.region(params)
        account = params["_account"]
        wanted = None
        if params.get("InstanceIds") is not None:
            try:
                wanted = json.loads(params["InstanceIds"])
            except ValueError:
                raise invalid("InstanceIds", "expected a JSON array of instance ids")
            if not isinstance(wanted, list) or len(wanted) > 100:
                raise invalid("InstanceIds", "expected a JSON array of at most 100 instance ids")
        tags = tags_of(params)
        status = params.get("Status")
        name = params.get("InstanceName")
        hide_recent = CLOUD.take("not_found_reads")
        with CLOUD.lock:
            for instance_id in list(CLOUD.instances):
                if not self.settle(CLOUD.instances[instance_id]):
                    del CLOUD.instances[instance_id]
            found = []
            for record in sorted(CLOUD.instances.values(), key=lambda r: (r["_made"], r["InstanceId"])):
                if record["_account"] != account or record["RegionId"] != region:
                    continue
                if wanted is not None and record["InstanceId"] not in wanted:
                    continue
                if status and record["Status"] != status:
                    continue
                if name and not re.fullmatch(re.escape(name).replace(r"\*", ".*"), record["InstanceName"]):
                    continue
                held = {t["TagKey"]: t["TagValue"] for t in record["Tags"]["Tag"]}
                if any(k not in held or (v and held[k] != v) for k, v in tags):
                    continue
                if hide_recent and time.time() - record["_made"] < 60:
                    continue
                found.append(self.view(record))
        if params.get("NextToken") is not None or params.get("MaxResults") is not None:
            limit = integer(params, "MaxResults", 10, 1, 100)
            start = self.token_index(params["NextToken"], "instances") if params.get("NextToken") else 0
            page = found[start:start + limit]
            more = start + limit < len(found)
            return {"Instances": {"Instance": page}, "TotalCount": len(found),
                    "NextToken": self.token_for("instances", start + limit) if more else ""}
        number = integer(params, "PageNumber", 1, 1, 1 << 31)
        size = integer(params, "PageSize", 10, 1, 100)
        page = found[(number - 1) * size:number * size]
        return {"Instances": {"Instance": page}, "TotalCount": len(found), "PageNumber": number,
                "PageSize": size}

    def token_for(self, what, index):
        return base64.urlsafe_b64encode(f"{what}:{index}".encode()).decode()

    def token_index(self, token, what):
        try:
            kind, _, index = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
            if kind != what:
                raise ValueError(kind)
            return int(index)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise Refusal(400, "InvalidNextToken.Malformed", "The specified NextToken is not valid.")

    def instance(self, params):
        """The instance a start, stop or delete names: instance ids are global, and these
        actions take no region."""
        region = self.region(params) if params.get("RegionId") else None
        if not params.get("InstanceId"):
            raise missing("InstanceId")
        return self.owned(params["_account"], region, params["InstanceId"])

    def start_instance(self, params):
        with CLOUD.lock:
            record = self.instance(params)
            if record["Status"] != "Stopped":
                raise Refusal(403, "IncorrectInstanceStatus",
                              "The current status of the resource does not support this operation.")
            t = time.time()
            record["Status"] = "Starting"
            record["next"] = (t + STARTING_SECS, "Running", None)
        return {}

    def stop_instance(self, params):
        boolean(params, "ForceStop")
        with CLOUD.lock:
            record = self.instance(params)
            if record["Status"] != "Running":
                raise Refusal(403, "IncorrectInstanceStatus",
                              "The current status of the resource does not support this operation.")
            t = time.time()
            record["Status"] = "Stopping"
            record["next"] = (t + STOPPING_SECS, "Stopped", None)
        return {}

    def delete_instance(self, params):
        force = boolean(params, "Force")
        with CLOUD.lock:
            record = self.instance(params)
            if record.get("_releasing"):
                return {}
            if record["Status"] in ("Pending", "Starting") or (record["Status"] != "Stopped" and not force):
                raise Refusal(403, "IncorrectInstanceStatus",
                              "The current status of the resource does not support this operation.")
            t = time.time()
            record["_releasing"] = True
            if record["Status"] == "Stopped":
                record["next"] = (t + RELEASE_SECS, None, None)
            else:
                record["Status"] = "Stopping"
                record["next"] = (t + STOPPING_SECS, "Stopped", (t + STOPPING_SECS + RELEASE_SECS, None, None))
        return {}

    # ---------------------------------------------------------------- the emulator's own

    def emulator(self, method, path, body):
        try:
            if path == "/_emulator/faults" and method == "POST":
                asked = json.loads(body or b"{}")
                with CLOUD.lock:
                    for key, value in asked.items():
                        if key not in CLOUD.faults:
                            self.send(400, {"error": f"unknown fault {key}"})
                            return
                        CLOUD.faults[key] = value
                    self.send(200, dict(CLOUD.faults))
            elif path == "/_emulator/seen" and method == "GET":
                with CLOUD.lock:
                    self.send(200, dict(CLOUD.seen))
            elif path == "/_emulator/instances" and method == "POST":
                # An instance made behind berth's back (another tool, the console): running
                # at once, in the first account, with the tags asked.
                asked = json.loads(body or b"{}")
                region = asked.get("region", "cn-hangzhou")
                vswitch = next(v for v, (r, _) in VSWITCHES.items() if r == region)
                t = time.time()
                instance_id = "i-" + secrets.token_hex(10)
                with CLOUD.lock:
                    CLOUD.instances[instance_id] = {
                        "InstanceId": instance_id, "InstanceName": instance_id, "RegionId": region,
                        "ZoneId": VSWITCHES[vswitch][1], "InstanceType": "ecs.g7.large",
                        "ImageId": IMAGES[0]["ImageId"], "Status": "Running", "HostName": instance_id,
                        "CreationTime": iso_minutes(now()), "StartTime": iso_minutes(now()),
                        "Cpu": 2, "Memory": 8192, "GPUAmount": 0, "InstanceChargeType": "PostPaid",
                        "InternetChargeType": "PayByTraffic", "InstanceNetworkType": "vpc",
                        "KeyPairName": "", "VpcAttributes": {"VpcId": "vpc-berth", "VSwitchId": vswitch,
                                                             "PrivateIpAddress": {"IpAddress": ["172.31.0.9"]}},
                        "PublicIpAddress": {"IpAddress": []}, "EipAddress": {"IpAddress": ""},
                        "SecurityGroupIds": {"SecurityGroupId": []},
                        "Tags": {"Tag": [{"TagKey": k, "TagValue": v} for k, v in asked.get("tags", {}).items()]},
                        "_account": next(iter(ACCESS_KEYS.values()))[1], "_made": t - 120, "next": None,
                    }
                self.send(200, {"InstanceId": instance_id})
            elif path == "/_emulator/release" and method == "POST":
                # Released behind berth's back.
                asked = json.loads(body or b"{}")
                with CLOUD.lock:
                    found = CLOUD.instances.pop(asked.get("InstanceId"), None)
                self.send(200 if found else 404, {})
            elif path == "/_emulator/instances" and method == "GET":
                with CLOUD.lock:
                    for instance_id in list(CLOUD.instances):
                        if not self.settle(CLOUD.instances[instance_id]):
                            del CLOUD.instances[instance_id]
                    self.send(200, {"instances": [dict(self.view(r), Account=r["_account"])
                                                  for r in CLOUD.instances.values()]})
            else:
                self.send(404, {"error": "no such emulator route"})
        except ValueError as e:
            self.send(400, {"error": str(e)})


ACTIONS = {
    "DescribeRegions": Handler.describe_regions,
    "DescribeZones": Handler.describe_zones,
    "DescribeInstanceTypes": Handler.describe_instance_types,
    "DescribeImages": Handler.describe_images,
    "DescribePrice": Handler.describe_price,
    "RunInstances": Handler.run_instances,
    "DescribeInstances": Handler.describe_instances,
    "StartInstance": Handler.start_instance,
    "StopInstance": Handler.stop_instance,
    "DeleteInstance": Handler.delete_instance,
}


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
