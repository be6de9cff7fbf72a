#!/usr/bin/env python3
"""Proves the OpenStack emulator against OpenStack's own client, openstacksdk: if a call
here fails, the emulator is wrong. Usage: openstack_sdk_proof.py BASE_URL; exits 0 when
every call behaved as against a real cloud."""

import sys

import keystoneauth1.exceptions
import openstack
from openstack import exceptions

base = sys.argv[1]


def connect(**auth):
    return openstack.connect(auth_url=base + "/identity/v3", region_name="RegionOne",
                             identity_api_version="3", **auth)


conn = connect(username="berth", password="berth-secret", project_name="team",
               user_domain_name="Default", project_domain_name="Default")
flavors = {f.name: f for f in conn.compute.flavors()}
assert set(flavors) == {"m1.tiny", "m1.small", "m1.medium", "m1.large"}, flavors
assert flavors["m1.medium"].vcpus == 2 and flavors["m1.medium"].ram == 4096
images = {i.name: i for i in conn.image.images()}
assert "debian-12" in images, images

# Create, wait until ACTIVE, read its address and metadata.
server = conn.create_server("sdk-1", image=images["debian-12"].id, flavor=flavors["m1.tiny"].id,
                            meta={"berth:machine-id": "m-1"}, auto_ip=False, wait=True, timeout=30)
assert server.status == "ACTIVE", server.status
assert server.private_v4, server
assert conn.compute.get_server(server.id).metadata == {"berth:machine-id": "m-1"}

# Listing pages: three servers read two at a time, following the next links.
more = [conn.create_server(f"sdk-{n}", image=images["debian-12"].id, flavor=flavors["m1.tiny"].id,
                           auto_ip=False, wait=False) for n in (2, 3)]
listed = list(conn.compute.servers(details=True, limit=2, paginated=True))
assert sorted(s.name for s in listed) == ["sdk-1", "sdk-2", "sdk-3"], [s.name for s in listed]

# Stop and start, then delete and wait until it is gone.
conn.compute.stop_server(server)
conn.compute.wait_for_server(server, status="SHUTOFF", wait=30)
conn.compute.start_server(server)
conn.compute.wait_for_server(server, status="ACTIVE", wait=30)
for s in [server] + more:
    conn.delete_server(s.id, wait=True, timeout=30)
assert list(conn.compute.servers()) == []

# A server the cloud cannot place goes ERROR, and the SDK's wait says why.
conn.session.post(base + "/_emulator/faults", json={"error_creates": 1})
try:
    conn.create_server("sdk-error", image=images["debian-12"].id, flavor=flavors["m1.tiny"].id,
                       auto_ip=False, wait=True, timeout=30)
    raise SystemExit("an ERROR server was taken as created")
except exceptions.SDKException as e:
    assert "No valid host" in str(e) or "ERROR" in str(e), e

# Application credentials sign in as well.
app = connect(auth_type="v3applicationcredential", application_credential_id="ac-berth",
              application_credential_secret="ac-secret")
assert [s.name for s in app.compute.servers()] == ["sdk-error"]

# A wrong password is refused as Unauthorized.
try:
    list(connect(username="berth", password="wrong", project_name="team",
                 user_domain_name="Default", project_domain_name="Default").compute.servers())
    raise SystemExit("a wrong password was accepted")
except keystoneauth1.exceptions.http.Unauthorized:
    pass
print("openstacksdk: every call behaved")
