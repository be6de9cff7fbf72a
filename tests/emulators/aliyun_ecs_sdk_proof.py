#!/usr/bin/env python3
"""Proves the ECS emulator against Alibaba Cloud's own client, alibabacloud-ecs20140526
(tea-openapi, signing with ACS3-HMAC-SHA256): if a call here fails, the emulator is wrong.
Usage: aliyun_ecs_sdk_proof.py HOST:PORT; exits 0 when every call behaved as against ECS."""

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from alibabacloud_ecs20140526 import models as ecs
from alibabacloud_ecs20140526.client import Client
from alibabacloud_tea_openapi import models as openapi
from alibabacloud_tea_openapi.utils import Utils

endpoint = sys.argv[1]
REGION = "cn-hangzhou"


def client(secret="berth-ecs-secret", key="LTAI5tBerthTeam"):
    return Client(openapi.Config(access_key_id=key, access_key_secret=secret, endpoint=endpoint,
                                 protocol="http", region_id=REGION))


def error_code(call):
    """The ECS error code `call` raised (tea's exceptions carry it as `code`)."""
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the SDK raises its own exception classes
        return getattr(e, "code", None) or repr(e)
    raise AssertionError("the call succeeded")


ecs_client = client()

regions = ecs_client.describe_regions(ecs.DescribeRegionsRequest()).body
assert {r.region_id for r in regions.regions.region} == {"cn-hangzhou", "cn-shanghai"}, regions
zones = ecs_client.describe_zones(ecs.DescribeZonesRequest(region_id=REGION)).body
assert [z.zone_id for z in zones.zones.zone] == ["cn-hangzhou-h", "cn-hangzhou-i"], zones
types = ecs_client.describe_instance_types(ecs.DescribeInstanceTypesRequest(
    instance_types=["ecs.g7.large", "ecs.gn6i-c4g1.xlarge"])).body
kinds = {t.instance_type_id: t for t in types.instance_types.instance_type}
assert kinds["ecs.g7.large"].cpu_core_count == 2 and kinds["ecs.g7.large"].memory_size == 8.0, kinds
assert kinds["ecs.gn6i-c4g1.xlarge"].gpuamount == 1, kinds
images = ecs_client.describe_images(ecs.DescribeImagesRequest(region_id=REGION, image_owner_alias="system")).body
assert images.total_count == 3 and images.images.image[0].image_id.endswith(".vhd"), images
price = ecs_client.describe_price(ecs.DescribePriceRequest(
    region_id=REGION, resource_type="instance", instance_type="ecs.g7.large", price_unit="Hour")).body
assert price.price_info.price.trade_price == 0.654 and price.price_info.price.currency == "CNY", price

# RunInstances with a client token, tags, user data and Amount; the same token again makes
# nothing new.
run = ecs.RunInstancesRequest(
    region_id=REGION, image_id="debian_12_6_x64_20G_alibase_20240823.vhd", instance_type="ecs.g7.large",
    v_switch_id="vsw-hz-h", security_group_id="sg-hz-web", instance_name="sdk-node", amount=2,
    client_token="sdk-token-1", user_data="IyEvYmluL3NoCmVjaG8gaGkK",
    tag=[ecs.RunInstancesRequestTag(key="team", value="platform"),
         ecs.RunInstancesRequestTag(key="berth:machine-id", value="m-1")])
first = ecs_client.run_instances(run).body.instance_id_sets.instance_id_set
assert len(first) == 2, first
again = ecs_client.run_instances(run).body.instance_id_sets.instance_id_set
assert again == first, (first, again)
run.instance_type = "ecs.c7.large"
assert error_code(lambda: ecs_client.run_instances(run)) == "IdempotentParameterMismatch"

# DescribeInstances by ids (a JSON array, as the SDK takes it) until both are Running.
deadline = time.time() + 20
while True:
    described = ecs_client.describe_instances(ecs.DescribeInstancesRequest(
        region_id=REGION, instance_ids=str(first).replace("'", '"'))).body
    statuses = {i.instance_id: i.status for i in described.instances.instance}
    if set(statuses.values()) == {"Running"} and len(statuses) == 2:
        break
    assert time.time() < deadline, statuses
    time.sleep(0.2)
one = described.instances.instance[0]
assert one.zone_id == "cn-hangzhou-h" and one.vpc_attributes.private_ip_address.ip_address, one
assert {t.tag_key: t.tag_value for t in one.tags.tag}["team"] == "platform", one.tags

# Paging two ways: PageNumber/PageSize and NextToken/MaxResults, filtered by tag.
more = ecs.RunInstancesRequest(
    region_id=REGION, image_id="aliyun_3_x64_20G_alibase_20240819.vhd", instance_type="ecs.t6-c1m1.large",
    v_switch_id="vsw-hz-i", security_group_id="sg-hz-web", amount=3,
    tag=[ecs.RunInstancesRequestTag(key="team", value="platform")])
ecs_client.run_instances(more)
by_page = []
for number in (1, 2, 3):
    page = ecs_client.describe_instances(ecs.DescribeInstancesRequest(
        region_id=REGION, page_number=number, page_size=2,
        tag=[ecs.DescribeInstancesRequestTag(key="team", value="platform")])).body
    assert page.total_count == 5, page.total_count
    by_page += [i.instance_id for i in page.instances.instance]
assert len(by_page) == 5 and len(set(by_page)) == 5, by_page
by_token, token = [], None
while True:
    page = ecs_client.describe_instances(ecs.DescribeInstancesRequest(
        region_id=REGION, max_results=2, next_token=token)).body
    by_token += [i.instance_id for i in page.instances.instance]
    token = page.next_token
    if not token:
        break
assert sorted(by_token) == sorted(by_page), (by_token, by_page)
tagged = ecs_client.describe_instances(ecs.DescribeInstancesRequest(
    region_id=REGION, tag=[ecs.DescribeInstancesRequestTag(key="berth:machine-id", value="m-1")])).body
assert tagged.total_count == 2, tagged.total_count

# Another account sees none of them.
other = client("other-ecs-secret", "LTAI5tOtherTeam")
assert other.describe_instances(ecs.DescribeInstancesRequest(region_id=REGION)).body.total_count == 0

# Stop, start; a running instance is not deleted without Force, and is with it.
target = first[0]
ecs_client.stop_instance(ecs.StopInstanceRequest(instance_id=target))
assert error_code(lambda: ecs_client.stop_instance(ecs.StopInstanceRequest(instance_id=target))) \
    == "IncorrectInstanceStatus"
assert error_code(lambda: ecs_client.delete_instance(ecs.DeleteInstanceRequest(instance_id=first[1]))) \
    == "IncorrectInstanceStatus"
ecs_client.delete_instance(ecs.DeleteInstanceRequest(instance_id=first[1], force=True))
time.sleep(0.5)
ecs_client.start_instance(ecs.StartInstanceRequest(instance_id=target))
time.sleep(0.5)
ecs_client.delete_instance(ecs.DeleteInstanceRequest(instance_id=target, force=True))
deadline = time.time() + 10
while ecs_client.describe_instances(ecs.DescribeInstancesRequest(
        region_id=REGION, instance_ids=str(first).replace("'", '"'))).body.total_count:
    assert time.time() < deadline
    time.sleep(0.2)
assert error_code(lambda: ecs_client.delete_instance(ecs.DeleteInstanceRequest(instance_id=target, force=True))) \
    == "InvalidInstanceId.NotFound"

# A wrong secret, an unknown key: refused, with ECS's codes.
assert error_code(lambda: client("not-the-secret").describe_regions(ecs.DescribeRegionsRequest())) \
    == "SignatureDoesNotMatch"
assert error_code(lambda: client(key="LTAI5tNobody").describe_regions(ecs.DescribeRegionsRequest())) \
    == "InvalidAccessKeyId.NotFound"



def raw_call(query, tamper=None):
    """DescribeInstances signed by the SDK's own signer, sent as the SDK sends it; with
    `tamper`, one parameter is changed after signing, as a hostile network would."""

    class Signed:
        method, pathname = "POST", "/"

    signed = Signed()
    signed.query = dict(query)
    signed.headers = {"host": endpoint, "x-acs-action": "DescribeInstances", "x-acs-version": "2014-05-26",
                      "x-acs-date": Utils.get_timestamp(), "x-acs-signature-nonce": Utils.get_nonce(),
                      "x-acs-content-sha256": Utils.hash(b"", "ACS3-HMAC-SHA256").hex()}
    signed.headers["Authorization"] = Utils.get_authorization(
        signed, "ACS3-HMAC-SHA256", signed.headers["x-acs-content-sha256"], "LTAI5tBerthTeam", "berth-ecs-secret")
    sent = dict(query, **(tamper or {}))
    url = f"http://{endpoint}/?{urllib.parse.urlencode(sent)}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST", headers=signed.headers)) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


assert "Instances" in raw_call({"RegionId": REGION, "PageSize": "5"})
assert raw_call({"RegionId": REGION, "PageSize": "5"}, {"PageSize": "50"})["Code"] == "SignatureDoesNotMatch"
assert raw_call({"RegionId": REGION}, {"RegionId": "cn-shanghai"})["Code"] == "SignatureDoesNotMatch"


def faults(**asked):
    request = urllib.request.Request(f"http://{endpoint}/_emulator/faults", data=json.dumps(asked).encode(),
                                     method="POST")
    urllib.request.urlopen(request).read()


# A clock 16 minutes off, a throttled account, no stock: the SDK sees ECS's codes.
faults(clock_offset_secs=16 * 60)
assert error_code(lambda: ecs_client.describe_regions(ecs.DescribeRegionsRequest())) == "InvalidTimeStamp.Expired"
faults(clock_offset_secs=14 * 60)
ecs_client.describe_regions(ecs.DescribeRegionsRequest())
faults(clock_offset_secs=0, throttle=1)
assert error_code(lambda: ecs_client.describe_regions(ecs.DescribeRegionsRequest())) == "Throttling.User"
faults(no_stock=1)
run.instance_type, run.client_token = "ecs.g7.large", "sdk-token-2"
assert error_code(lambda: ecs_client.run_instances(run)) == "OperationDenied.NoStock"

print("every call behaved as against ECS")
